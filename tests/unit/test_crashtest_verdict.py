"""From console lines to a verdict: phases, timings, the failure messages the issue asks for, the reports."""
import xml.etree.ElementTree as ET

import pytest

from kbuild.core import sizes
from kbuild.crashtest import stage as crashtest
from kbuild.crashtest.settings import CrashTestSettings
from kbuild.crashtest import qemu
from kbuild.crashtest.watch import ConsoleWatch, RunFacts, diagnose
from kbuild.crashtest.report import Check, CrashReport, Failure
from kbuild.core.errors import BadInput


def console(*texts, step=0.5):
    return [qemu.ConsoleLine(round(i * step, 3), t) for i, t in enumerate(texts)]


def watched(lines, *, timed_out=False, stopped=False, returncode=0):
    watch = ConsoleWatch(grace=1)
    for line in lines:
        watch(line)
    vm = qemu.VmRun(lines, returncode, timed_out, stopped, lines[-1].t + 0.1 if lines else 0)
    return watch, vm


def facts(crashkernel="256M", timeout=300, collector="makedumpfile -c -d 31"):
    return RunFacts(crashkernel, timeout, collector, "reboot", 2 << 20, 3 << 20)


PRODUCTION = ["Linux version 6.1.192-kdump (kbuild@kdump-pipeline) #1",
              "Run /init as init process", "KDUMPTEST: production init uptime=0.70",
              "KDUMPTEST: crashkernel bytes=268435456", "KDUMPTEST: kexec-load start"]
LOADED = ["KDUMPTEST: kexec-load rc=0 loaded=1", "KDUMPTEST: crashing", "sysrq: Trigger a crash",
          "Kernel panic - not syncing: sysrq triggered crash"]
CAPTURE = ["Linux version 6.1.192-kdump (kbuild@kdump-pipeline) #1", "Run /init as init process",
           "KDUMPTEST: capture init uptime=0.70", "KDUMPTEST: dump start"]


def test_a_good_run_has_contiguous_phases_and_no_failure():
    lines = console(*PRODUCTION, *LOADED, *CAPTURE, "KDUMPTEST: dump complete path=/var/crash/n/vmcore bytes=4800000",
                    "reboot: machine restart")
    watch, vm = watched(lines)
    assert diagnose(watch, vm, facts("256M", 300)) is None
    t = watch.timings(vm)
    assert list(t) == ["boot", "kexec_load", "crash", "capture_boot", "dump", "shutdown"]
    assert t["boot"] == 1.0 and t["kexec_load"] == 1.5 and t["crash"] == 2.0 and t["capture_boot"] == 1.0
    assert sum(t.values()) == pytest.approx(vm.duration)
    assert watch.dump_bytes == 4800000 and watch.banners == [0, 9]


def test_kexec_refusal_names_the_reservation():
    lines = console(*PRODUCTION, "kexec_file_load failed: Cannot assign requested address",
                    "KDUMPTEST: kexec-load rc=255 loaded=0", "KDUMPTEST: FAIL capture kernel not loaded")
    f = diagnose(*watched(lines), facts("16M", 300))
    assert f.phase == "kexec_load"
    assert "kexec said: kexec_file_load failed: Cannot assign requested address" in f.message
    assert "crashkernel=16M reservation is likely too small for bzImage (2.0 MiB) plus initrd (3.0 MiB)" in f.message


def test_no_reservation_at_all_is_said_so():
    lines = console(PRODUCTION[0], "crashkernel reservation failed - memory is in use.", *PRODUCTION[1:3],
                    "KDUMPTEST: crashkernel bytes=0", "KDUMPTEST: kexec-load start",
                    "kexec_file_load failed: Cannot assign requested address",
                    "KDUMPTEST: kexec-load rc=255 loaded=0")
    f = diagnose(*watched(lines), facts("900M", 300))
    assert "crashkernel=900M reserved no memory (crashkernel reservation failed - memory is in use.)" in f.message


def test_capture_kernel_out_of_memory_says_raise_crashkernel():
    lines = console(*PRODUCTION, *LOADED, CAPTURE[0],
                    "Kernel panic - not syncing: __populate_section_memmap: Failed to allocate 2097152 bytes",
                    "PANIC: early exception 0x0d IP 10:ffffffff8127daf9")
    watch, vm = watched(lines, stopped=True, returncode=-9)
    f = diagnose(watch, vm, facts("24M", 300))
    assert f.phase == "capture_boot"
    assert f.message.startswith("no dump: the capture kernel ran out of memory or hung before its /init "
                                "(Kernel panic - not syncing: __populate_section_memmap: Failed to allocate")
    assert f.message.endswith("raise crashkernel (now 24M)")


def test_a_dead_capture_kernel_stops_the_wait():
    watch = ConsoleWatch(grace=1)
    for line in console(*PRODUCTION, *LOADED, CAPTURE[0]):
        assert watch(line) is None
    assert watch(qemu.ConsoleLine(9, "PANIC: early exception 0x0d")) is not None


