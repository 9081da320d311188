"""Triggers, vCPUs and the per-CPU verdict: parsing, refusals, dump notes, crash's output, the reports."""
import struct
import xml.etree.ElementTree as ET

import pytest

from kbuild.core.errors import BadInput
from kbuild.crashtest import crashtool, qemu, vmcore
from kbuild.crashtest import stage as crashtest
from kbuild.crashtest.cpus import CpuState, CpuSurvey
from kbuild.crashtest.report import Check, CrashReport, Failure, MatrixReport
from kbuild.crashtest.settings import CrashTestSettings, parse_triggers, policy
from kbuild.crashtest.watch import ConsoleWatch, RunFacts, diagnose


def test_trigger_names_lists_and_all():
    assert [t.name for t in parse_triggers("all")] == ["sysrq", "panic", "bug", "exception", "softlockup", "nmi"]
    assert [t.name for t in parse_triggers(None)] == ["sysrq"]   # configs/crashtest.toml guest.trigger
    assert [t.name for t in parse_triggers("nmi, sysrq,nmi")] == ["nmi", "sysrq"]
    assert parse_triggers("warning")[0].in_all is False          # the negative test's trigger, never in all
    with pytest.raises(BadInput, match="--trigger 'oops': choose sysrq, panic"):
        parse_triggers("oops")


def test_cpus_flag():
    assert CrashTestSettings.from_flags().cpus == policy().guest.cpus >= 2
    assert CrashTestSettings.from_flags(cpus="4").cpus == 4
    with pytest.raises(BadInput, match="--cpus 1: give 2 to 64"):
        CrashTestSettings.from_flags(cpus=1)
    with pytest.raises(BadInput, match="--cpus 'two'"):
        CrashTestSettings.from_flags(cpus="two")


def test_each_trigger_is_data_the_guest_can_use():
    t = policy().trigger
    assert t["sysrq"].kind == "sysrq" and t["nmi"].kind == "nmi" and not t["nmi"].pinned
    assert t["bug"].fire == "lkdtm:BUG" and "kernel.panic_on_oops=1" in t["bug"].sysctls
    assert "kernel.softlockup_panic=1" in t["softlockup"].sysctls
    assert t["softlockup"].lines(1)[1] == "watchdog: BUG: soft lockup - CPU#1 stuck for"
    assert "kernel.unknown_nmi_panic=1" in t["nmi"].sysctls
    line = crashtest.production_cmdline("256M", "ab" * 16, t["softlockup"])
    assert ("crashtest.trigger=softlockup crashtest.fire=lkdtm:SOFTLOCKUP crashtest.settle=30 "
            "crashtest.sysctl=kernel.softlockup_panic=1,kernel.watchdog_thresh=1") in line


def test_lkdtm_trigger_on_a_kernel_without_lkdtm_names_the_option():
    values = {"DEBUG_FS": "y", "SOFTLOCKUP_DETECTOR": "y"}
    modules, missing = crashtest.trigger_needs(values, parse_triggers("sysrq,nmi"))
    assert modules == [] and missing == []
    modules, missing = crashtest.trigger_needs(values, parse_triggers("bug"))
    assert missing == ["--trigger bug: needs CONFIG_LKDTM=y or =m (LKDTM provides "
                       "/sys/kernel/debug/provoke-crash/DIRECT; the config has n)"]
    modules, missing = crashtest.trigger_needs({**values, "LKDTM": "m"}, parse_triggers("all"))
    assert modules == ["lkdtm"] and missing == []
    _, missing = crashtest.trigger_needs({"LKDTM": "y", "DEBUG_FS": "y"}, parse_triggers("softlockup"))
    assert missing and "CONFIG_SOFTLOCKUP_DETECTOR=y" in missing[0]


def _note(name: bytes, ntype: int, desc: bytes) -> bytes:
    pad = lambda b: b + b"\0" * (-len(b) % 4)  # noqa: E731
    return struct.pack("<III", len(name) + 1, len(desc), ntype) + pad(name + b"\0") + pad(desc)


def _prstatus(pid: int, rip: int) -> bytes:
    desc = bytearray(336)   # sizeof(struct elf_prstatus) on x86_64
    struct.pack_into("<i", desc, 32, pid)
    struct.pack_into("<Q", desc, 112 + 16 * 8, rip)
    return bytes(desc)


