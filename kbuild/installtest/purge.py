"""`dpkg --purge` of our packages, in a fresh chroot of the same root: nothing of ours may be left,
and kdump-tools' own configuration must be back.

What is compared, before our install and after the purge: every path in the root (only dpkg's
and ucf's own bookkeeping may be new: BOOKKEEPING), the content of /etc/default/kdump-tools and
of kdump-tools' template, and dpkg's diversions.
"""
from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from kbuild.core.hashing import file_sha256
from kbuild.core.proc import run
from kbuild.crashtest.report import Check
from kbuild.installtest import install, rootfs

# Paths that are not ours: dpkg's and ucf's records of any install or purge; kdump-tools' hook's
# working copy of /etc/initramfs-tools (kept for every kernel, kdump-tools' own state); the test's
# record of that hook's run.
BOOKKEEPING = re.compile(r"^/var/log/(dpkg\.log|apt/.*)$|^/var/lib/ucf/hashfile\.\d+$|^/var/lib/dpkg/.*$"
                         r"|^/var/lib/kdump/initramfs-tools(/.*)?$|^" + re.escape(install.STATE) + r"(/.*)?$")
KDUMP_FILES = (install.KDUMP_TOOLS_DEFAULTS, "usr/share/kdump-tools/kdump-tools.conf")


@dataclass(frozen=True)
class PurgeResult:
    checks: tuple[Check, ...]
    left: tuple[str, ...]
    seconds: float


def _paths(root: Path) -> set[str]:
    out = set()
    for dirpath, dirs, files in os.walk(root):
        rel = "/" + os.path.relpath(dirpath, root) if dirpath != str(root) else ""
        out.update(f"{rel}/{n}" for n in dirs + files)
    return out


def _state(root: Path) -> dict[str, str]:
    state = {p: file_sha256(root / p) if (root / p).is_file() else "absent" for p in KDUMP_FILES}
    divs = run(["chroot", str(root), "dpkg-divert", "--list"]).output.splitlines()
    state["diversions"] = "\n".join(sorted(d for d in divs if "kdump" in d))
    return state


def purge_proof(tarball: rootfs.RootTarball, debs: tuple[Path, ...], names: tuple[str, ...], work: Path,
                log: Path) -> PurgeResult:
    """Install the set into a fresh root, purge it, compare with the untouched root."""
    started = time.monotonic()
    root = work / "purge-root"
    shutil.rmtree(root, ignore_errors=True)
    rootfs.unpack(tarball, root, log)
    before, state = _paths(root), _state(root)
    install.install(root, debs, "", log)
    res = run(["chroot", str(root), "env", "DEBIAN_FRONTEND=noninteractive", "dpkg", "--purge", *names],
              log=log, check=False)
    after = _paths(root)
    left = sorted(p for p in after - before if not BOOKKEEPING.match(p))
    gone = sorted(before - after)
    now = _state(root)
    shutil.rmtree(root, ignore_errors=True)
    checks = (
        Check("purge-leaves-nothing", res.returncode == 0 and not left and not gone,
              f"`dpkg --purge {' '.join(names)}` exits 0 and the root has the same paths as before the "
              "install (dpkg's and ucf's own records aside)",
              f"exit {res.returncode}; left {left[:5]}{' ...' if len(left) > 5 else ''}; removed {gone[:5]}"),
        Check("purge-restores-kdump-tools", now == state,
              "/etc/default/kdump-tools, kdump-tools' template and the diversions as before our install",
              "as before" if now == state else
              "; ".join(f"{k}: {state[k] or 'none'} -> {now[k] or 'none'}" for k in state if now[k] != state[k])),
    )
    return PurgeResult(checks, tuple(left), round(time.monotonic() - started, 3))
