"""The installed-system proof: the server-profile kernel's .deb set and Debian's own kdump-tools in a
booted Debian 12 VM (`invoke install-test`), on Debian's 6.1 tree.

The server build is persistent (build/linux-6.1.192-server, ccache), the Debian root and
kdump-tools' kdump initrd are cached under ~/.cache/kdump-pipeline/install-test/, so a rerun
costs the VM runs: about 90 s each under TCG. The negative run tests a copy of dist/<release>/
in a temporary folder, so it never replaces the published report. No timing is asserted:
bench/install_test measures speed.
"""
import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
INVOKE = [sys.executable, "-m", "invoke"]
LOCALVERSION = "server.kdump"
TOO_SMALL = "40M"     # the server kernel's capture boot runs out of memory at 0.5 s (56M works)
CHECKS = ["kdump-settings", "kdump-hook-called", "crashkernel-from-dropin", "dump-saved", "makedump-args",
          "dump-format", "dump-rebuilt", "dmesg-nonce", "dmesg-sysrq", "kdump-dmesg", "osrelease", "build-id",
          "drgn-opens", "drgn-stack", "crash-bt", "purge-leaves-nothing", "purge-restores-kdump-tools"]


def invoke(*args, env=None):
    return subprocess.run([*INVOKE, *args], cwd=REPO, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          env=env)