def test_prstatus_notes_in_cpu_order():
    notes = (_note(b"CORE", 1, _prstatus(0, 0xffffffff8101be8e)) + _note(b"CORE", 1, _prstatus(48, 0xffffffff810b1d65))
             + _note(b"VMCOREINFO", 0, b"OSRELEASE=6.1.192-kdump\nBUILD-ID=ab\n"))
    dump = vmcore.DumpFile(None, 0, "elf", True)
    vmcore.parse_notes(notes, dump)
    assert [(p.pid, hex(p.pc)) for p in dump.prstatus] == [(0, "0xffffffff8101be8e"), (48, "0xffffffff810b1d65")]
    assert dump.vmcoreinfo["OSRELEASE"] == "6.1.192-kdump"


def _want(trigger="sysrq", pinned=1):
    return crashtest.Expected("n", "6.1.192-kdump", "ab", None, "makedumpfile", 1 << 30,
                              policy().trigger[trigger], 2, pinned)


def _dump(*pids):
    d = vmcore.DumpFile(None, 0, "kdump-compressed", True)
    d.prstatus = [vmcore.Prstatus(p, 0, 0) for p in pids]
    return d


IDLE = CpuState(0, "swapper/0", 0, ["amd_e400_idle", "do_idle"],
                ["crash_save_cpu", "crash_nmi_callback", "default_do_nmi", "exc_nmi", "asm_exc_nmi"])
SH = CpuState(1, "sh", 48, ["panic", "sysrq_handle_crash"])


def failing(survey, dump, want):
    return sorted(c.name for c in crashtest.cpu_checks(survey, dump, want) if not c.ok)


def test_cpu_verdict_from_the_dump():
    assert failing(CpuSurvey(1, [0, 1], [IDLE, SH]), _dump(0, 48), _want()) == []
    # CPU 0 was not stopped by kdump's NMI: no crash_nmi_callback on its NMI stack
    running = CpuState(0, "swapper/0", 0, ["amd_e400_idle"], ["exc_page_fault"])
    assert failing(CpuSurvey(1, [0, 1], [running, SH]), _dump(0, 48), _want()) == ["cpus-stopped"]
    # a CPU saved no registers
    assert failing(CpuSurvey(1, [0, 1], [IDLE, SH]), _dump(48), _want()) == ["cpu-registers"]
    # only one CPU came up (no ACPI): nothing to stop, and not the CPU count asked for
    assert failing(CpuSurvey(0, [0], [CpuState(0, "sh", 48)]), _dump(48), _want()) == \
        ["cpu-registers", "cpus-stopped", "crashed-cpu"]
    # the NMI is not pinned: any CPU may take the panic
    assert failing(CpuSurvey(0, [0, 1], [CpuState(0, "swapper/0", 0), CpuState(1, "swapper/1", 0, [], IDLE.nmi_stack)]),
                   _dump(0, 0), _want("nmi", None)) == []


def test_crashed_on_the_boot_cpu_is_its_own_failure():
    bad = failing(CpuSurvey(0, [0, 1], [CpuState(0, "sh", 48), CpuState(1, "swapper/1", 0, [], IDLE.nmi_stack)]),
                  _dump(48, 0), _want())
    assert bad == ["crashed-cpu"]


SYS = """      KERNEL: vmlinux
        CPUS: 2
     RELEASE: 6.1.192-kdump
       PANIC: "Kernel panic - not syncing: NMI: Not continuing"
"""
BT = """PID: 57       TASK: ffff8880021c2d00  CPU: 0    COMMAND: "exe"
 #0 [fffffe000000dd28] machine_kexec at ffffffff81031e7b
 #2 [fffffe000000de28] panic at ffffffff812ff039
 #3 [fffffe000000dea8] default_do_nmi at ffffffff81316977
"""
BT_A = BT + """
PID: 0        TASK: ffff888002101680  CPU: 1    COMMAND: "swapper/1"
 #0 [fffffe0000048ea0] crash_nmi_callback at ffffffff81029d23
 #1 [fffffe0000048ea8] default_do_nmi at ffffffff813167e2
"""


def test_crash_output_is_judged_per_command():
    want = crashtool.CrashExpect("6.1.192-kdump", 2, None, "NMI: Not continuing", "default_do_nmi",
                                 "crash_nmi_callback", "abc")
    out = {"sys": SYS, "bt": BT, "bt-a": BT_A, "log": "[    1.3] crash-test nonce abc\n"}
    assert [c.name for c in crashtool.judge(out, want) if not c.ok] == []
    assert [c.name for c in crashtool.judge({**out, "sys": SYS.replace("CPUS: 2", "CPUS: 1")}, want)
            if not c.ok] == ["crash-sys"]
    unstopped = BT_A.replace("crash_nmi_callback", "amd_e400_idle")
    bad = [c for c in crashtool.judge({**out, "bt-a": unstopped}, want) if not c.ok]
    assert [c.name for c in bad] == ["crash-bt-a"] and "not in crash_nmi_callback: CPU 1" in bad[0].actual
    pinned = crashtool.CrashExpect(*{**want.__dict__, "crashed_cpu": 1}.values())
    assert [c.name for c in crashtool.judge(out, pinned) if not c.ok] == ["crash-bt", "crash-bt-a"]
    assert [c.name for c in crashtool.judge({**out, "log": ""}, want) if not c.ok] == ["crash-log"]


