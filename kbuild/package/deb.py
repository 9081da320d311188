"""DEB set, built with the real dpkg-deb: image, -dbg, and the kdump configuration package.

One template per shipped file under packaging/deb/ (control, maintainer scripts, copyright,
changelog) and packaging/kdump/ (the kdump-tools settings). Why the configuration package
diverts kdump-tools' template instead of editing /etc/default/kdump-tools: docs/packaging.md.
"""
from __future__ import annotations

import gzip
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

from kbuild.package import kdumpcfg
from kbuild.build.verify import read_build_id
from kbuild.core.paths import PACKAGING
from kbuild.package import layout
from kbuild.package.payload import CONFIG_PACKAGE, Payload
from kbuild.package.render import render
from kbuild.package.tree import PackageTree
from kbuild.package.bootcfg import BootEntries, grub_dropin
from kbuild.core.errors import CheckFailed
from kbuild.core.kconfigfile import read_values
from kbuild.core.proc import run

KDUMP_TOOLS_TEMPLATE = "/usr/share/kdump-tools/kdump-tools.conf"   # kdump-tools' ucf source
DEB_ENV = {"LC_ALL": "C", "TZ": "UTC"}
COMPRESS = ["-Zgzip", "-z6"]   # every dpkg reads it; deterministic at any thread count


@dataclass(frozen=True)
class DebPackage:
    """A staged binary package: its tree plus what goes into DEBIAN/."""

    kind: str                       # image | dbg | config: selects packaging/deb/<kind>.*.j2
    name: str
    arch: str
    stage: PackageTree
    scripts: tuple[str, ...] = ()
    conffiles: tuple[str, ...] = ()


def names(p: Payload) -> dict[str, str]:
    return {"image": f"linux-image-{p.release}", "dbg": f"linux-image-{p.release}-dbg",
            "config": CONFIG_PACKAGE}


def context(p: Payload, name: str, **extra) -> dict:
    return {"name": name, "release": p.release, "version": p.deb_version, "names": names(p),
            "build_id": p.build_id, **extra}


def build(p: Payload, kdump: kdumpcfg.KdumpSettings, boot: BootEntries, work: Path) -> list[Path]:
    """Stage, render and `dpkg-deb --build` the three packages; returns the .deb files."""
    out = work / "out"
    out.mkdir(parents=True)
    staged = [image(p, work), dbg(p, work), config(p, kdump, boot, work)]
    return [dpkg_deb(d, p, kdump, out) for d in staged]


def image(p: Payload, work: Path) -> DebPackage:
    """/boot files and /lib/modules/<release>/ with debug info stripped from the modules."""
    name = names(p)["image"]
    s = PackageTree(work / name, p.objcopy)
    s.copy(f"/boot/vmlinuz-{p.release}", p.image)
    s.copy(f"/boot/config-{p.release}", p.config)
    s.copy(f"/boot/System.map-{p.release}", p.system_map)
    for rel, src in p.modules:
        (s.stripped if rel.endswith(".ko") else s.copy)(f"/lib/modules/{p.release}/{rel}", src)
    return DebPackage("image", name, p.deb_arch, s, ("preinst", "postinst", "prerm", "postrm"))


def dbg(p: Payload, work: Path) -> DebPackage:
    """Unstripped vmlinux and modules at the debug paths, with .build-id links to each."""
    name, rel = names(p)["dbg"], p.release
    s = PackageTree(work / name, p.objcopy)
    s.copy(f"/usr/lib/debug/boot/vmlinux-{rel}", p.vmlinux)
    s.symlink(f"/usr/lib/debug/vmlinux-{rel}", f"boot/vmlinux-{rel}")           # kdump-tools
    s.symlink(f"/usr/lib/debug/lib/modules/{rel}/vmlinux", f"../../../boot/vmlinux-{rel}")  # perf
    s.symlink(layout.build_id_link(p.build_id), f"../../boot/vmlinux-{rel}")
    for mod, src in p.modules:
        if mod.endswith(".ko"):
            dest = f"/usr/lib/debug/lib/modules/{rel}/{mod}"
            s.copy(dest, src)
            bid = read_build_id(src)
            if bid:
                s.symlink(layout.build_id_link(bid), "../.." + dest[len("/usr/lib/debug"):])
    return DebPackage("dbg", name, p.deb_arch, s)


def config(p: Payload, kdump: kdumpcfg.KdumpSettings, boot: BootEntries, work: Path) -> DebPackage:
    """Our kdump-tools template (diverted path) and the crashkernel= GRUB drop-in (a conffile)."""
    name = names(p)["config"]
    s = PackageTree(work / name, p.objcopy)
    s.text(KDUMP_TOOLS_TEMPLATE, kdump_tools_defaults(kdump, p.cpu_limit_arg, name))
    dropin = f"/etc/default/grub.d/{boot.dropin_name}"
    s.text(dropin, grub_dropin(boot))
    return DebPackage("config", name, "all", s, ("preinst", "postinst", "postrm"), (dropin,))


def kdump_tools_defaults(kdump: kdumpcfg.KdumpSettings, cpu_limit_arg: str, package: str) -> str:
    """/etc/default/kdump-tools as our settings spell it (packaging/kdump/kdump-tools.j2)."""
    return render("kdump/kdump-tools.j2", package=package,
                      v=kdumpcfg.kdump_tools_values(kdump, cpu_limit_arg))


