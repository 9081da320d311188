"""Reading dumps on the host: format, completeness and VMCOREINFO, on dumps made here byte by byte."""
import struct

import pytest

from kbuild.core import makedumpfile
from kbuild.crashtest import vmcore

INFO = b"OSRELEASE=6.1.192-kdump\nBUILD-ID=d208f5d3ffe30e8f16e56d303399ab0603e410b1\nPAGESIZE=4096\n"
BLOCK = 4096


def kdump_file(path, *, pages=3, status=0x1, cut=0):
    """A kdump-compressed file as makedumpfile lays it out: header, sub header, 2 bitmaps, descriptors, data."""
    header = bytearray(BLOCK)
    header[0:8] = b"KDUMP   "
    struct.pack_into("<i", header, 8, 6)
    header[12 + 130:12 + 130 + 13] = b"6.1.192-kdump"
    bitmap_blocks = 2
    struct.pack_into("<IiiIIIIIIi", header, 424, status, BLOCK, 1, bitmap_blocks, 64, 0, 0, 0, 0, 1)
    sub = bytearray(BLOCK)
    info_at = BLOCK + 512
    struct.pack_into("<QiiQQqQ", sub, 0, 0, 31, 0, 0, 0, info_at, len(INFO))
    sub[512:512 + len(INFO)] = INFO
    bitmap1 = (b"\xff" * 8).ljust(BLOCK, b"\0")
    bitmap2 = ((1 << pages) - 1).to_bytes(8, "little").ljust(BLOCK, b"\0")
    data_at = 4 * BLOCK + pages * 24
    descs = b"".join(struct.pack("<qIIQ", data_at + i * 100, 100, 1, 0) for i in range(pages))
    blob = bytes(header) + bytes(sub) + bitmap1 + bitmap2 + descs + b"z" * (100 * pages)
    path.write_bytes(blob[:len(blob) - cut] if cut else blob)
    return path


def elf_file(path, *, cut=0):
    """An ELF core: one PT_NOTE holding VMCOREINFO, one PT_LOAD of 4 KiB."""
    name = b"VMCOREINFO\0"
    note = struct.pack("<III", len(name), len(INFO), 0) + name.ljust(12, b"\0") + INFO.ljust((len(INFO) + 3) // 4 * 4, b"\0")
    phoff, phnum = 64, 2
    note_at = phoff + 56 * phnum
    load_at = note_at + len(note)
    eh = bytearray(64)
    eh[0:4] = b"\x7fELF"
    eh[4], eh[5], eh[6] = 2, 1, 1
    struct.pack_into("<HHIQQQIHHHHHH", eh, 16, 4, 62, 1, 0, phoff, 0, 0, 64, 56, phnum, 0, 0, 0)
    ph = struct.pack("<IIQQQQQQ", 4, 0, note_at, 0, 0, len(note), 0, 0)
    ph += struct.pack("<IIQQQQQQ", 1, 7, load_at, 0xffffffff81000000, 0x1000000, 4096, 4096, 0)
    blob = bytes(eh) + ph + note + b"\0" * 4096
    path.write_bytes(blob[:len(blob) - cut] if cut else blob)
    return path


def test_complete_kdump_file(tmp_path):
    d = vmcore.read_dump(kdump_file(tmp_path / "vmcore"))
    assert (d.format, d.complete, d.dump_level) == ("kdump-compressed", True, 31)
    assert d.vmcoreinfo["OSRELEASE"] == "6.1.192-kdump"
    assert d.vmcoreinfo["BUILD-ID"] == "d208f5d3ffe30e8f16e56d303399ab0603e410b1"


def test_truncated_kdump_file_is_incomplete(tmp_path):
    d = vmcore.read_dump(kdump_file(tmp_path / "vmcore", cut=50))
    assert not d.complete and "page data runs to byte" in d.why_incomplete


def test_kdump_incomplete_flag(tmp_path):
    d = vmcore.read_dump(kdump_file(tmp_path / "vmcore", status=0x1 | 0x8))
    assert not d.complete and "INCOMPLETE" in d.why_incomplete


def test_elf_dump_and_its_truncation(tmp_path):
    d = vmcore.read_dump(elf_file(tmp_path / "vmcore"))
    assert (d.format, d.complete, d.vmcoreinfo["OSRELEASE"]) == ("elf", True, "6.1.192-kdump")
    cut = vmcore.read_dump(elf_file(tmp_path / "short", cut=1))
    assert not cut.complete and "segments run to byte" in cut.why_incomplete


def test_flattened_and_unknown_are_not_accepted(tmp_path):
    (tmp_path / "flat").write_bytes(b"makedumpfile\0\0\0\0" + b"\0" * 100)
    (tmp_path / "junk").write_bytes(b"hello world" * 10)
    flat, junk = vmcore.read_dump(tmp_path / "flat"), vmcore.read_dump(tmp_path / "junk")
    assert (flat.format, flat.complete) == ("flattened", False) and "makedumpfile -R" in flat.why_incomplete
    assert (junk.format, junk.complete) == ("unknown", False)


@pytest.mark.parametrize("collector,want", [
    ("makedumpfile -c --message-level 1 -d 31", "kdump-compressed"),
    ("makedumpfile -l -d 31", "kdump-compressed"),
    ("makedumpfile -E -d 31", "elf"),
    ("makedumpfile -cE -d 31", "elf"),
    ("makedumpfile -d31 -F", "flattened"),
    ("makedumpfile -d 31 --message-level 1", "kdump-compressed"),
    ("/usr/bin/makedumpfile -x/tmp/vmlinuxE", "kdump-compressed"),  # E inside -x's argument
    ("cp --sparse=always", "elf"),
])
def test_expected_format_follows_the_collector(collector, want):
    assert makedumpfile.expected_format(collector) == want
