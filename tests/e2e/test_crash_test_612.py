"""The crash test on the newer tree: Debian's linux-source-6.12, minimal profile, sysrq and NMI on 2 vCPUs.

Debian 12's crash 8.0.2 predates 6.12: its result must be a named skip (report.json and a
JUnit skip), never a pass, while drgn still verifies every per-CPU fact. The build folder
and ccache persist like the 6.1 one, so a rerun compiles nothing.
"""
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
TARBALL = "/usr/src/linux-source-6.12.tar.xz"


def invoke(*args):
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=REPO, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def matrix():
    if not Path(TARBALL).exists():
        pytest.fail(f"{TARBALL} is missing: `make setup` installs linux-source-6.12")
    proc = invoke("build-kernel", "--source", TARBALL)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    manifest = Path(next(ln for ln in proc.stdout.splitlines() if ln.startswith("manifest: ")).split(": ", 1)[1])
    proc = invoke("crash-test", "--manifest", str(manifest), "--trigger", "sysrq,nmi")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = manifest.parent / "crash-test"
    return proc, json.loads((out / "report.json").read_text()), out


def test_sysrq_and_nmi_are_verified_on_612(matrix):
    _, report, _ = matrix
    assert report["release"].startswith("6.12.") and report["verdict"] == "pass"
    assert report["triggers"] == ["sysrq", "nmi"]
    for run in report["runs"]:
        assert all(c["ok"] for c in run["checks"]), run["checks"]
        others = [c for c in run["cpu_stops"] if c["cpu"] != run["crashed_cpu"]]
        assert len(others) == 1 and "crash_nmi_callback" in others[0]["nmi_stack"]
    assert [r["crashed_cpu"] for r in report["runs"]][0] == 1   # sysrq is pinned to the last CPU


def test_crash_too_old_for_612_is_a_named_skip(matrix):
    proc, report, out = matrix
    for run in report["runs"]:
        tool = run["crash_tool"]
        assert tool["status"] == "skip" and tool["reason"].startswith("crash 8.0.2 predates Linux 6.12")
        assert not any(c["name"].startswith("crash-") and c["name"] != "crash-stack" for c in run["checks"])
    assert "crash: skip (crash 8.0.2 predates Linux 6.12" in proc.stdout
    suite = ET.parse(out / "junit.xml").getroot()
    skipped = [c for c in suite.iter("testcase") if c.find("skipped") is not None]
    assert [(c.get("classname"), c.get("name")) for c in skipped] == \
        [("crash-test.crash-tool", "sysrq"), ("crash-test.crash-tool", "nmi")]
    assert all("predates Linux 6.12" in c.find("skipped").get("message") for c in skipped)
