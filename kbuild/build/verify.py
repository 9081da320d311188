"""Checks on built artifacts: what the kernel will report as its release, and debug info.

Each returns a value or raises CheckFailed naming the artifact, the expected and the
actual value, so a build never claims success with an image that kdump cannot use.
"""
from __future__ import annotations

import struct
from pathlib import Path

from kbuild.core.errors import CheckFailed
from kbuild.core.proc import run


def bzimage_version(bzimage: Path) -> str:
    """The version string in the x86 setup header (boot protocol >= 2.00).

    `kernel_version` at offset 0x20E points, relative to 0x200, to a NUL-terminated
    string "<release> (<user>@<host>) #<n> ..." that boot loaders and `file` print.
    """
    data = bzimage.read_bytes()[:0x10000]
    if len(data) < 0x210 or data[0x202:0x206] != b"HdrS":
        raise CheckFailed(f"{bzimage}: no x86 boot setup header (HdrS); not a bzImage")
    (ptr,) = struct.unpack_from("<H", data, 0x20E)
    start = ptr + 0x200
    end = data.find(b"\0", start)
    if ptr == 0 or end < 0:
        raise CheckFailed(f"{bzimage}: setup header has no kernel_version string")
    return data[start:end].decode(errors="replace")


def check_bzimage_release(bzimage: Path, release: str) -> str:
    text = bzimage_version(bzimage)
    if text.split(" ", 1)[0] != release:
        raise CheckFailed(f"{bzimage}: setup header says {text.split(' ', 1)[0]!r}, expected release {release!r}")
    return text


def read_build_id(path: Path) -> str | None:
    """The GNU build-id note of an ELF file (vmlinux, a module), or None if it has none."""
    out = run(["readelf", "-n", str(path)]).output
    return next((ln.split("Build ID:", 1)[1].strip() for ln in out.splitlines() if "Build ID:" in ln), None)


def elf_build_id(vmlinux: Path) -> str:
    build_id = read_build_id(vmlinux)
    if build_id is None:
        raise CheckFailed(f"{vmlinux}: no GNU build-id note; crash and makedumpfile cannot match it to a dump")
    return build_id


def check_debug_info(vmlinux: Path) -> dict[str, int]:
    """vmlinux must carry full DWARF: .debug_info present and not a stub, no split .dwo."""
    out = run(["readelf", "-S", "-W", str(vmlinux)]).output
    sizes: dict[str, int] = {}
    for line in out.splitlines():
        parts = line.replace("[ ", "[").split()
        if len(parts) > 6 and parts[1].startswith(".debug_"):
            sizes[parts[1]] = int(parts[5], 16)
    if sizes.get(".debug_info", 0) == 0:
        raise CheckFailed(f"{vmlinux}: no .debug_info section; the dump could not be analysed "
                          "(is CONFIG_DEBUG_INFO off or the image stripped?)")
    if sizes[".debug_info"] < 1 << 20:
        raise CheckFailed(f"{vmlinux}: .debug_info is only {sizes['.debug_info']} bytes; "
                          "reduced debug info lacks the types crash needs")
    return sizes
