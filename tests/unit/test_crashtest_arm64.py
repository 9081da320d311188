"""The crash test's arch-aware parts without a kernel: QEMU's command, the accelerator, the arm64
register notes, per-arch triggers and needs, the named nmi skip, and the arm64 capture initramfs
made of Debian's arm64 packages (cached by `make setup`)."""
import dataclasses
import gzip
import json
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from kbuild.core import arch
from kbuild.core.errors import BadInput
from kbuild.crashtest import debs, initramfs, qemu, vmcore
from kbuild.crashtest import stage as crashtest
from kbuild.crashtest.report import CrashReport, MatrixReport
from kbuild.crashtest.settings import policy

ARM64 = arch.get("arm64")
X86 = arch.get("x86_64")


def spec(a, accel="tcg"):
    return qemu.VmSpec(Path("/k/Image"), Path("/k/initrd.img"), "console=x", Path("/k/dump.img"), "1G", accel, 2,
                       None, a)


def test_arm64_qemu_command():
    cmd = spec(ARM64).command()
    assert cmd[0] == "qemu-system-aarch64"
    assert cmd[cmd.index("-machine") + 1] == "virt" and cmd[cmd.index("-cpu") + 1] == "cortex-a57"
    assert cmd[cmd.index("-accel") + 1] == "tcg,thread=multi" and cmd[cmd.index("-smp") + 1] == "2"
    assert cmd[cmd.index("-device") + 1] == "virtio-blk-pci,drive=dump"
    assert cmd[cmd.index("-kernel") + 1] == "/k/Image"


def test_x86_qemu_command_is_unchanged():
    cmd = spec(X86).command()
    assert cmd == spec(arch.get()).command()
    assert cmd[:6] == ["qemu-system-x86_64", "-accel", "tcg,thread=multi", "-machine", "pc", "-m"]
    assert "-cpu" not in cmd and cmd[-2:] == ["-device", "virtio-blk-pci,drive=dump"]


def test_a_foreign_guest_gets_tcg_without_a_kvm_probe(tmp_path):
    accel, why = qemu.choose_accel("auto", tmp_path / "no-such-Image", 4, tmp_path / "probe.log", ARM64)
    assert accel == "tcg" and "aarch64 guest on a x86_64 host" in why
    assert not (tmp_path / "probe.log").exists()


def _note(name: bytes, ntype: int, desc: bytes) -> bytes:
    pad = lambda b: b + b"\0" * (-len(b) % 4)  # noqa: E731
    return struct.pack("<III", len(name) + 1, len(desc), ntype) + pad(name + b"\0") + pad(desc)


def _arm64_prstatus(pid: int, pc: int, sp: int) -> bytes:
    desc = bytearray(392)   # sizeof(struct elf_prstatus) on arm64: pr_reg is x0-x30, sp, pc, pstate
    struct.pack_into("<i", desc, 32, pid)
    struct.pack_into("<QQ", desc, 112 + 31 * 8, sp, pc)
    return bytes(desc)


