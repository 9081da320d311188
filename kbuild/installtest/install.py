"""Install our DEB set into the root as a user would: `dpkg -i` in a chroot, real maintainer scripts.

Before the install the root gets what its admin would have set (/etc/default/grub, /etc/fstab);
our packages then run /etc/kernel/postinst.d (initramfs-tools builds /boot/initrd.img-<rel>),
ucf installs our /etc/default/kdump-tools and dpkg installs our GRUB drop-in.

One hook cannot work in a chroot: kdump-tools' postinst.d hook runs mkinitramfs with MODULES=dep,
which needs / on a block device. For the install only, it is replaced by a wrapper that runs it,
records how our postinst called it and what it said, and never fails; then it is put back.
kdump-config builds the kdump initrd with that same hook on the first boot (no
latest_sysctls-<release> yet), which is what happens on a real system after a kernel install too.
"""
from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from kbuild.core import arch as archmod
from kbuild.core.errors import BadInput, CheckFailed
from kbuild.core.manifest import Manifest
from kbuild.core.proc import run
from kbuild.installtest.settings import Site
from kbuild.package.payload import CONFIG_PACKAGE
from kbuild.package.render import render

KDUMP_HOOK = "etc/kernel/postinst.d/kdump-tools"
STATE = "/var/lib/install-test"          # the test's own files in the guest
DEBS_IN_ROOT = "/var/cache/install-test/debs"
KDUMP_TOOLS_DEFAULTS = "etc/default/kdump-tools"
KDUMP_TOOLS_TEMPLATE = "usr/share/kdump-tools/kdump-tools.conf"   # kdump-tools' ucf source, ours diverted in
_VARS = ("KDUMP_COREDIR", "MAKEDUMP_ARGS", "KDUMP_FAIL_CMD", "KDUMP_CMDLINE_APPEND", "USE_KDUMP")


@dataclass(frozen=True)
class HookCall:
    """One run of kdump-tools' postinst.d hook during the chroot install."""

    args: tuple[str, ...]
    deb_maint_params: str
    initrd: str
    rc: int
    output: str


@dataclass(frozen=True)
class Installed:
    release: str
    debs: tuple[Path, ...]
    hook_calls: tuple[HookCall, ...]
    kdump_tools: dict[str, str]        # /etc/default/kdump-tools after the install
    seconds: float


def deb_set(m: Manifest) -> tuple[Path, ...]:
    """image, dbg and config .deb of this build in dist/<release>/ (written by `invoke package`)."""
    arch = archmod.table()[m.arch].deb_arch if m.arch in archmod.table() else None
    v = m.release.deb_version
    names = (f"linux-image-{m.release.release}_{v}_{arch}.deb",
             f"linux-image-{m.release.release}-dbg_{v}_{arch}.deb",
             f"{CONFIG_PACKAGE}_{v}_all.deb")
    paths = tuple(m.dist / n for n in names)
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise BadInput(f"{m.dist}: no {', '.join(missing)}; run `invoke package --formats deb` first")
    return paths


def package_names(release: str) -> tuple[str, ...]:
    return (CONFIG_PACKAGE, f"linux-image-{release}-dbg", f"linux-image-{release}")


def site_files(root: Path, site: Site, uuid: str) -> None:
    """/etc/default/grub and /etc/fstab as the machine's admin would have them."""
    (root / "etc/default/grub").write_text(render("installtest/default-grub.j2",
                                                  linux=site.grub_cmdline_linux,
                                                  default=site.grub_cmdline_linux_default))
    (root / "etc/fstab").write_text(f"UUID={uuid} / ext4 {site.fstab_options} 0 1\n")


def install(root: Path, debs: tuple[Path, ...], release: str, log: Path) -> Installed:
    """`dpkg -i` of the set in a chroot of `root`; CheckFailed with dpkg's words if it fails."""
    started = time.monotonic()
    inside = root / DEBS_IN_ROOT.lstrip("/")
    inside.mkdir(parents=True, exist_ok=True)
    for d in debs:
        shutil.copyfile(d, inside / d.name)
    state = root / STATE.lstrip("/")
    state.mkdir(parents=True, exist_ok=True)
    hook, real = root / KDUMP_HOOK, state / "kdump-tools.hook"
    record = state / "kdump-hook.log"
    if not hook.is_file():
        raise CheckFailed(f"the root has no /{KDUMP_HOOK}: is kdump-tools installed in it?")
    shutil.move(hook, real)
    try:
        hook.write_text(render("installtest/kdump-hook-wrapper.sh.j2", log=f"{STATE}/kdump-hook.log",
                               real=f"{STATE}/kdump-tools.hook"))
        hook.chmod(0o755)
        res = run(["chroot", str(root), "env", "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C.UTF-8",
                   "dpkg", "-i", *(f"{DEBS_IN_ROOT}/{d.name}" for d in debs)], log=log, check=False)
    finally:
        shutil.move(real, hook)
    shutil.rmtree(inside.parent)
    if res.returncode != 0:
        tail = " / ".join(ln.strip() for ln in res.output.splitlines()[-3:])
        raise CheckFailed(f"dpkg -i of our packages failed in the chroot (exit {res.returncode}): {tail}")
    calls = parse_hook_log(record.read_text() if record.is_file() else "")
    return Installed(release, debs, calls, read_defaults(root), round(time.monotonic() - started, 3))


def parse_hook_log(text: str) -> tuple[HookCall, ...]:
    """The wrapper's record: `args:`, `DEB_MAINT_PARAMS=... INITRD=...`, the hook's output, `rc:`."""
    calls, cur = [], None
    for line in text.splitlines():
        if line.startswith("args: "):
            cur = {"args": tuple(line[6:].split()), "env": "", "out": []}
        elif cur is None:
            continue
        elif line.startswith("DEB_MAINT_PARAMS=") and not cur["env"]:
            cur["env"] = line
        elif re.fullmatch(r"rc: \d+", line):
            m = re.match(r"DEB_MAINT_PARAMS=(.*) INITRD=(.*)", cur["env"])
            calls.append(HookCall(cur["args"], m.group(1).strip() if m else "", m.group(2) if m else "",
                                  int(line[4:]), "\n".join(cur["out"])))
            cur = None
        else:
            cur["out"].append(line)
    return tuple(calls)


def read_defaults(root: Path, path: str = KDUMP_TOOLS_DEFAULTS) -> dict[str, str]:
    """/etc/default/kdump-tools of the root (or another file in that syntax), sourced by sh as
    kdump-config does."""
    script = '. "$1"; ' + "; ".join(f'printf "%s=%s\\n" {v} "${{{v}-}}"' for v in _VARS)
    out = run(["sh", "-c", script, "sh", str(root / path.lstrip("/"))]).output
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def shipped_defaults(config_deb: Path, work: Path) -> dict[str, str]:
    """The kdump-tools settings our config package ships (its template of /etc/default/kdump-tools)."""
    dest = work / "config-deb"
    shutil.rmtree(dest, ignore_errors=True)
    run(["dpkg-deb", "-x", str(config_deb), str(dest)], package="dpkg")
    values = read_defaults(dest, KDUMP_TOOLS_TEMPLATE)
    shutil.rmtree(dest, ignore_errors=True)
    return values
