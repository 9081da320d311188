"""The product's proof: `invoke build-kernel package crash-test` on the default tree and profile.

The build is the persistent, ccache-backed one (a rerun compiles nothing), so the cost here
is the VM runs: about 10 s each under TCG. Negative runs test a copy of the manifest in a
temporary folder, so they never replace the pipeline's published crash-test report.
No timing is asserted: bench/crash_test measures speed.
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

REPO = Path(__file__).resolve().parent.parent.parent
INVOKE = [sys.executable, "-m", "invoke"]
CHECKS = ["vmcore-saved", "vmcore-format", "vmcore-complete", "dmesg-sysrq", "dmesg-nonce", "osrelease",
          "build-id", "debug-vmlinux-opens", "crash-stack"]


def invoke(*args):
    return subprocess.run([*INVOKE, *args], cwd=REPO, capture_output=True, text=True, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def pipeline():
    proc = invoke("build-kernel", "package", "crash-test")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("manifest: "))
    manifest = Path(line.split(": ", 1)[1])
    report = json.loads((manifest.parent / "crash-test" / "report.json").read_text())
    return proc, manifest, report


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


def test_pipeline_passes_every_check(pipeline):
    proc, manifest, report = pipeline
    assert report["verdict"] == "pass" and report["failure"] is None
    assert [c["name"] for c in report["checks"]] == CHECKS
    assert all(c["ok"] for c in report["checks"]), report["checks"]
    assert report["release"] == json.loads(manifest.read_text())["release"]["release"]
    assert f"PASS {report['release']}" in proc.stdout
    assert "sysrq_handle_crash" in report["crashed_task"]["stack"]


def test_vmcore_is_published_as_reported(pipeline):
    _, manifest, report = pipeline
    vmcore = manifest.parent / "crash-test" / "vmcore"
    assert report["vmcore"]["path"] == str(vmcore) and vmcore.stat().st_size == report["vmcore"]["size"]
    assert vmcore.read_bytes()[:8] == b"KDUMP   " and report["vmcore"]["format"] == "kdump-compressed"
    assert report["vmcore"]["ram_share"] == pytest.approx(report["vmcore"]["size"] / report["vmcore"]["ram_bytes"],
                                                          abs=1e-5)


def test_logs_and_junit_tell_the_story(pipeline):
    _, manifest, report = pipeline
    out = manifest.parent / "crash-test"
    production = (out / "serial-production.log").read_text()
    capture = (out / "serial-capture.log").read_text()
    assert "KDUMPTEST: kexec-load rc=0 loaded=1" in production and "sysrq: Trigger a crash" in production
    assert f"crashtest.nonce={report['nonce']}" in capture and "KDUMPTEST: dump complete" in capture
    assert f"crash-test nonce {report['nonce']}" in (out / "dmesg.txt").read_text()
    assert set(PHASES) <= set(report["timings"]) and report["timings"]["boot_to_verified"] > 0
    suite = ET.parse(out / "junit.xml").getroot()
    assert suite.get("failures") == "0" and int(suite.get("tests")) == len(PHASES) + len(CHECKS)
    assert not list(manifest.parent.glob(".crash-test.*"))  # no staging folder left behind


def test_the_verdict_cannot_be_fooled(pipeline, tmp_path):
    """The same real vmcore fails when it is not this run's, not this release's, or not this vmlinux's."""
    _, manifest, report = pipeline
    vmcore = manifest.parent / "crash-test" / "vmcore"
    vmlinux = Path(next(a["path"] for a in json.loads(manifest.read_text())["artifacts"] if a["name"] == "vmlinux"))
    want = crashtest.Expected(report["nonce"], report["release"], report["build_id"], vmlinux,
                              report["settings"]["kdump"]["core_collector"], report["vmcore"]["ram_bytes"])

    def failing(**changes):
        checks, _, _ = crashtest.check_vmcore(vmcore, crashtest.Expected(**{**want.__dict__, **changes}), tmp_path)
        return sorted(c.name for c in checks if not c.ok)

    assert failing() == []
    assert failing(nonce="0" * 32) == ["dmesg-nonce"]
    assert failing(release="6.1.0-other") == ["debug-vmlinux-opens", "osrelease"]
    assert failing(core_collector="makedumpfile -E -d 31") == ["vmcore-format"]
    other = tmp_path / "vmlinux"  # same DWARF, different build-id: crash and drgn must refuse it
    data = bytearray(vmlinux.read_bytes())
    at = data.find(bytes.fromhex(report["build_id"]))
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
    report = json.loads((copy.parent / "crash-test" / "report.json").read_text())
    assert report["verdict"] == "fail" and report["failure"]["phase"] == "capture_boot"
    assert not (copy.parent / "crash-test" / "vmcore").exists()


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
    console = (copy.parent / "crash-test" / "serial-capture.log").read_text()
    assert "KDUMPTEST: FAIL collector exited 1; failure_action=reboot" in console


def test_classic_kexec_also_yields_a_verified_dump(pipeline, tmp_path):
    """`--kexec classic` (kexec_load, `kexec -c -p`) reads /proc/kcore: the minimal profile has it."""
    _, manifest, _ = pipeline
    copy = manifest_copy(tmp_path, manifest)
    proc = invoke("crash-test", "--manifest", str(copy), "--kexec", "classic")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    report = json.loads((copy.parent / "crash-test" / "report.json").read_text())
    assert report["verdict"] == "pass" and report["settings"]["kexec"] == "classic"
    assert all(c["ok"] for c in report["checks"])


@pytest.fixture(autouse=True)
def _tidy(tmp_path):
    yield
    shutil.rmtree(tmp_path, ignore_errors=True)  # negative runs leave a 1.3 GB sparse disk only with --keep
