"""`invoke release-check` exit codes and output, through the real CLI."""
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent


def release_check(*args):
    return subprocess.run([sys.executable, "-m", "invoke", "release-check", *args], cwd=REPO,
                          capture_output=True, text=True)


def test_safe_release_exit_0_with_package_versions():
    proc = release_check("--release", "6.1.192-3.kdump")
    assert proc.returncode == 0 and proc.stdout.strip() == "ok  6.1.192-3.kdump: deb 6.1.192-3.kdump, rpm 6.1.192-3.kdump"


def test_unsafe_release_exit_1_names_consumer_and_suggestion():
    proc = release_check("--release", "2.6.32-100.el6", "--json")
    assert proc.returncode == 1
    data = json.loads(proc.stdout)
    assert [f["rule"] for f in data["findings"]] == ["rhel6-nr-cpus"]
    assert data["suggestion"].startswith("2.6.32-171")
    assert proc.stderr.strip() == f"error: release '2.6.32-100.el6' breaks 1 consumer(s); a safe alternative is '{data['suggestion']}'"


def test_suffix_of_another_release_is_flagged():
    proc = release_check("--release", "6.1.192-1", "--other", "6.1.192-11")
    assert proc.returncode == 1 and "contain one another" in proc.stdout


def test_malformed_release_exit_2():
    proc = release_check("--release", "kdump 6.1")
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
