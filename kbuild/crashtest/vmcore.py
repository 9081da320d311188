"""Read a vmcore on the host: its format, whether it is complete, VMCOREINFO, dmesg, and a drgn view.

Only facts are returned here; kbuild.crashtest turns them into pass/fail checks with the
expected and actual values. Formats: makedumpfile's kdump-compressed (diskdump_mod.h:
disk_dump_header + kdump_sub_header, bitmaps, page descriptors, page data), ELF (what
/proc/vmcore is, and `makedumpfile -E` or `cp` write), and flattened (`makedumpfile -F`,
a stream format that must be rebuilt with `makedumpfile -R` before tools can read it).
The dump's machine (ELF e_machine, or the kdump header's utsname.machine) picks the layout
of its register notes: x86_64 and aarch64 struct elf_prstatus differ after the common head.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

from kbuild.core.errors import MissingTool
from kbuild.core.proc import run

KDUMP_SIG = b"KDUMP   "
FLAT_SIG = b"makedumpfile\0"
DUMP_DH_COMPRESSED_INCOMPLETE = 0x8
_HDR = struct.Struct("<IiiIIIIIIi")        # status .. nr_cpus, at offset 424 of disk_dump_header
_SUB = struct.Struct("<QiiQQqQqQqQQQQ")    # kdump_sub_header (64-bit little-endian: x86_64, aarch64)
_PAGE_DESC = struct.Struct("<qIIQ")        # offset, size, flags, page_flags
_UTS_MACHINE = 8 + 4 + 4 * 65             # signature, header_version, then new_utsname's machine[65]


@dataclass
class DumpFile:
    path: Path
    size: int
    format: str                  # kdump-compressed | elf | flattened | unknown
    complete: bool
    why_incomplete: str = ""
    vmcoreinfo: dict[str, str] = field(default_factory=dict)
    dump_level: int | None = None
    nr_cpus: int | None = None   # kdump header: CPUs of the crashed kernel
    machine: str = ""            # x86_64 | aarch64 (`uname -m` of the crashed kernel)
    prstatus: list[Prstatus] = field(default_factory=list)   # in CPU order, as the kernel wrote them


@dataclass(frozen=True)
class Prstatus:
    """One NT_PRSTATUS note: a CPU's saved registers (crash_save_cpu). Only CPUs that saved one have it."""

    pid: int      # the task that was running on that CPU (0: the idle task)
    pc: int
    sp: int


@dataclass(frozen=True)
class RegLayout:
    """Where struct elf_prstatus keeps the registers on one architecture (pr_reg is 64-bit words)."""

    count: int    # words in pr_reg
    pc: int       # index of the program counter
    sp: int       # index of the stack pointer


NT_PRSTATUS = 1
_PRSTATUS_PID = 32    # offset of pr_pid: the same head (siginfo, cursig, sigpend, sighold) on both
_PRSTATUS_REGS = 112  # offset of pr_reg on both
# x86_64: struct user_regs_struct (rip is register 16, rsp 19); aarch64: struct user_pt_regs
# (x0-x30, sp, pc, pstate)
LAYOUTS = {"x86_64": RegLayout(27, 16, 19), "aarch64": RegLayout(34, 32, 31)}
ELF_MACHINES = {62: "x86_64", 183: "aarch64"}   # EM_X86_64, EM_AARCH64


def parse_notes(notes: bytes, dump: DumpFile) -> None:
    """ELF notes (the dump's PT_NOTE, or a kdump file's note area) into vmcoreinfo and prstatus.

    Register notes are read with the layout of `dump.machine` (x86_64 when unknown, as before).
    """
    layout = LAYOUTS.get(dump.machine or "x86_64")
    pos = 0
    while pos + 12 <= len(notes):
        namesz, descsz, ntype = struct.unpack_from("<III", notes, pos)
        name = notes[pos + 12:pos + 12 + namesz].rstrip(b"\0")
        desc_at = pos + 12 + (namesz + 3) // 4 * 4
        desc = notes[desc_at:desc_at + descsz]
        if name == b"VMCOREINFO":
            dump.vmcoreinfo = dump.vmcoreinfo or parse_vmcoreinfo(desc.decode(errors="replace"))
        elif name == b"CORE" and ntype == NT_PRSTATUS and layout \
                and len(desc) >= _PRSTATUS_REGS + layout.count * 8:
            regs = struct.unpack_from(f"<{layout.count}Q", desc, _PRSTATUS_REGS)
            dump.prstatus.append(Prstatus(struct.unpack_from("<i", desc, _PRSTATUS_PID)[0],
                                          regs[layout.pc], regs[layout.sp]))
        pos = desc_at + (descsz + 3) // 4 * 4


