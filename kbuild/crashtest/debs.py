"""A foreign architecture's capture programs: Debian's own .deb files, downloaded and unpacked, never run.

The crash test of an arm64 kernel needs arm64 busybox, kexec and makedumpfile in its
initramfs. They come from the packages configs/arches.toml lists ([<arch>.crash]
capture_debs), fetched with `apt-get download PKG:<deb_arch>` (dpkg must know the
architecture: `dpkg --add-architecture arm64`, which `make setup` does) into a cache folder,
and unpacked with `dpkg-deb -x`. Libraries are found by reading each program's DT_NEEDED
(`readelf -d`, which reads any architecture's ELF), so nothing foreign runs on the host.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from kbuild.core.arch import Arch
from kbuild.core.errors import BadInput, CommandFailed, MissingTool
from kbuild.core.proc import run
from kbuild.core.source import cache_root

# Where each program lives in its package (Debian 12).
PROGRAM_PATHS = {"busybox": "bin/busybox", "kexec": "sbin/kexec", "makedumpfile": "usr/bin/makedumpfile"}


def cache_dir(a: Arch) -> Path:
    return cache_root() / "debs" / a.deb_arch


def _cached(folder: Path, package: str, deb_arch: str) -> Path | None:
    """The last downloaded .deb of `package` (apt names them PKG_VERSION_ARCH.deb, the epoch's ':' as %3a).

    By download time, not by name: version strings do not sort as text (deb12u9 > deb12u14).
    """
    found = sorted(folder.glob(f"{package}_*_{deb_arch}.deb"), key=lambda p: (p.stat().st_mtime, p.name))
    return found[-1] if found else None


def fetch(a: Arch, log: Path | None = None) -> list[Path]:
    """The .deb of every capture package, downloading those not cached yet; exit 2 naming what is missing."""
    folder = cache_dir(a)
    folder.mkdir(parents=True, exist_ok=True)
    missing = [p for p in a.crash.capture_debs if _cached(folder, p, a.deb_arch) is None]
    if missing:
        if not shutil.which("apt-get"):
            raise MissingTool("apt-get is missing: the arm64 capture packages are downloaded with it")
        specs = [f"{p}:{a.deb_arch}" for p in missing]
        try:
            run(["apt-get", "download", "-q", *specs], cwd=folder, log=log)
        except CommandFailed as e:
            raise MissingTool(f"cannot download {' '.join(specs)} into {folder} ({str(e).splitlines()[-1]}); "
                              f"`make setup` adds dpkg's {a.deb_arch} architecture and fetches them "
                              "(needs Debian's mirror)") from None
    debs = []
    for p in a.crash.capture_debs:
        deb = _cached(folder, p, a.deb_arch)
        if deb is None:
            raise MissingTool(f"apt-get download {p}:{a.deb_arch} left no .deb in {folder}")
        debs.append(deb)
    return debs


def unpack(a: Arch, log: Path | None = None) -> Path:
    """One folder with every capture package unpacked (dpkg-deb -x), cached by the .debs' names."""
    debs = fetch(a, log)
    key = hashlib.sha256("\n".join(d.name for d in debs).encode()).hexdigest()[:16]
    root = cache_dir(a) / f"root-{key}"
    if (root / ".complete").exists():
        return root
    tmp = root.with_name(root.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for deb in debs:
        run(["dpkg-deb", "-x", str(deb), str(tmp)], log=log)
    (tmp / ".complete").write_text("".join(d.name + "\n" for d in debs))
    shutil.rmtree(root, ignore_errors=True)
    os.replace(tmp, root)
    return root


def inside(root: Path, path: str) -> Path:
    """`path` (absolute in the guest) resolved inside `root`, following symlinks as the guest would."""
    parts = [p for p in path.split("/") if p]
    here = Path(root)
    for depth in range(40):
        if not parts:
            return here
        name = parts.pop(0)
        nxt = here / name
        if nxt.is_symlink():
            target = os.readlink(nxt)
            rest = [p for p in target.split("/") if p]
            if target.startswith("/"):
                here = Path(root)
            parts = rest + parts
            continue
        here = nxt
    raise BadInput(f"{path}: too many symlinks under {root}")


def needed(elf: Path) -> list[str]:
    """DT_NEEDED sonames of an ELF file of any architecture (readelf -d); empty for a static program."""
    out = run(["readelf", "-dW", str(elf)]).output
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


@dataclass
class Resolved:
    """A program's shared libraries: guest path -> file in the unpacked root, and any soname not found."""

    libraries: dict[str, Path] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)


def resolve(root: Path, programs: list[Path], multiarch: str) -> Resolved:
    """The DT_NEEDED closure of `programs`, looked up where Debian's loader looks (/lib/<tuple>, /usr/lib/<tuple>)."""
    dirs = [f"/lib/{multiarch}", f"/usr/lib/{multiarch}", "/lib", "/usr/lib"]
    result = Resolved()
    todo = list(programs)
    seen: set[str] = set()
    while todo:
        for soname in needed(todo.pop()):
            if soname in seen:
                continue
            seen.add(soname)
            for d in dirs:
                real = inside(root, f"{d}/{soname}")
                if real.is_file():
                    result.libraries[f"/lib/{multiarch}/{soname}"] = real
                    todo.append(real)
                    break
            else:
                result.missing.append(soname)
    return result


def main(argv: list[str]) -> int:
    """`python -m kbuild.crashtest.debs ARCH...`: fetch and unpack each arch's capture packages (make setup)."""
    import sys
    from kbuild.core import arch as archmod
    from kbuild.core.errors import KbuildError
    for name in argv:
        try:
            root = unpack(archmod.get(name))
        except KbuildError as e:
            print(f"error: {e}", file=sys.stderr)
            return e.exit_code
        print(f"capture packages for {name}: {root}")
    return 0


if __name__ == "__main__":
    import sys
    sys.exit(main(sys.argv[1:]))
