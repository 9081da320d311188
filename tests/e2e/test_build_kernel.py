"""A real build of the default tree (linux-source-6.1) with the minimal profile.

The build folder is the persistent default one (build/linux-<ver>-minimal) and ccache is on,
so a rerun costs seconds; the first run on a new machine takes several minutes.
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kbuild.build import verify
from kbuild.configure.checkconfig import check_config
from kbuild.core.source import locate

REPO = Path(__file__).resolve().parent.parent.parent
INVOKE = [sys.executable, "-m", "invoke"]


def invoke(*args):
    return subprocess.run([*INVOKE, *args], cwd=REPO, capture_output=True, text=True)


@pytest.fixture(scope="module")
def built():
    proc = invoke("build-kernel")
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(l for l in proc.stdout.splitlines() if l.startswith("manifest: "))
    path = Path(line.split(": ", 1)[1])
    return json.loads(path.read_text()), path


def artifact(data, name):
    return Path(next(a["path"] for a in data["artifacts"] if a["name"] == name))


def test_release_matches_everywhere(built):
    data, path = built
    rel = data["release"]["release"]
    tree = locate(None)
    assert rel == f"{tree.version}-kdump" and path.parent.name == rel
    got = subprocess.run(["make", "-s", "-C", str(tree.path), f"O={data['build']['dir']}", "ARCH=x86_64",
                          f"LOCALVERSION={data['release']['localversion']}", "kernelrelease"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert got == rel
    assert verify.bzimage_version(artifact(data, "bzImage")).startswith(rel + " (kbuild@kdump-pipeline) #1 ")
    moddir = Path(data["build"]["dir"]) / "staging" / "lib" / "modules" / rel
    assert (moddir / "modules.dep").exists()
    assert any(a["name"].endswith("loop.ko") for a in data["artifacts"])


def test_vmlinux_has_dwarf_and_the_recorded_build_id(built):
    data, _ = built
    vmlinux = artifact(data, "vmlinux")
    assert verify.check_debug_info(vmlinux)[".debug_info"] > 1 << 20
    assert verify.elf_build_id(vmlinux) == data["build"]["build_id"] and len(data["build"]["build_id"]) == 40


def test_config_still_meets_requirements(built):
    data, _ = built
    assert check_config(Path(data["config"]["path"]), locate(None)).ok


def test_build_paths_do_not_leak_into_vmlinux(built):
    data, _ = built
    out = subprocess.run(["grep", "-c", "-a", "-F", data["build"]["dir"], str(artifact(data, "vmlinux"))],
                         capture_output=True, text=True)
    assert out.stdout.strip() == "0"


def test_manifest_records_inputs_and_artifacts(built):
    data, _ = built
    assert data["status"] == "success" and data["tree"]["tarball_sha256"] and data["profile"]["name"] == "minimal"
    assert data["release"]["deb_version"] and data["release"]["rpm_version"]["version"]
    assert data["config"]["sha256"] and data["ledger"]["ok"] and data["toolchain"]["gcc"]
    assert set(data["timings"]) >= {"configure", "compile", "modules_install", "verify", "total"}
    assert data["reproducer"].startswith("invoke build-kernel --source ")
    for a in data["artifacts"][:4]:
        assert os.path.getsize(a["path"]) == a["size"]


def test_noop_rerun_compiles_nothing(built):
    data, _ = built
    vmlinux = artifact(data, "vmlinux")
    mtime = vmlinux.stat().st_mtime_ns
    t = time.monotonic()
    proc = invoke("build-kernel")
    assert proc.returncode == 0, proc.stderr
    assert "up to date" in proc.stdout
    assert time.monotonic() - t < 60  # generous; bench/build measures the real figure
    assert vmlinux.stat().st_mtime_ns == mtime


def test_unsafe_release_is_refused_before_compiling(tmp_path):
    proc = invoke("build-kernel", "--localversion", "kdumpxen", "--build-dir", str(tmp_path / "b"))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "xen" in proc.stderr and not (tmp_path / "b").exists()


def test_bad_localversion_is_exit_2(tmp_path):
    proc = invoke("build-kernel", "--localversion", "$(reboot)", "--build-dir", str(tmp_path / "b"))
    assert proc.returncode == 2 and proc.stderr.startswith("error: localversion '$(reboot)'")
    assert not (tmp_path / "b").exists()


def test_ctrl_c_leaves_no_manifest_and_a_rerun_recovers(built):
    """Interrupt a real make (relinking vmlinux); no manifest may claim success afterwards."""
    import signal
    data, path = built
    build_dir = Path(data["build"]["dir"])
    (build_dir / "init" / "version.o").unlink()
    path.unlink()  # force make to run: without a manifest nothing is "up to date"
    log = build_dir / "build.log"
    log.unlink()  # the previous build's log mentions init/version.o too
    # A terminal's Ctrl-C meets a default SIGINT disposition; a test runner started in the
    # background of a non-interactive shell inherits SIGINT ignored, so restore the default.
    proc = subprocess.Popen([*INVOKE, "build-kernel"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if log.exists() and "init/version.o" in log.read_text(errors="replace"):
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the build ended before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().endswith("interrupted: stopped before completion; no partial output was kept")
    assert not path.exists()
    again = invoke("build-kernel")
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads(path.read_text())["build"]["build_id"] == data["build"]["build_id"]  # reproducible relink
