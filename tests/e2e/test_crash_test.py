"""The product's proof: `invoke build-kernel package crash-test --trigger all` on the default tree and profile.

The build is the persistent, ccache-backed one (a rerun compiles nothing), so the cost here
is the VM runs: about 5-10 s each under TCG with 2 vCPUs, plus `crash` per dump. Negative
runs test a copy of the manifest in a temporary folder, so they never replace the
pipeline's published crash-test report. No timing is asserted: bench/crash_test measures speed.
"""
import hashlib
import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from kbuild.crashtest import stage as crashtest
from kbuild.crashtest.report import PHASES
from kbuild.crashtest.settings import parse_triggers, policy

REPO = Path(__file__).resolve().parent.parent.parent
INVOKE = [sys.executable, "-m", "invoke"]
TRIGGERS = [t.name for t in parse_triggers("all")]
CHECKS = ["vmcore-saved", "vmcore-format", "vmcore-complete", "dmesg-signature", "dmesg-nonce", "osrelease",
          "build-id", "debug-vmlinux-opens", "crash-stack", "crashed-cpu", "cpu-registers", "cpus-stopped",
          "crash-sys", "crash-bt", "crash-bt-a", "crash-log"]


def invoke(*args):
    return subprocess.run([*INVOKE, *args], cwd=REPO, capture_output=True, text=True, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def pipeline():
    proc = invoke("build-kernel", "package", "crash-test", "--trigger", "all")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("manifest: "))
    manifest = Path(line.split(": ", 1)[1])
    report = json.loads((manifest.parent / "crash-test" / "report.json").read_text())
    return proc, manifest, report


def runs(report) -> dict[str, dict]:
    return {r["trigger"]: r for r in report["runs"]}


def manifest_copy(tmp_path: Path, manifest: Path, config: Path | None = None) -> Path:
    """The manifest in a folder of its own (the crash test writes next to it), optionally with another .config."""
    data = json.loads(manifest.read_text())
    if config is not None:
        sha = hashlib.sha256(config.read_bytes()).hexdigest()
        data["config"] = {"path": str(config), "sha256": sha}
        for a in data["artifacts"]:
            if a["name"] == "config":
                a.update(path=str(config), sha256=sha, size=config.stat().st_size)
    dest = tmp_path / data["release"]["release"] / "manifest.json"
    dest.parent.mkdir(parents=True)
    dest.write_text(json.dumps(data))
    return dest


def one_error_line(proc) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def test_every_trigger_passes_every_check(pipeline):
    proc, manifest, report = pipeline
    assert report["verdict"] == "pass" and report["triggers"] == TRIGGERS and report["cpus"] == 2
    assert report["release"] == json.loads(manifest.read_text())["release"]["release"]
    for name, run in runs(report).items():
        assert [c["name"] for c in run["checks"]] == CHECKS, name
        assert all(c["ok"] for c in run["checks"]), (name, [c for c in run["checks"] if not c["ok"]])
        assert f"PASS {name:<10} {report['release']}" in proc.stdout
        assert policy().trigger[name].stack in run["crashed_task"]["stack"], name


@pytest.mark.parametrize("name", TRIGGERS)
def test_crash_is_on_the_pinned_cpu_and_the_others_are_stopped(pipeline, name):
    run = runs(pipeline[2])[name]
    trigger = policy().trigger[name]
    assert run["cpus"] == 2
    if trigger.pinned:
        assert run["pinned_cpu"] == 1 and run["crashed_cpu"] == 1   # not the boot CPU
    else:
        assert run["pinned_cpu"] is None and run["crashed_cpu"] in (0, 1)
    others = [c for c in run["cpu_stops"] if c["cpu"] != run["crashed_cpu"]]
    assert len(run["cpu_stops"]) == 2 and len(others) == 1
    assert "crash_nmi_callback" in others[0]["nmi_stack"] and others[0]["stack"]
    dmesg = (Path(run["vmcore"]["path"]).parent / "dmesg.txt").read_text()
    for line in trigger.lines(run["pinned_cpu"]):
        assert line in dmesg