def _elf_core(machine: int, notes: bytes) -> bytes:
    """An ELF64 core: header, one PT_NOTE program header, the notes."""
    eh = bytearray(64)
    eh[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<HHI", eh, 16, 4, machine, 1)               # ET_CORE, e_machine, version
    struct.pack_into("<Q", eh, 32, 64)                            # e_phoff
    struct.pack_into("<HHH", eh, 52, 64, 56, 1)                   # e_ehsize, e_phentsize, e_phnum
    ph = struct.pack("<IIQQQQQQ", 4, 0, 64 + 56, 0, 0, len(notes), len(notes), 4)
    return bytes(eh) + ph + notes


def test_arm64_prstatus_from_an_elf_core(tmp_path):
    notes = (_note(b"CORE", 1, _arm64_prstatus(0, 0xffff800008a1b2c4, 0xffff80000a003e70))
             + _note(b"CORE", 1, _arm64_prstatus(61, 0xffff8000080113f0, 0xffff80000a2cbd10)))
    core = tmp_path / "vmcore"
    core.write_bytes(_elf_core(183, notes))   # EM_AARCH64
    dump = vmcore.read_dump(core)
    assert dump.machine == "aarch64" and dump.complete
    assert [(p.pid, hex(p.pc), hex(p.sp)) for p in dump.prstatus] == [
        (0, "0xffff800008a1b2c4", "0xffff80000a003e70"), (61, "0xffff8000080113f0", "0xffff80000a2cbd10")]
    # the same notes read with x86_64's layout would put pc at register 16: the machine decides
    core.write_bytes(_elf_core(62, notes))
    assert vmcore.read_dump(core).machine == "x86_64"
    assert [p.pc for p in vmcore.read_dump(core).prstatus] == [0, 0]


def test_triggers_as_each_arch_shows_them():
    t = policy().trigger
    assert t["exception"].for_arch("x86_64").signature[1] == "BUG: kernel NULL pointer dereference"
    arm = t["exception"].for_arch("arm64")
    assert arm.signature[1] == "Unable to handle kernel NULL pointer dereference" and arm.stack == "lkdtm_EXCEPTION"
    assert t["sysrq"].for_arch("arm64") is t["sysrq"]
    assert "nmi" in ARM64.crash.skip and not ARM64.qemu.nmi and X86.crash.skip == {}
    line = crashtest.production_cmdline("256M", "ab" * 16, t["sysrq"], ARM64)
    assert line.startswith("console=ttyAMA0 earlycon crashkernel=256M ")
    assert crashtest.production_cmdline("256M", "ab", t["sysrq"]).startswith("console=ttyS0 earlyprintk=serial")


def test_vm_needs_follow_the_arch():
    values = {s: "y" for s in policy().needs} | {"KEXEC_FILE": "y"}
    values["SERIAL_8250_CONSOLE"] = "n"
    assert crashtest.vm_needs(values, "file", "arm64")[1] == []
    assert "CONFIG_SERIAL_8250_CONSOLE=y" in crashtest.vm_needs(values, "file", "x86_64")[1][0]
    values = {**values, "SERIAL_8250_CONSOLE": "y", "SERIAL_AMBA_PL011_CONSOLE": "n", "PCI_HOST_GENERIC": "n"}
    assert crashtest.vm_needs(values, "file", "x86_64")[1] == []
    missing = crashtest.vm_needs(values, "file", "arm64")[1]
    assert [m.split("=")[0] for m in missing] == ["CONFIG_SERIAL_AMBA_PL011_CONSOLE", "CONFIG_PCI_HOST_GENERIC"]


def test_nmi_is_a_named_skip_in_both_reports(tmp_path):
    prep = crashtest.Prepared(None, "6.1.192-arm64.kdump", "ab", Path("Image"), Path("vmlinux"),
                              crashtest.CrashTestSettings.from_flags(trigger="all"), tmp_path, None, "", "tcg",
                              "cross", {}, arch=ARM64)
    nmi = policy().trigger["nmi"]
    run = crashtest.skipped_run(prep, nmi, ARM64.crash.skip["nmi"], tmp_path / "nmi")
    assert run.verdict == "skip" and run.ok and "inject-nmi" in run.skipped and run.skipped.startswith("nmi on arm64")
    on_disk = json.loads((tmp_path / "nmi" / "report.json").read_text())
    assert on_disk["verdict"] == "skip" and on_disk["skipped"] == run.skipped
    passed = CrashReport("r", "ab", "n", "tcg", "", {}, "", "", {}, trigger="sysrq",
                         crash_tool={"status": "skip", "reason": "crash cannot"})
    matrix = MatrixReport("r", "ab", 2, ["sysrq", "nmi"], [passed, run])
    assert matrix.ok and matrix.to_dict()["summary"]["nmi"]["verdict"] == "skip"
    suite = ET.fromstring(matrix.to_junit().split("\n", 1)[1])
    nmi_case = suite.find("testcase[@classname='crash-test.trigger'][@name='nmi']")
    assert "no x86-style NMI" in nmi_case.find("skipped").get("message")
    assert suite.get("failures") == "0" and int(suite.get("skipped")) == 3   # nmi, nmi's crash, sysrq's crash


@pytest.mark.host_tools
def test_find_crashkernel_refuses_a_skipped_trigger(fake_manifest, tmp_path):
    from kbuild.core.manifest import Manifest
    from kbuild.crashtest import sizing
    path = fake_manifest(tmp_path)
    data = json.loads(path.read_text())
    data["toolchain"]["arch"] = "arm64"
    path.write_text(json.dumps(data))
    settings = crashtest.CrashTestSettings.from_flags(trigger="nmi")
    with pytest.raises(BadInput, match="not on arm64 .*no x86-style NMI"):
        sizing.find_crashkernel(Manifest.read(path), settings)


# --- the arm64 capture initramfs (Debian's arm64 .debs; nothing arm64 runs on the host) ------

CONF = initramfs.CaptureConfig("-s", "nr_cpus=1 console=ttyAMA0 earlycon", "/var/crash",
                               "makedumpfile -c --message-level 1 -d 31", "reboot")


def newc(raw: bytes) -> dict[str, tuple[int, bytes]]:
    out, pos = {}, 0
    while True:
        f = [int(raw[pos + 6 + 8 * i: pos + 14 + 8 * i], 16) for i in range(13)]
        namesize, size = f[11], f[6]
        name = raw[pos + 110: pos + 110 + namesize - 1].decode()
        pos = (pos + 110 + namesize + 3) // 4 * 4
        data = raw[pos:pos + size]
        pos = (pos + size + 3) // 4 * 4
        if name == "TRAILER!!!":
            return out
        out[name] = (f[1], data)


@pytest.fixture(scope="module")
def arm64_image(tmp_path_factory):
    return initramfs.build(tmp_path_factory.mktemp("a") / "initrd.img", CONF, mtime=1700000000,
                           programs=initramfs.programs_for(ARM64))


@pytest.mark.host_tools
def test_arm64_initramfs_is_arm64_throughout_and_deterministic(arm64_image, tmp_path):
    entries = newc(gzip.decompress(arm64_image.path.read_bytes()))
    for name in ("init", "bin/busybox", "bin/sh", "usr/sbin/kexec", "usr/bin/makedumpfile",
                 "lib/ld-linux-aarch64.so.1", "lib/aarch64-linux-gnu/libc.so.6",
                 "lib/aarch64-linux-gnu/libz.so.1", "lib/aarch64-linux-gnu/libxenctrl.so.4.17",
                 "lib/aarch64-linux-gnu/libdw.so.1"):
        assert name in entries, name
    elves = {n: d for n, (mode, d) in entries.items() if d[:4] == b"\x7fELF"}
    assert len(elves) >= 15
    assert {struct.unpack_from("<H", d, 18)[0] for d in elves.values()} == {183}   # EM_AARCH64 only
    assert entries["bin/sh"][1] == b"busybox"                                       # the rest: busybox --install
    init = entries["init"][1].decode()
    assert "/lib/aarch64-linux-gnu" in init and "x86_64" not in init and "busybox --install -s" in init
    assert "while [ \"$(date +%s)\" -lt 2 ]" in init   # no CRASHTIME=0 without an RTC
    again = initramfs.build(tmp_path / "again.img", CONF, mtime=1700000000, programs=initramfs.programs_for(ARM64))
    assert again.path.read_bytes() == arm64_image.path.read_bytes()


@pytest.mark.host_tools
def test_every_dt_needed_resolves_in_the_listed_packages(monkeypatch):
    root = debs.unpack(ARM64)
    found = debs.resolve(root, [debs.inside(root, "/" + p) for p in debs.PROGRAM_PATHS.values()], "aarch64-linux-gnu")
    assert found.missing == [] and "/lib/aarch64-linux-gnu/liblzo2.so.2" in found.libraries
    # a package left out of the list is named by the library it would have shipped
    short = dataclasses.replace(ARM64, crash=dataclasses.replace(
        ARM64.crash, capture_debs=tuple(p for p in ARM64.crash.capture_debs if p != "liblzo2-2")))
    with pytest.raises(BadInput, match=r"need liblzo2\.so\.2, which none of \[arm64.crash\] capture_debs ships"):
        initramfs.foreign_programs(short)


def test_inside_follows_symlinks_within_the_root(tmp_path):
    (tmp_path / "lib" / "aarch64-linux-gnu").mkdir(parents=True)
    (tmp_path / "lib" / "aarch64-linux-gnu" / "ld-2.36.so").write_bytes(b"x")
    (tmp_path / "lib" / "aarch64-linux-gnu" / "ld-linux-aarch64.so.1").symlink_to("ld-2.36.so")
    (tmp_path / "lib" / "ld-linux-aarch64.so.1").symlink_to("/lib/aarch64-linux-gnu/ld-linux-aarch64.so.1")
    assert debs.inside(tmp_path, "/lib/ld-linux-aarch64.so.1") == tmp_path / "lib/aarch64-linux-gnu/ld-2.36.so"


def test_prstatus_of_a_real_arm64_dump():
    """The head of a real kdump-compressed arm64 dump (6.1.192-arm64.kdump, sysrq on CPU 1 of 2, taken
    by this crash test): its header, sub-header, VMCOREINFO and ELF notes, cut before the page bitmaps."""
    dump = vmcore.read_dump(Path(__file__).parent / "data" / "arm64-6.1-sysrq-vmcore-head.bin")
    assert dump.format == "kdump-compressed" and not dump.complete   # cut: no bitmaps, no pages
    assert dump.machine == "aarch64" and dump.nr_cpus == 2
    assert dump.vmcoreinfo["OSRELEASE"] == "6.1.192-arm64.kdump" and dump.vmcoreinfo["CRASHTIME"] != "0"
    stext = int(dump.vmcoreinfo["SYMBOL(_stext)"], 16)
    assert [p.pid for p in dump.prstatus] == [11, 78]                 # CPU 1: the `sh` that wrote sysrq-trigger
    for p in dump.prstatus:
        assert stext <= p.pc < stext + (16 << 20), hex(p.pc)          # in the kernel's text
        assert p.sp >> 39 == (1 << 25) - 1, hex(p.sp)                 # a kernel stack (39-bit VA)
    assert [hex(p.pc) for p in dump.prstatus] == ["0xffffffc00806a0a0", "0xffffffc0080b14c8"]