def dpkg_deb(d: DebPackage, p: Payload, kdump: kdumpcfg.KdumpSettings, out: Path) -> Path:
    """Docs, DEBIAN/ (control, md5sums, scripts, conffiles), pinned metadata, then dpkg-deb."""
    s, extra = d.stage, {}
    if d.kind == "config":
        extra = {"kdump": kdump, "v": kdumpcfg.kdump_tools_values(kdump, p.cpu_limit_arg),
                 "template": KDUMP_TOOLS_TEMPLATE}
    ctx = context(p, d.name, arch=d.arch, initrd=_initrd(p), **extra)
    doc = f"/usr/share/doc/{d.name}"
    s.text(f"{doc}/copyright", render("deb/copyright.j2",
                                           year=time.gmtime(p.epoch).tm_year))
    s.text(f"{doc}/changelog.Debian.gz", gzip.compress(
        render("deb/changelog.j2", date=_date(p.epoch), **ctx).encode(), 9, mtime=0))
    overrides = PACKAGING / "deb" / f"{d.kind}.lintian-overrides.j2"
    if overrides.exists():
        s.text(f"/usr/share/lintian/overrides/{d.name}",
               render(f"deb/{d.kind}.lintian-overrides.j2", **ctx))
    control = s.root / "DEBIAN"
    md5 = "".join(f"{hashlib.md5(f.read_bytes()).hexdigest()}  {f.relative_to(s.root)}\n"
                  for f in _files(s.root))
    control.mkdir()
    (control / "md5sums").write_text(md5)
    (control / "control").write_text(render(f"deb/{d.kind}.control.j2",
                                                installed_size=_installed_size(s.root), **ctx))
    for script in d.scripts:
        (control / script).write_text(render(f"deb/{d.kind}.{script}.j2", **ctx))
        (control / script).chmod(0o755)
    if d.conffiles:
        (control / "conffiles").write_text("".join(f"{c}\n" for c in d.conffiles))
    for f in control.iterdir():
        if f.name not in d.scripts:
            f.chmod(0o644)
    s.seal(p.epoch)
    deb = out / f"{d.name}_{p.deb_version}_{d.arch}.deb"
    run(["dpkg-deb", "--root-owner-group", *COMPRESS, "--build", str(s.root), str(deb)],
        env={**DEB_ENV, "SOURCE_DATE_EPOCH": str(p.epoch)})
    return deb


def _files(root: Path) -> list[Path]:
    """Regular files outside DEBIAN/, sorted (symlinks have no md5sum)."""
    return sorted(f for f in root.rglob("*") if f.is_file() and not f.is_symlink()
                  and f.relative_to(root).parts[0] != "DEBIAN")


def _installed_size(root: Path) -> int:
    """KiB, as dpkg-gencontrol counts: each file rounded up, 1 for each directory or link."""
    total = 0
    for f in root.rglob("*"):
        total += -(-f.lstat().st_size // 1024) if f.is_file() and not f.is_symlink() else 1
    return total


def _initrd(p: Payload) -> str:
    """INITRD for the hooks, as the kernel's own builddeb sets it: does the kernel take one?"""
    return "Yes" if read_values(p.config).get("BLK_DEV_INITRD") == "y" else "No"


def _date(epoch: int) -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(epoch))


def check(debs: list[Path], p: Payload, work: Path) -> list[str]:
    """lintian, shellcheck on the maintainer scripts, layout of `dpkg -x`, build-id."""
    work.mkdir(parents=True, exist_ok=True)
    done = [lintian(debs)]
    scripts = []
    for deb in debs:
        ctl = work / "control" / deb.stem
        ctl.parent.mkdir(parents=True, exist_ok=True)
        run(["dpkg-deb", "-e", str(deb), str(ctl)])
        scripts += [f for f in sorted(ctl.iterdir())
                    if f.name in ("preinst", "postinst", "prerm", "postrm", "config")]
    run(["shellcheck", *map(str, scripts)])
    done.append(f"shellcheck: {len(scripts)} maintainer scripts clean")
    owners: dict[str, str] = {}
    root = work / "root"
    for deb in debs:
        for path in _deb_paths(deb):
            if path in owners:
                raise CheckFailed(f"{path} is shipped by both {owners[path]} and {deb.name}")
            owners[path] = deb.name
        run(["dpkg", "-x", str(deb), str(root)])
    done.append(layout.check_layout(root, p, f"/usr/lib/debug/boot/vmlinux-{p.release}", ".ko", "dpkg -x"))
    return done


def _deb_paths(deb: Path) -> list[str]:
    """Non-directory paths in the package, as `dpkg-deb -c` lists them."""
    out = run(["dpkg-deb", "-c", str(deb)]).output
    paths = []
    for line in out.splitlines():
        name = line.split(None, 5)[-1].split(" -> ")[0]
        if not line.startswith("d"):
            paths.append(name.lstrip("."))
    return paths


def lintian(debs: list[Path]) -> str:
    """No error or warning may remain; overrides in the packages carry their reasons."""
    res = run(["lintian", "--fail-on", "error,warning", "--show-overrides", "--tag-display-limit", "0",
               *map(str, debs)], check=False)
    lines = res.output.splitlines()
    bad = [ln for ln in lines if ln[:2] in ("E:", "W:")]
    if bad or res.returncode != 0:
        first = bad[0] if bad else (lines[-1] if lines else f"exit {res.returncode}")
        tags = sorted({ln.split(": ", 2)[2].split()[0] for ln in bad if ln.count(": ") >= 2})
        raise CheckFailed(f"lintian: {len(bad)} error/warning tag(s) ({', '.join(tags)}), first: {first}")
    overridden = sum(1 for ln in lines if ln.startswith("O:"))
    return f"lintian: {len(debs)} packages, no errors or warnings ({overridden} overridden with reasons)"