def test_hang_during_the_dump_times_out_in_that_phase():
    lines = console(*PRODUCTION, *LOADED, *CAPTURE, "Copying data : [ 40.0 %]")
    f = diagnose(*watched(lines, timed_out=True, returncode=-9), facts("64M", 120))
    assert f.phase == "dump"
    assert "hung during the dump" in f.message and "timed out after 120s" in f.message
    assert f.message.endswith("raise crashkernel (now 64M)")


def test_collector_failure_names_the_collector_and_the_action():
    lines = console(*PRODUCTION, *LOADED, *CAPTURE, "KDUMPTEST: FAIL collector exited 1; failure_action=reboot")
    f = diagnose(*watched(lines), facts(collector="makedumpfile -d 99"))
    assert f == Failure("dump", "the collector failed: `makedumpfile -d 99` exited 1; failure_action reboot ran")


def test_collector_killed_by_the_oom_killer_says_raise_crashkernel():
    lines = console(*PRODUCTION, *LOADED, *CAPTURE, "Out of memory: Killed process 60 (makedumpfile)",
                    "KDUMPTEST: FAIL collector exited 137; failure_action=reboot")
    f = diagnose(*watched(lines), facts("40M", 300))
    assert "exited 137" in f.message and f.message.endswith("raise crashkernel (now 40M)")


@pytest.mark.parametrize("cut,phase,words", [
    (2, "boot", "never reached /init"),
    (6, "crash", "never triggered the crash"),
    (7, "crash", "capture kernel never started"),
])
def test_timeouts_name_the_phase(cut, phase, words):
    lines = console(*(PRODUCTION + LOADED)[:cut])
    f = diagnose(*watched(lines, timed_out=True), facts("256M", 300))
    assert f.phase == phase and words in f.message and "timed out after 300s" in f.message


def test_settings_refuse_what_cannot_work():
    with pytest.raises(BadInput, match="range syntax"):
        CrashTestSettings.from_flags(crashkernel="2G-64G:256M")
    with pytest.raises(BadInput, match="below the guest memory"):
        CrashTestSettings.from_flags(memory="512M", crashkernel="512M")
    with pytest.raises(BadInput, match="choose file"):
        CrashTestSettings.from_flags(kexec="kexec_load")
    with pytest.raises(BadInput, match="--memory 'lots': a size such as 256M expected"):
        CrashTestSettings.from_flags(memory="lots")
    with pytest.raises(BadInput, match="leading 0"):
        CrashTestSettings.from_flags(crashkernel="0400M")
    with pytest.raises(BadInput, match="plain size"):
        CrashTestSettings.from_flags(crashkernel="64M@16M")
    s = CrashTestSettings.from_flags(memory="768M", crashkernel="64M", timeout="90")
    assert (s.memory, s.crashkernel, s.timeout, s.kexec) == (768 << 20, 64 << 20, 90.0, "file")
    # hex is the kernel's grammar too; --find-crashkernel starts from the same bytes
    assert CrashTestSettings.from_flags(crashkernel="0x10000000").crashkernel == 256 << 20


def test_sizes_round_trip():
    assert sizes.parse("1G") == 1 << 30 and sizes.fmt(1 << 30) == "1G"
    assert sizes.fmt(sizes.parse("96m")) == "96M" and sizes.parse("0x4000000") == 64 << 20


def test_vm_needs_names_symbols_and_carries_modules():
    values = {s: "y" for s in ("SMP", "SERIAL_8250_CONSOLE", "BLK_DEV_INITRD", "RD_GZIP", "DEVTMPFS", "PROC_FS", "SYSFS",
                               "BINFMT_ELF", "BINFMT_SCRIPT", "VIRTIO_PCI", "KEXEC_FILE", "KEXEC")}
    values.update(VIRTIO_BLK="m", EXT4_FS="m")
    modules, missing = crashtest.vm_needs(values, "file")
    assert modules == ["virtio_blk", "ext4"] and missing == []
    modules, missing = crashtest.vm_needs({**values, "SERIAL_8250_CONSOLE": "n"}, "classic")
    assert [m.split()[0] for m in missing] == ["CONFIG_SERIAL_8250_CONSOLE=y", "CONFIG_PROC_KCORE=y"]


def test_reports_render(tmp_path):
    r = CrashReport("6.1.192-kdump", "ab", "n0", "tcg", "why", {}, "p", "c", {},
                    timings={"boot": 1.0, "kexec_load": 0.5},
                    checks=[Check("osrelease", False, "6.1.192-kdump", "6.1.0")],
                    failure=Failure("verify", "verification failed: osrelease: expected 6.1.192-kdump, got 6.1.0"))
    suite = ET.fromstring(r.to_junit())
    assert suite.get("failures") == "2" and suite.get("tests") == "7"
    assert [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None] == ["verify", "osrelease"]
    assert r.to_dict()["verdict"] == "fail"