def test_crash_opens_every_dump(pipeline):
    """Debian's crash 8.0.2 reads 6.1: sys, bt, bt -a and log, judged per trigger."""
    for name, run in runs(pipeline[2]).items():
        tool = run["crash_tool"]
        assert tool["status"] == "pass", (name, tool["reason"])
        sys_txt = Path(tool["files"]["sys"]).read_text()
        assert "CPUS: 2" in sys_txt and f"RELEASE: {run['release']}" in sys_txt and "PANIC:" in sys_txt
        assert Path(tool["files"]["bt-a"]).read_text().count("PID: ") == 2
        assert f"crash-test nonce {run['nonce']}" in Path(tool["files"]["log"]).read_text()


def test_nmi_panic_text_is_only_in_the_dump(pipeline):
    """Printing from NMI context is deferred: the console never shows it, the dump does."""
    run = runs(pipeline[2])["nmi"]
    out = Path(run["vmcore"]["path"]).parent
    assert "NMI: Not continuing" not in (out / "serial-production.log").read_text()
    assert "Kernel panic - not syncing: NMI: Not continuing" in (out / "dmesg.txt").read_text()


def test_vmcore_is_published_as_reported(pipeline):
    _, manifest, report = pipeline
    run = runs(report)["sysrq"]
    vmcore = manifest.parent / "crash-test" / "sysrq" / "vmcore"
    assert run["vmcore"]["path"] == str(vmcore) and vmcore.stat().st_size == run["vmcore"]["size"]
    assert vmcore.read_bytes()[:8] == b"KDUMP   " and run["vmcore"]["format"] == "kdump-compressed"
    assert run["vmcore"]["ram_share"] == pytest.approx(run["vmcore"]["size"] / run["vmcore"]["ram_bytes"], abs=1e-5)


def test_logs_and_junit_tell_the_story(pipeline):
    _, manifest, report = pipeline
    out = manifest.parent / "crash-test"
    run = runs(report)["sysrq"]
    production = (out / "sysrq" / "serial-production.log").read_text()
    capture = (out / "sysrq" / "serial-capture.log").read_text()
    assert "smpboot: Allowing 2 CPUs" in production and "KDUMPTEST: cpus online=2" in production
    assert "KDUMPTEST: kexec-load rc=0 loaded=1" in production and "sysrq: Trigger a crash" in production
    assert "-smp 2" in (out / "sysrq" / "console.log").read_text().splitlines()[0]
    assert f"crashtest.nonce={run['nonce']}" in capture and "KDUMPTEST: dump complete" in capture
    assert set(PHASES) <= set(run["timings"]) and run["timings"]["boot_to_verified"] > 0
    suite = ET.parse(out / "junit.xml").getroot()
    assert suite.get("failures") == "0" and suite.get("skipped") == "0"
    assert sorted(c.get("name") for c in suite.iter("testcase") if c.get("classname") == "crash-test.trigger") \
        == sorted(TRIGGERS)
    assert not list(manifest.parent.glob(".crash-test.*"))  # no staging folder left behind


