"""The arm64 crash test: `invoke crash-test --trigger all` on the arm64 minimal 6.1 build.

The kernel is the session's arm64 build (tests/conftest.py `arm64_build`: cross-built once,
persistent and ccache-backed like x86's); the crash test takes its architecture from the manifest. It boots
qemu-system-aarch64 -M virt under TCG with 2 vCPUs and Debian's arm64 capture programs,
fires sysrq and the LKDTM triggers, and verifies every dump with drgn on this x86_64 host.
`nmi` is a named skip (no NMI on arm64); Debian's x86_64 `crash` cannot read an aarch64 dump,
a named skip that quotes crash. No timing is asserted: bench/crash_test --arch arm64 measures it.
"""
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from kbuild.core import arch
from kbuild.crashtest import vmcore
from kbuild.crashtest.settings import parse_triggers, policy

REPO = Path(__file__).resolve().parent.parent.parent
INVOKE = [sys.executable, "-m", "invoke"]
ARM64 = arch.get("arm64")
TRIGGERS = [t.name for t in parse_triggers("all")]
RUNNABLE = [t for t in TRIGGERS if t not in ARM64.crash.skip]
CHECKS = ["vmcore-saved", "vmcore-format", "vmcore-complete", "dmesg-signature", "dmesg-nonce", "osrelease",
          "build-id", "debug-vmlinux-opens", "crash-stack", "crashed-cpu", "cpu-registers", "cpus-stopped"]


def invoke(*args):
    return subprocess.run([*INVOKE, *args], cwd=REPO, capture_output=True, text=True, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def arm64_pipeline(arm64_build):
    manifest = arm64_build.path
    assert json.loads(manifest.read_text())["toolchain"]["arch"] == "arm64"
    proc = invoke("crash-test", "--manifest", str(manifest), "--trigger", "all")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
    report = json.loads((manifest.parent / "crash-test" / "report.json").read_text())
    return proc, manifest, report


def runs(report) -> dict[str, dict]:
    return {r["trigger"]: r for r in report["runs"]}


def test_sysrq_and_lkdtm_triggers_pass_every_check(arm64_pipeline):
    proc, manifest, report = arm64_pipeline
    assert report["verdict"] == "pass" and report["triggers"] == TRIGGERS and RUNNABLE
    for name in RUNNABLE:
        run = runs(report)[name]
        assert run["verdict"] == "pass", (name, run["failure"])
        assert [c["name"] for c in run["checks"]] == CHECKS, name
        assert all(c["ok"] for c in run["checks"]), (name, [c for c in run["checks"] if not c["ok"]])
        assert policy().trigger[name].for_arch("arm64").stack in run["crashed_task"]["stack"], name
        assert f"PASS {name:<10} {report['release']}" in proc.stdout
        assert run["vmcore"]["machine"] == "aarch64"


def test_the_vm_is_arm64_under_tcg(arm64_pipeline):
    _, manifest, report = arm64_pipeline
    run = runs(report)["sysrq"]
    cmd = run["qemu"]
    assert cmd[0] == "qemu-system-aarch64" and cmd[cmd.index("-machine") + 1] == "virt"
    assert cmd[cmd.index("-cpu") + 1] == ARM64.qemu.cpu and cmd[cmd.index("-smp") + 1] == "2"
    assert run["accel"] == "tcg" and "KVM runs only the host's own architecture" in run["accel_why"]
    assert Path(cmd[cmd.index("-kernel") + 1]).name == "Image"
    assert run["production_cmdline"].startswith("console=ttyAMA0 earlycon crashkernel=")
    assert "busybox-static_" in " ".join(run["tools"]["capture_debs"])
    production = (manifest.parent / "crash-test" / "sysrq" / "serial-production.log").read_text()
    assert "KDUMPTEST: kexec-load rc=0 loaded=1" in production and "KDUMPTEST: cpus online=2" in production


def test_nmi_is_a_named_skip(arm64_pipeline):
    proc, manifest, report = arm64_pipeline
    run = runs(report)["nmi"]
    assert run["verdict"] == "skip" and run["skipped"].startswith("nmi on arm64: ") and not run["checks"]
    assert "inject-nmi" in run["skipped"] and report["summary"]["nmi"]["verdict"] == "skip"
    assert f"SKIP nmi        {report['release']}: nmi on arm64" in proc.stdout
    suite = ET.parse(manifest.parent / "crash-test" / "junit.xml").getroot()
    case = suite.find("testcase[@classname='crash-test.trigger'][@name='nmi']")
    assert "no x86-style NMI" in case.find("skipped").get("message") and suite.get("failures") == "0"


@pytest.mark.parametrize("name", RUNNABLE)
def test_crash_on_the_pinned_cpu_and_the_other_stopped_by_the_crash_ipi(arm64_pipeline, name):
    run = runs(arm64_pipeline[2])[name]
    assert run["pinned_cpu"] == 1 and run["crashed_cpu"] == 1
    others = [c for c in run["cpu_stops"] if c["cpu"] != 1]
    assert len(others) == 1 and ARM64.crash.stop_function in others[0]["nmi_stack"]
    dmesg = (Path(run["vmcore"]["path"]).parent / "dmesg.txt").read_text()
    for line in policy().trigger[name].for_arch("arm64").lines(1):
        assert line in dmesg


def test_prstatus_of_a_real_arm64_dump(arm64_pipeline):
    """One NT_PRSTATUS per CPU, read with arm64's layout: pc and sp are kernel addresses, pids are the tasks'."""
    _, manifest, report = arm64_pipeline
    run = runs(report)["sysrq"]
    dump = vmcore.read_dump(Path(run["vmcore"]["path"]))
    assert dump.machine == "aarch64" and dump.nr_cpus == 2 and len(dump.prstatus) == 2
    text = {}
    system_map = next(a["path"] for a in json.loads(manifest.read_text())["artifacts"] if a["name"] == "System.map")
    for line in Path(system_map).read_text().splitlines():
        addr, _, sym = line.split()
        if sym in ("_text", "_etext"):
            text[sym] = int(addr, 16)
    for p in dump.prstatus:
        assert text["_text"] <= p.pc < text["_etext"], hex(p.pc)
        assert p.sp >> 39 == (1 << 25) - 1, hex(p.sp)   # the kernel half of a 39-bit VA space
    assert dump.prstatus[1].pid == run["crashed_task"]["pid"]


def test_crash_cannot_read_an_arm64_dump_on_this_host(arm64_pipeline):
    """A named skip that quotes Debian's x86_64 crash; never a pass."""
    _, _, report = arm64_pipeline
    for name in RUNNABLE:
        tool = runs(report)[name]["crash_tool"]
        assert tool["status"] == "skip", (name, tool)
        assert "cannot read this aarch64 dump; it says: " in tool["reason"]
