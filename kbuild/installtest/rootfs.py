"""The Debian 12 root the test installs into: one mmdebstrap tarball, cached by its inputs.

mmdebstrap takes about a minute and downloads ~100 MB, so the tarball is kept under
~/.cache/kdump-pipeline/install-test/rootfs/<key>.tar. The key holds everything that decides
its contents: suite, variant, packages, debconf answers, the host's apt sources (the mirror
and its snapshot) and mmdebstrap's version. A root older than `max_age_days` is rebuilt so
security updates reach it.
"""
from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from kbuild.core import fs
from kbuild.core.errors import CheckFailed
from kbuild.core.hashing import digest, file_sha256
from kbuild.core.proc import run
from kbuild.core.source import cache_root
from kbuild.installtest.settings import Rootfs

APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))


@dataclass(frozen=True)
class RootTarball:
    path: Path
    key: str
    sha256: str
    reused: bool
    seconds: float


def cache_dir() -> Path:
    return cache_root() / "install-test" / "rootfs"


def _apt_sources() -> list[tuple[str, str]]:
    out = []
    for p in APT_SOURCES:
        files = sorted(p.glob("*")) if p.is_dir() else [p] if p.is_file() else []
        out += [(str(f), f.read_text(errors="replace")) for f in files if f.is_file()]
    return out


def key(spec: Rootfs) -> str:
    version = run(["mmdebstrap", "--version"], check=False).output.strip()
    return digest({"suite": spec.suite, "variant": spec.variant, "include": sorted(spec.include),
                   "debconf": list(spec.debconf), "apt": _apt_sources(), "mmdebstrap": version})[:16]


def hook(spec: Rootfs) -> str:
    """mmdebstrap's essential hook: the debconf answers, before any package is configured."""
    lines = "\n".join(spec.debconf)
    return f'printf "%s\\n" {shlex.quote(lines)} | chroot "$1" debconf-set-selections'


def ensure(spec: Rootfs, log: Path) -> RootTarball:
    """The cached tarball for `spec`, built now if missing or too old."""
    started = time.monotonic()
    k = key(spec)
    dest = cache_dir() / f"{k}.tar"
    fs.remove_leftovers(dest.parent)
    fresh = dest.is_file() and time.time() - dest.stat().st_mtime < spec.max_age_days * 86400
    if not fresh:
        with fs.atomic_path(dest) as tmp:
            run(["mmdebstrap", f"--variant={spec.variant}", "--mode=root", "--format=tar",
                 f"--include={','.join(spec.include)}", f"--essential-hook={hook(spec)}",
                 spec.suite, str(tmp)], log=log, package="mmdebstrap")
    sums = dest.with_suffix(".sha256")
    if not fresh or not sums.is_file():
        fs.write_atomic(sums, file_sha256(dest) + "\n")
    return RootTarball(dest, k, sums.read_text().strip(), fresh, round(time.monotonic() - started, 3))


def unpack(tarball: RootTarball, root: Path, log: Path) -> None:
    """A fresh copy of the root for one run (numeric owners kept: we run as root)."""
    root.mkdir(parents=True, exist_ok=True)
    run(["tar", "-C", str(root), "--numeric-owner", "-xf", str(tarball.path)], log=log)
    if not (root / "usr/sbin/kdump-config").exists():
        raise CheckFailed(f"{tarball.path}: the cached root has no kdump-config; remove it and rerun")