def test_the_verdict_cannot_be_fooled(pipeline, tmp_path):
    """The same real vmcore fails when it is not this run's, release's, vmlinux's, trigger's or CPU's."""
    _, manifest, report = pipeline
    run = runs(report)["sysrq"]
    vmcore = Path(run["vmcore"]["path"])
    vmlinux = Path(next(a["path"] for a in json.loads(manifest.read_text())["artifacts"] if a["name"] == "vmlinux"))
    want = crashtest.Expected(run["nonce"], run["release"], run["build_id"], vmlinux,
                              run["settings"]["kdump"]["core_collector"], run["vmcore"]["ram_bytes"],
                              policy().trigger["sysrq"], 2, 1)

    def failing(**changes):
        checks, _, _, _ = crashtest.check_vmcore(vmcore, crashtest.Expected(**{**want.__dict__, **changes}), tmp_path)
        return sorted(c.name for c in checks if not c.ok)

    assert failing() == []
    assert failing(nonce="0" * 32) == ["dmesg-nonce"]
    assert failing(release="6.1.0-other") == ["debug-vmlinux-opens", "osrelease"]
    assert failing(core_collector="makedumpfile -E -d 31") == ["vmcore-format"]
    assert failing(trigger=policy().trigger["bug"]) == ["crash-stack", "dmesg-signature"]
    assert failing(pinned_cpu=0) == ["crashed-cpu"]
    assert failing(cpus=4) == ["cpu-registers", "cpus-stopped"]
    other = tmp_path / "vmlinux"  # same DWARF, different build-id: crash and drgn must refuse it
    data = bytearray(vmlinux.read_bytes())
    at = data.find(bytes.fromhex(run["build_id"]))
    data[at:at + 20] = bytes(20)
    other.write_bytes(data)
    assert failing(vmlinux=other) == ["build-id", "debug-vmlinux-opens"]


def test_too_small_crashkernel_names_the_reservation(pipeline, tmp_path):
    _, manifest, _ = pipeline
    proc = invoke("crash-test", "--manifest", str(manifest_copy(tmp_path, manifest)), "--crashkernel", "8M")
    assert proc.returncode == 1
    error = one_error_line(proc)
    assert "failed in phase kexec_load: the capture kernel was not loaded: kexec said: kexec_file_load failed" in error
    assert "the crashkernel=8M reservation is likely too small" in error
    assert "last serial lines:" in proc.stdout and "KDUMPTEST: kexec-load rc=" in proc.stdout


def test_capture_kernel_short_of_memory_says_raise_crashkernel(pipeline, tmp_path):
    _, manifest, _ = pipeline
    copy = manifest_copy(tmp_path, manifest)
    proc = invoke("crash-test", "--manifest", str(copy), "--crashkernel", "24M")
    assert proc.returncode == 1
    error = one_error_line(proc)
    assert "failed in phase capture_boot: no dump: the capture kernel ran out of memory or hung" in error
    assert error.endswith("raise crashkernel (now 24M)")
    report = runs(json.loads((copy.parent / "crash-test" / "report.json").read_text()))["sysrq"]
    assert report["verdict"] == "fail" and report["failure"]["phase"] == "capture_boot"
    assert not (copy.parent / "crash-test" / "sysrq" / "vmcore").exists()


def test_kernel_without_crash_dump_is_refused_before_booting(pipeline, tmp_path):
    _, manifest, _ = pipeline
    data = json.loads(manifest.read_text())
    config = tmp_path / "config-no-crash-dump"
    text = Path(data["config"]["path"]).read_text()
    assert "CONFIG_CRASH_DUMP=y\n" in text
    config.write_text(text.replace("CONFIG_CRASH_DUMP=y\n", "# CONFIG_CRASH_DUMP is not set\n"))
    copy = manifest_copy(tmp_path, manifest, config)
    proc = invoke("crash-test", "--manifest", str(copy))
    assert proc.returncode == 1
    error = one_error_line(proc)
    assert "refusing to boot" in error and "crash-dump: needs CONFIG_CRASH_DUMP=y" in error
    assert not (copy.parent / "crash-test").exists() and not list(copy.parent.glob(".crash-test.*"))


def kdump_with(tmp_path, collector: str) -> Path:
    kdump = tmp_path / "kdump.toml"
    kdump.write_text("\n".join(f'core_collector = "{collector}"' if ln.startswith("core_collector") else ln
                               for ln in (REPO / "configs" / "kdump.toml").read_text().splitlines()))
    return kdump


def test_a_collector_makedumpfile_would_refuse_is_refused_before_booting(pipeline, tmp_path):
    _, manifest, _ = pipeline
    proc = invoke("crash-test", "--manifest", str(manifest_copy(tmp_path, manifest)),
                  "--kdump-config", str(kdump_with(tmp_path, "makedumpfile -c -d 99")))
    assert proc.returncode == 2 and "dump level -d 99 is outside 0-31" in one_error_line(proc)


