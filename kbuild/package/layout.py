"""Checks on an installed package tree (dpkg -x, rpm --root): names, stripping, build-ids."""
from __future__ import annotations

from pathlib import Path

from kbuild.build.verify import read_build_id
from kbuild.core.errors import BadInput, CheckFailed
from kbuild.core.hashing import file_sha256
from kbuild.core.proc import run
from kbuild.package.payload import BUILD_ID, Payload


def build_id_link(build_id: str) -> str:
    """Where gdb, crash and debuginfod clients look up a debug file by its GNU build-id."""
    if not BUILD_ID.fullmatch(build_id or ""):
        raise BadInput(f"build-id {build_id!r} is not hex; it would name a file in the packages")
    return f"/usr/lib/debug/.build-id/{build_id[:2]}/{build_id[2:]}.debug"


def has_debug_info(path: Path) -> bool:
    out = run(["readelf", "-S", "-W", str(path)]).output
    return " .debug_info " in out


def check_layout(root: Path, p: Payload, debug_vmlinux: str, debug_suffix: str, how: str) -> str:
    """An installed tree (dpkg -x, rpm --root): every name carries exactly the release, the
    image is the built one, modules are stripped, and the debug vmlinux has the build's build-id."""
    rel, problems = p.release, []

    def names(folder: str, prefix: str = "") -> set[str]:
        d = root / folder.lstrip("/")
        return {x.name[len(prefix):] for x in d.iterdir() if x.name.startswith(prefix)} if d.is_dir() else set()
    for prefix in ("vmlinuz-", "config-", "System.map-"):
        if names("/boot", prefix) != {rel}:
            problems.append(f"/boot/{prefix}* is {sorted(names('/boot', prefix))}, expected [{rel!r}]")
    for folder in ("/lib/modules", "/usr/lib/debug/lib/modules"):
        if names(folder) != {rel}:
            problems.append(f"{folder}/ holds {sorted(names(folder))}, expected [{rel!r}]")
    if names("/usr/lib/debug/boot", "vmlinux-") - {rel}:
        problems.append("/usr/lib/debug/boot/vmlinux-* names another release")
    image = root / f"boot/vmlinuz-{rel}"
    if image.is_file() and file_sha256(image) != file_sha256(p.image):
        problems.append(f"{image.name} differs from the built {p.image.name}")
    vmlinux = root / debug_vmlinux.lstrip("/")
    link = root / build_id_link(p.build_id).lstrip("/")
    if not vmlinux.is_file():
        problems.append(f"{debug_vmlinux} is missing")
    else:
        got = read_build_id(vmlinux)
        if got != p.build_id:
            problems.append(f"{debug_vmlinux} has build-id {got}, the manifest says {p.build_id}")
        if not link.exists() or link.resolve() != vmlinux.resolve():
            problems.append(f"{build_id_link(p.build_id)} does not lead to {debug_vmlinux}")
    for mod, _ in p.modules:
        if not mod.endswith(".ko"):
            continue
        shipped = root / f"lib/modules/{rel}/{mod}"
        debug = root / f"usr/lib/debug/lib/modules/{rel}/{mod[:-3]}{debug_suffix}"
        if not shipped.is_file() or has_debug_info(shipped):
            problems.append(f"/lib/modules/{rel}/{mod} is missing or not stripped")
        if not debug.is_file() or not has_debug_info(debug):
            problems.append(f"{debug.relative_to(root)} is missing or has no debug info")
    if problems:
        raise CheckFailed(f"layout ({how}): {problems[0]}"
                          + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    return (f"layout ({how}): image, config, System.map, modules and debug paths all name {rel}; "
            f"modules stripped; debug vmlinux build-id {p.build_id}")
