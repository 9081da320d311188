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


BANNER_PREFIX = b"Linux version "


def elf_symbol_bytes(elf: Path, name: str) -> bytes:
    """The bytes of data symbol `name` in a little-endian ELF64 file (vmlinux of any arch we
    build), read from its section in the file: no target-specific binutils needed."""
    with open(elf, "rb") as fh:
        head = fh.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
            raise CheckFailed(f"{elf}: not a little-endian ELF64 file")
        shoff, = struct.unpack_from("<Q", head, 0x28)
        shentsize, shnum = struct.unpack_from("<HH", head, 0x3A)
        fh.seek(shoff)
        sections = [struct.unpack_from("<IIQQQQIIQQ", fh.read(shentsize)) for _ in range(shnum)]

        def read(offset: int, size: int) -> bytes:
            fh.seek(offset)
            return fh.read(size)
        symtab = next((s for s in sections if s[1] == 2), None)   # SHT_SYMTAB
        if symtab is None:
            raise CheckFailed(f"{elf}: no symbol table (stripped?)")
        strtab = read(sections[symtab[6]][4], sections[symtab[6]][5])
        at = strtab.find(b"\0" + name.encode() + b"\0")
        if at < 0:
            raise CheckFailed(f"{elf}: no symbol {name}")
        for st_name, _, _, shndx, value, size in struct.iter_unpack("<IBBHQQ", read(symtab[4], symtab[5])):
            if st_name == at + 1 and 0 < shndx < len(sections) and size:
                sec = sections[shndx]
                return read(sec[4] + value - sec[3], size)
    raise CheckFailed(f"{elf}: symbol {name} has no data in the file")


def check_banner_release(vmlinux: Path, image: Path, release: str) -> str:
    """Where there is no boot header (arm64 Image): vmlinux's `linux_banner`, what `uname -a`
    and /proc/version print, must name `release`, and the image must carry it verbatim, so the
    image and the debug vmlinux the packages ship are from the same link."""
    banner = elf_symbol_bytes(vmlinux, "linux_banner").rstrip(b"\0")
    if not banner.startswith(BANNER_PREFIX):
        raise CheckFailed(f"{vmlinux}: linux_banner does not start with 'Linux version ': {banner[:40]!r}")
    text = banner[len(BANNER_PREFIX):].decode(errors="replace").strip()
    if text.split(" ", 1)[0] != release:
        raise CheckFailed(f"{vmlinux}: linux_banner says {text.split(' ', 1)[0]!r}, expected release {release!r}")
    if banner not in image.read_bytes():
        raise CheckFailed(f"{image}: does not contain vmlinux's linux_banner; image and vmlinux are from different builds")
    return text


def check_bzimage_payload(bzimage: Path, compressed_dir: Path) -> None:
    """The kernel a bzImage boots is the one built beside it: its payload (setup header fields
    payload_offset/payload_length, boot protocol 2.08+) equals compressed/vmlinux.bin.<method>.
    A cache that cannot see piggy.S's `.incbin` would otherwise ship another build's kernel."""
    data = bzimage.read_bytes()
    setup_sects = data[0x1F1] or 4
    offset, length = struct.unpack_from("<II", data, 0x248)
    start = (setup_sects + 1) * 512 + offset
    payload = data[start:start + length]
    built = [p for p in sorted(compressed_dir.glob("vmlinux.bin.*")) if p.suffix != ".cmd"]
    if not built:
        raise CheckFailed(f"{compressed_dir}: no vmlinux.bin.<compression> to compare the bzImage's payload with")
    if not any(p.stat().st_size == length and p.read_bytes() == payload for p in built):
        raise CheckFailed(f"{bzimage}: its compressed kernel is not {built[0].name} of this build (a stale "
                          f"piggy.o?); rebuild with --no-ccache once, and report it")


def check_image_release(how: str, image: Path, vmlinux: Path, release: str) -> str:
    """The release the built image reports, read the arch's way (configs/arches.toml `release_from`)."""
    if how == "setup-header":
        return check_bzimage_release(image, release)
    return check_banner_release(vmlinux, image, release)


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