def test_crash_too_old_for_the_kernel_is_a_named_reason():
    table = dict(policy().crash_tool.newest_kernel)
    assert crashtool.predates("8.0.2", "6.1.192-kdump", table) == ""
    why = crashtool.predates("8.0.2", "6.12.117-kdump", table)
    assert why.startswith("crash 8.0.2 predates Linux 6.12 (it reads kernels up to 6.1")
    assert crashtool.predates("9.9.9", "6.12.117-kdump", table) == ""   # unknown versions are run and judged


def _run(trigger, failure=None, tool=None):
    r = CrashReport("6.12.117-kdump", "ab", "n", "tcg", "why", {}, "p", "c", {}, trigger=trigger, cpus=2,
                    timings={"boot_to_verified": 5.0}, failure=failure)
    r.crash_tool = tool or {}
    return r


def test_matrix_junit_has_a_case_per_trigger_and_a_named_crash_skip():
    skip = {"status": "skip", "reason": "crash 8.0.2 predates Linux 6.12", "seconds": 1.0}
    m = MatrixReport("6.12.117-kdump", "ab", 2, ["sysrq", "nmi", "bug"],
                     [_run("sysrq", tool=skip), _run("nmi", Failure("verify", "verification failed: x"))])
    suite = ET.fromstring(m.to_junit())
    cases = {(c.get("classname"), c.get("name")): c for c in suite.iter("testcase")}
    assert cases[("crash-test.crash-tool", "sysrq")].find("skipped").get("message") == skip["reason"]
    assert cases[("crash-test.trigger", "nmi")].find("failure") is not None
    assert cases[("crash-test.trigger", "bug")].find("skipped") is not None   # never reached
    assert suite.get("tests") == "5" and suite.get("failures") == "1"
    d = m.to_dict()
    assert d["verdict"] == "fail" and d["summary"]["sysrq"]["crash_tool"] == "skip"
    assert not m.ok and [r.trigger for r in m.failed] == ["nmi"]
    assert str(crashtest.CrashTestFailed(m, "")) == "crash-test nmi failed in phase verify: verification failed: x"


def console(*texts):
    return [qemu.ConsoleLine(i * 0.5, t) for i, t in enumerate(texts)]


LOADED = ["Linux version 6.1.192-kdump #1", "KDUMPTEST: production init uptime=0.7", "KDUMPTEST: kexec-load start",
          "KDUMPTEST: kexec-load rc=0 loaded=1", "KDUMPTEST: cpus online=2"]


def test_the_host_fires_the_nmi_when_the_guest_asks():
    fired = []
    watch = ConsoleWatch(1, lambda what: fired.append(what) or "inject-nmi")
    for line in console(*LOADED, "KDUMPTEST: crashing trigger=nmi cpu=any host=nmi"):
        watch(line)
    assert fired == ["nmi"] and watch.fired == "inject-nmi" and watch.online == 2

    def broken(what):
        raise OSError("Connection refused")
    watch = ConsoleWatch(1, broken)
    lines = console(*LOADED, "KDUMPTEST: crashing trigger=nmi cpu=any host=nmi")
    for line in lines:
        watch(line)
    vm = qemu.VmRun(lines, 0, False, True, 3.0)
    f = diagnose(watch, vm, RunFacts("256M", 300, "makedumpfile", "reboot", 1, 1))
    assert f.phase == "crash" and f.message == "the host could not fire the nmi trigger: Connection refused"


def test_a_trigger_that_does_not_crash_says_so():
    lines = console(*LOADED, "KDUMPTEST: crashing trigger=warning cpu=1", "WARNING: CPU: 1 PID: 50 at lkdtm_WARNING",
                    "KDUMPTEST: FAIL the trigger did not crash the kernel (warning, 5s after it fired)")
    watch = ConsoleWatch(1)
    for line in lines:
        watch(line)
    f = diagnose(watch, qemu.VmRun(lines, 0, False, True, 4.0), RunFacts("256M", 300, "m", "reboot", 1, 1))
    assert f.phase == "crash" and "the trigger did not crash the kernel (warning" in f.message


def test_check_lines_say_expected_and_actual():
    assert Check("crashed-cpu", False, "panic_cpu = CPU 1", "CPU 0").line() == \
        "crashed-cpu: expected panic_cpu = CPU 1, got CPU 0"
