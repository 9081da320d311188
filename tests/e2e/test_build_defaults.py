"""Team defaults and one writer per build folder, on real builds of the default tree.

Both tests share one persistent folder, build/e2e-team (a sibling of the default build
folder, so ccache hits carry over from it), and a private dist folder.
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FOLDER = REPO / "build" / "e2e-team"


def invoke_proc(*args, dist: Path):
    return subprocess.Popen([sys.executable, "-m", "invoke", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                            env={**os.environ, "KBUILD_DIST_DIR": str(dist)})


def finish(proc, timeout=3000):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    return tmp_path_factory.mktemp("dist")


def test_localversion_from_a_runtime_config_file_shows_in_the_release(tmp_path, dist):
    team = tmp_path / "team.yaml"
    team.write_text(f"kbuild:\n  localversion: team\n  build_number: 5\n  build_dir: {FOLDER}\n")
    rc, out, err = finish(invoke_proc("-f", str(team), "build-kernel", dist=dist))
    assert rc == 0, err[-2000:]
    assert out.startswith("6.1.192-5.team: ")
    m = json.loads((dist / "6.1.192-5.team" / "manifest.json").read_text())
    assert m["release"]["release"] == "6.1.192-5.team"
    assert set(m["settings_from"]) == {"localversion", "build_number", "build_dir"}
    assert all(v.startswith("runtime config (-f)") for v in m["settings_from"].values())
    # an explicit flag beats the file
    rc, out, err = finish(invoke_proc("-f", str(team), "build-kernel", "--build-number", "6", dist=dist))
    assert rc == 0 and out.startswith("6.1.192-6.team: "), err[-2000:]


def test_two_builds_of_one_folder_take_turns(dist):
    first = invoke_proc("build-kernel", "--build-dir", str(FOLDER), "--build-number", "7", dist=dist)
    time.sleep(3)
    second = invoke_proc("build-kernel", "--build-dir", str(FOLDER), "--build-number", "8", dist=dist)
    refused = subprocess.run([sys.executable, "-m", "invoke", "build-kernel", "--build-dir", str(FOLDER),
                              "--build-number", "9", "--no-wait"], cwd=REPO, capture_output=True, text=True,
                             env={**os.environ, "KBUILD_DIST_DIR": str(dist)})
    (rc1, _, err1), (rc2, _, err2) = finish(first), finish(second)
    assert rc1 == 0 and rc2 == 0, (err1[-1500:], err2[-1500:])
    assert f"waiting for {FOLDER}: in use by pid {first.pid} (build-kernel, started" in err2
    assert refused.returncode == 1 and "error:" in refused.stderr and "in use by pid" in refused.stderr
    assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    for n in (7, 8):   # both verified, each manifest describes its own release
        m = json.loads((dist / f"6.1.192-{n}.kdump" / "manifest.json").read_text())
        assert m["status"] == "success" and m["release"]["release"] == f"6.1.192-{n}.kdump"
    assert not (dist / "6.1.192-9.kdump").exists()