def test_failing_collector_is_a_clear_failure(pipeline, tmp_path):
    _, manifest, _ = pipeline
    kdump = tmp_path / "kdump.toml"
    # valid options, but the file -x names is not in the capture initramfs: makedumpfile exits 1
    collector = "makedumpfile -c --message-level 1 -d 31 -x /no/such/vmlinux"
    kdump.write_text("\n".join(f'core_collector = "{collector}"' if ln.startswith("core_collector") else ln
                               for ln in (REPO / "configs" / "kdump.toml").read_text().splitlines()))
    copy = manifest_copy(tmp_path, manifest)
    proc = invoke("crash-test", "--manifest", str(copy), "--kdump-config", str(kdump))
    assert proc.returncode == 1
    error = one_error_line(proc)
    assert f"failed in phase dump: the collector failed: `{collector}` exited 1; failure_action reboot ran" in error
    console = (copy.parent / "crash-test" / "sysrq" / "serial-capture.log").read_text()
    assert "KDUMPTEST: FAIL collector exited 1; failure_action=reboot" in console


def test_classic_kexec_also_yields_a_verified_dump(pipeline, tmp_path):
    """`--kexec classic` (kexec_load, `kexec -c -p`) reads /proc/kcore: the minimal profile has it."""
    _, manifest, _ = pipeline
    copy = manifest_copy(tmp_path, manifest)
    proc = invoke("crash-test", "--manifest", str(copy), "--kexec", "classic")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    report = runs(json.loads((copy.parent / "crash-test" / "report.json").read_text()))["sysrq"]
    assert report["verdict"] == "pass" and report["settings"]["kexec"] == "classic"
    assert all(c["ok"] for c in report["checks"])


def test_lkdtm_trigger_on_a_kernel_without_lkdtm_is_refused_before_booting(pipeline, tmp_path):
    _, manifest, _ = pipeline
    data = json.loads(manifest.read_text())
    config = tmp_path / "config-no-lkdtm"
    text = Path(data["config"]["path"]).read_text()
    assert "CONFIG_LKDTM=m\n" in text
    config.write_text(text.replace("CONFIG_LKDTM=m\n", "# CONFIG_LKDTM is not set\n"))
    copy = manifest_copy(tmp_path, manifest, config)
    proc = invoke("crash-test", "--manifest", str(copy), "--trigger", "sysrq,bug")
    assert proc.returncode == 1
    error = one_error_line(proc)
    assert "refusing to boot" in error and "--trigger bug: needs CONFIG_LKDTM=y or =m" in error
    assert "sysrq" not in error.split("cannot run", 1)[1]     # sysrq itself needs no LKDTM
    assert not (copy.parent / "crash-test").exists() and not list(copy.parent.glob(".crash-test.*"))


def test_a_trigger_that_does_not_crash_fails_clearly(pipeline, tmp_path):
    """LKDTM's WARNING only warns (no panic_on_warn): the guest says so, the test fails with exit 1."""
    _, manifest, _ = pipeline
    copy = manifest_copy(tmp_path, manifest)
    proc = invoke("crash-test", "--manifest", str(copy), "--trigger", "warning")
    assert proc.returncode == 1
    error = one_error_line(proc)
    assert "crash-test warning failed in phase crash: the guest reported: the trigger did not crash the kernel" \
        in error
    report = runs(json.loads((copy.parent / "crash-test" / "report.json").read_text()))["warning"]
    assert report["failure"]["phase"] == "crash" and report["crash_tool"] == {}
    assert "WARNING: CPU: 1 PID:" in (copy.parent / "crash-test" / "warning" / "serial-production.log").read_text()


@pytest.fixture(autouse=True)
def _tidy(tmp_path):
    yield
    shutil.rmtree(tmp_path, ignore_errors=True)  # negative runs leave a 1.3 GB sparse disk only with --keep