@dataclass
class DebugView:
    """What the debug vmlinux sees in the dump (drgn)."""

    opened: bool
    error: str = ""
    release: str = ""
    build_id: str = ""
    task: str = ""
    pid: int = 0
    stack: list[str] = field(default_factory=list)
    program: object = field(default=None, repr=False)   # the drgn.Program, for further reads (kbuild.crashtest.cpus)


def parse_vmcoreinfo(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key not in out:
            out[key] = value
    return out


def _kdump(path: Path, fh, size: int) -> DumpFile:
    head = fh.read(464)
    if len(head) < 464:
        return DumpFile(path, size, "kdump-compressed", False, "file ends inside the header")
    hdr = _HDR.unpack_from(head, 424)
    status, block, sub_blocks, bitmap_blocks, nr_cpus = *hdr[:4], hdr[9]
    if block <= 0 or block > 1 << 20:
        return DumpFile(path, size, "kdump-compressed", False, f"header block_size {block} is invalid")
    fh.seek(block)
    sub = fh.read(_SUB.size)
    info: dict[str, str] = {}
    level = None
    notes = b""
    if len(sub) == _SUB.size:
        fields = _SUB.unpack(sub)
        level, off, length = fields[1], fields[5], fields[6]
        if 0 < off and 0 < length < 1 << 20 and off + length <= size:
            fh.seek(off)
            info = parse_vmcoreinfo(fh.read(length).decode(errors="replace"))
        note_off, note_len = fields[7], fields[8]   # the ELF notes: one NT_PRSTATUS per CPU, VMCOREINFO
        if 0 < note_off and 0 < note_len < 1 << 20 and note_off + note_len <= size:
            fh.seek(note_off)
            notes = fh.read(note_len)
    machine = head[_UTS_MACHINE:_UTS_MACHINE + 65].split(b"\0")[0].decode(errors="replace")
    dump = DumpFile(path, size, "kdump-compressed", True, vmcoreinfo=info, dump_level=level, nr_cpus=nr_cpus,
                    machine=machine)
    parse_notes(notes, dump)
    if status & DUMP_DH_COMPRESSED_INCOMPLETE:
        dump.complete, dump.why_incomplete = False, "header status says DUMP_DH_COMPRESSED_INCOMPLETE"
        return dump
    # Every dumpable page (a bit in the second bitmap) has a descriptor; its data must be in the file.
    bitmap_at = (1 + sub_blocks) * block
    half = bitmap_blocks * block // 2
    fh.seek(bitmap_at + half)
    bitmap2 = fh.read(half)
    if len(bitmap2) < half:
        dump.complete, dump.why_incomplete = False, "file ends inside the page bitmaps"
        return dump
    pages = int.from_bytes(bitmap2, "little").bit_count()
    fh.seek(bitmap_at + 2 * half)
    descs = fh.read(pages * _PAGE_DESC.size)
    if len(descs) < pages * _PAGE_DESC.size:
        dump.complete, dump.why_incomplete = False, f"file ends inside the descriptors of {pages} pages"
        return dump
    end = max((o + s for o, s, _, _ in _PAGE_DESC.iter_unpack(descs)), default=0)
    if end > size:
        dump.complete, dump.why_incomplete = False, f"page data runs to byte {end}, the file has {size}"
    return dump


def _elf(path: Path, fh, size: int) -> DumpFile:
    eh = fh.read(64)
    dump = DumpFile(path, size, "elf", True)
    if len(eh) < 64 or eh[4] != 2 or eh[5] != 1:
        dump.complete, dump.why_incomplete = False, "not a complete little-endian ELF64 header"
        return dump
    e_machine, = struct.unpack_from("<H", eh, 18)
    dump.machine = ELF_MACHINES.get(e_machine, f"e_machine {e_machine}")
    phoff, = struct.unpack_from("<Q", eh, 32)
    phentsize, phnum = struct.unpack_from("<HH", eh, 54)
    fh.seek(phoff)
    table = fh.read(phentsize * phnum)
    if len(table) < phentsize * phnum:
        dump.complete, dump.why_incomplete = False, "file ends inside the program headers"
        return dump
    end = 0
    for i in range(phnum):
        p_type, _, p_offset, _, _, p_filesz = struct.unpack_from("<IIQQQQ", table, i * phentsize)
        end = max(end, p_offset + p_filesz)
        if p_type == 4 and p_offset + p_filesz <= size:  # PT_NOTE
            fh.seek(p_offset)
            parse_notes(fh.read(p_filesz), dump)
    if end > size:
        dump.complete, dump.why_incomplete = False, f"segments run to byte {end}, the file has {size}"
    return dump


def read_dump(path: Path) -> DumpFile:
    size = path.stat().st_size
    with open(path, "rb") as fh:
        magic = fh.read(16)
        fh.seek(0)
        if magic.startswith(KDUMP_SIG):
            return _kdump(path, fh, size)
        if magic.startswith(b"\x7fELF"):
            return _elf(path, fh, size)
        if magic.startswith(FLAT_SIG):
            return DumpFile(path, size, "flattened", False,
                            "flattened format (makedumpfile -F); rebuild it with makedumpfile -R")
    return DumpFile(path, size, "unknown", False, f"unknown format (first bytes {magic[:8]!r})")


def dump_dmesg(vmcore: Path, out: Path, log: Path | None = None) -> str:
    """The crashed kernel's log, read from the dump by makedumpfile itself (it will not overwrite `out`)."""
    out.unlink(missing_ok=True)
    run(["makedumpfile", "--dump-dmesg", str(vmcore), str(out)], log=log)
    return out.read_text(errors="replace")


def dmesg_with_drgn(vmcore: Path, vmlinux: Path, out: Path) -> str:
    """The crashed kernel's log read by drgn (printk's ring buffer), for a dump of another architecture.

    Debian's makedumpfile reads only its own architecture's dumps (on x86_64 it fails an aarch64
    one with `vtop4_x86_64: Can't get the symbol of init_level4_pgt`); drgn reads any. Raises
    ValueError with drgn's reason.
    """
    import drgn
    from drgn.helpers.linux.printk import get_dmesg
    try:
        prog = drgn.Program()
        prog.set_core_dump(str(vmcore))
        prog.load_debug_info([str(vmlinux)])
        text = get_dmesg(prog).decode(errors="replace")
    except (drgn.FaultError, drgn.MissingDebugInfoError, ValueError, OSError, LookupError) as e:
        raise ValueError(f"drgn cannot read the log buffer: {e}") from None
    out.write_text(text)
    return text


def open_with_debuginfo(vmcore: Path, vmlinux: Path, modules: tuple[Path, ...] = ()) -> DebugView:
    """Open the dump with the debug vmlinux (drgn) and read the crashed task's stack.

    `modules` are .ko files whose debug info names their frames (LKDTM's lkdtm_BUG ...);
    drgn matches them to the dump's loaded modules and ignores the rest.
    """
    try:
        import drgn
    except ImportError:
        raise MissingTool("the Python module drgn is missing (pip install drgn==0.3.0; `make setup` "
                          "installs it)") from None
    view = DebugView(opened=False)
    try:
        prog = drgn.Program()
        prog.set_core_dump(str(vmcore))
        prog.load_debug_info([str(vmlinux), *map(str, modules)])
    except drgn.MissingDebugInfoError as e:
        view.error = f"{vmlinux} does not match the dump ({str(e).splitlines()[0]})"
        return view
    except (drgn.FaultError, ValueError, OSError, LookupError) as e:
        view.error = f"drgn cannot open the dump: {e}"
        return view
    try:
        module = prog.main_module()
        view.build_id = module.build_id.hex() if module.build_id else ""
        if module.debug_file_path is None:
            view.error = (f"{vmlinux} was not used: its build-id does not match the dump's kernel "
                          f"({view.build_id or 'no build-id'})")
            return view
        view.release = prog["init_uts_ns"].name.release.string_().decode()
        thread = prog.crashed_thread()
        view.pid = thread.tid
        view.task = thread.object.comm.string_().decode(errors="replace")
        view.stack = [f.name or hex(f.pc) for f in thread.stack_trace()]
        view.program = prog
    except (drgn.FaultError, ValueError, LookupError) as e:
        view.error = f"drgn opened the dump but cannot read the crashed task: {e}"
        return view
    view.opened = True
    return view