@pytest.fixture(scope="module")
def server():
    """The server profile built and packaged (DEB), with `invoke` as a user runs it."""
    proc = invoke("build-kernel", "--profile", "server", "--localversion", LOCALVERSION)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    manifest = Path(next(ln for ln in proc.stdout.splitlines() if ln.startswith("manifest: ")).split(": ", 1)[1])
    data = json.loads(manifest.read_text())
    proc = invoke("package", "--formats", "deb", "--build-dir", data["build"]["dir"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return manifest, data["release"]["release"]


@pytest.fixture(scope="module")
def passed(server):
    manifest, release = server
    proc = invoke("install-test", "--release", release)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
    return proc, manifest.parent / "install-test", json.loads((manifest.parent / "install-test/report.json").read_text())


def test_kdump_tools_saves_a_dump_we_verify(passed, server):
    proc, folder, report = passed
    assert report["verdict"] == "pass" and report["outcome"] == "dump saved" and report["failure"] is None
    assert [c["name"] for c in report["checks"]] == CHECKS
    assert all(c["ok"] for c in report["checks"]), [c for c in report["checks"] if not c["ok"]]
    assert report["skipped"] == {}
    assert report["release"] == server[1] and f"PASS {server[1]}" in proc.stdout
    assert "sysrq_handle_crash" in report["crashed_task"]["stack"]


def test_the_command_line_is_grubs_and_the_capture_line_is_kdump_tools(passed):
    _, _, report = passed
    assert report["cmdline"].startswith(f"BOOT_IMAGE=/boot/vmlinuz-{report['release']} root=UUID=")
    assert report["cmdline"].split().count(f"crashkernel={report['crashkernel']}") == 1
    kexec = report["capture_cmdline"]
    assert kexec.startswith("/sbin/kexec -p") and "crashkernel=" not in kexec
    assert "panic=10" in kexec and "systemd.unit=kdump-tools-dump.service" in kexec


def test_report_files_and_junit(passed):
    _, folder, report = passed
    for name in ("serial_log", "dump", "vmcore", "kdump_dmesg", "crash_bt", "report.json", "junit.xml"):
        assert Path(report["files"][name]).is_file() and Path(report["files"][name]).parent in (folder, folder / "dump")
    assert not (folder / "work").exists(), "the disk image is only kept with --keep"
    assert Path(report["files"]["dump"]).read_bytes()[:13] == b"makedumpfile\0"
    suite = ET.parse(folder / "junit.xml").getroot()
    assert suite.get("failures") == "0" and int(suite.get("tests")) == 9 + len(CHECKS)
    for phase in ("rootfs", "install", "first_boot", "kdump_ready", "crash", "capture", "second_boot", "verify",
                  "purge"):
        assert report["timings"][phase] >= 0
    assert report["kdump_initrd"]["reused"] or report["kdump_initrd"]["saved"]


def test_a_too_small_reservation_reboots_instead_of_hanging(server, tmp_path):
    """panic= on the capture command line: the capture kernel runs out of memory, reboots after
    10 s, and the second boot reports that no dump was saved."""
    manifest, release = server
    copy = tmp_path / release
    copy.mkdir()
    for f in [manifest, *manifest.parent.glob("*.deb")]:
        shutil.copyfile(f, copy / f.name)
    env = {**os.environ, "KBUILD_DIST_DIR": str(tmp_path)}
    proc = invoke("install-test", "--release", release, "--crashkernel", TOO_SMALL, env=env)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    report = json.loads((copy / "install-test/report.json").read_text())
    assert report["outcome"] == "capture failed, machine rebooted"
    assert report["failure"]["phase"] == "capture" and "capture failed, machine rebooted" in report["failure"]["message"]
    assert report["crashkernel"] == TOO_SMALL and f"crashkernel={TOO_SMALL}" in report["cmdline"]
    assert "second_boot" in report["events"] and "capture_reboot" in report["events"]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: install-test failed in phase capture")


def test_without_panic_the_failed_capture_hangs(server, tmp_path):
    """The contrast: the same too-small reservation with a config package whose capture line has no
    panic= (kdump-tools' stock behaviour) hangs after the capture kernel's panic."""
    manifest, release = server
    (tmp_path / release).mkdir()
    shutil.copyfile(manifest, tmp_path / release / manifest.name)
    settings = tmp_path / "kdump-no-panic.toml"
    stock = (REPO / "configs/kdump.toml").read_text()
    assert " panic=10" in stock
    settings.write_text(stock.replace(" panic=10", ""))
    env = {**os.environ, "KBUILD_DIST_DIR": str(tmp_path)}
    proc = invoke("package", "--formats", "deb", "--kdump-config", str(settings), env=env)
    assert proc.returncode == 0 and "panic=" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]
    proc = invoke("install-test", "--release", release, "--crashkernel", TOO_SMALL, env=env)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    report = json.loads((tmp_path / release / "install-test/report.json").read_text())
    assert report["outcome"] == "capture failed, machine hung"
    assert report["failure"]["phase"] == "capture" and "needs panic=" in report["failure"]["message"]
    assert "panic=" not in report["capture_cmdline"] and "second_boot" not in report["events"]
    assert next(c for c in report["checks"] if c["name"] == "kdump-settings")["ok"]   # what that package ships


def test_the_minimal_kernel_is_refused_before_any_work(default_build):
    proc = invoke("install-test", "--release", default_build.release.release)
    assert proc.returncode == 1
    assert "refusing to boot Debian" in proc.stderr and "--profile server" in proc.stderr


@pytest.fixture(scope="module")
def two_builds(passed):
    """Build numbers 1 and 2 of the server profile, packaged (after the main run: same build folder)."""
    releases = []
    for n in ("1", "2"):
        proc = invoke("build-kernel", "--profile", "server", "--localversion", LOCALVERSION, "--build-number", n)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        data = json.loads(Path(next(ln for ln in proc.stdout.splitlines()
                                    if ln.startswith("manifest: ")).split(": ", 1)[1]).read_text())
        proc = invoke("package", "--formats", "deb", "--build-dir", data["build"]["dir"])
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        releases.append(data["release"]["release"])
    return releases


def test_two_releases_side_by_side(two_builds):
    """Both installed; kdump-tools loads the running one; purging the other in the running guest
    leaves it ready, and it dumps."""
    running, other = two_builds
    proc = invoke("install-test", "--release", running, "--alongside", other)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
    report = json.loads(Path(proc.stdout.rsplit("report: ", 1)[1].strip()).read_text())
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["alongside-loads-running"]["ok"] and checks["alongside-removed"]["ok"]
    assert report["alongside"] == {"release": other, "installed": True}
    assert checks["osrelease"]["actual"] == running and report["verdict"] == "pass"
