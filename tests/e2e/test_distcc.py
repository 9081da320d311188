"""The minimal kernel built through a 2-host distcc farm (each daemon in its own network namespace,
ccache off), one daemon killed halfway: the result must be the local build's, bit for bit.

Exactly one farm build (the cold CI budget); the local reference is the session's default_build.
"""
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from kbuild.package import stage as P
from tests import packagesets
from tests.farm import NamespaceFarm

REPO = Path(__file__).resolve().parent.parent.parent
KILL_AFTER = 150   # jobs the second daemon completes before it is killed


@pytest.fixture(scope="module")
def farm_build(default_build, tmp_path_factory):
    """Build through the farm; a watcher kills daemon 1 once its own log shows KILL_AFTER jobs."""
    work = tmp_path_factory.mktemp("distcc-build")
    with NamespaceFarm(2, slots=2) as farm:
        victim, killed = farm.daemons[1], {}
        stop = threading.Event()

        def watch():
            while not stop.is_set():
                if victim.completed() >= KILL_AFTER:
                    victim.kill()
                    killed["at"] = victim.completed()
                    return
                time.sleep(0.2)
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        t = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "invoke", "build-kernel", "--no-ccache", "--distcc", farm.hosts,
                               "--build-dir", str(work / "build")], cwd=REPO, capture_output=True, text=True,
                              env={**os.environ, "KBUILD_DIST_DIR": str(work / "dist")})
        seconds = time.monotonic() - t
        stop.set()
        watcher.join()
        logs = [d.completed() for d in farm.daemons]
        hosts = [d.spec for d in farm.daemons]
    print(f"\nfarm build: {seconds:.0f}s, daemon jobs {logs}, killed at {killed.get('at')}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("manifest: "))
    data = json.loads(Path(line.split(": ", 1)[1]).read_text())
    return {"manifest": data, "stdout": proc.stdout, "daemon_jobs": logs, "hosts": hosts, "killed_at": killed.get("at"),
            "leftovers": farm.leftovers(), "local": default_build}


def test_the_kconfig_environment_did_not_change(farm_build):
    """CC stays gcc: `$(CC) --version` through distcc must not make Kbuild rewrite the .config."""
    config = Path(farm_build["manifest"]["config"]["path"]).read_text()
    assert "written by kbuild" in config.splitlines()[1]
    assert farm_build["manifest"]["config"]["sha256"] == farm_build["local"].record["config"]["sha256"]


def test_same_build_id_as_the_local_build(farm_build):
    assert farm_build["manifest"]["build"]["build_id"] == farm_build["local"].build_id


def artifact_sums(farm_build):
    farm = {a["name"]: a["sha256"] for a in farm_build["manifest"]["artifacts"]}
    local = {a.name: a.sha256 for a in farm_build["local"].artifacts}
    assert farm.keys() == local.keys()
    return farm, local


def test_vmlinux_modules_system_map_and_config_are_byte_identical(farm_build):
    """Everything the debug package, the modules package and a dump's analysis are made of."""
    farm, local = artifact_sums(farm_build)
    assert [n for n in farm if n != "bzImage" and farm[n] != local[n]] == []


def compressed_kernel(build_dir: Path, out: Path) -> tuple[bytes, bytes]:
    """(the compressed kernel piggy.o embeds in bzImage, the vmlinux.bin.* beside it)"""
    comp = build_dir / "arch" / "x86" / "boot" / "compressed"
    subprocess.run(["objcopy", "-O", "binary", "-j", ".rodata..compressed", str(comp / "piggy.o"), str(out)], check=True)
    beside = next(p for p in sorted(comp.glob("vmlinux.bin.*")) if p.suffix in (".gz", ".xz", ".zst", ".lz4", ".lzo", ".bz2", ".lzma"))
    return out.read_bytes(), beside.read_bytes()


def test_bzimage_is_byte_identical(farm_build, tmp_path):
    """The farm's bzImage carries its own kernel and equals the local one. (The local one once did
    not: ccache's depend mode served a stale piggy.o; kbuild/build/ccache.py closes that.)"""
    farm, local = artifact_sums(farm_build)
    embedded, beside = compressed_kernel(Path(farm_build["manifest"]["build"]["dir"]), tmp_path / "farm.bin")
    assert embedded == beside
    assert farm["bzImage"] == local["bzImage"]


def test_packages_are_byte_identical_to_the_local_builds(farm_build, tmp_path):
    """What ships: the DEB and RPM sets of the farm build and of the local one, byte for byte."""
    farm_manifest = Path(farm_build["stdout"].split("manifest: ", 1)[1].splitlines()[0])
    sets = [P.package(packagesets.fresh_dist(m, tmp_path / name), {"deb", "rpm"}, checks=False)
            for name, m in (("farm", farm_manifest), ("local", farm_build["local"].path))]
    assert [p.name for p in sets[0].packages] == [p.name for p in sets[1].packages] and len(sets[0].packages) == 6
    assert [p.name for a, p in zip(sets[0].packages, sets[1].packages) if a.read_bytes() != p.read_bytes()] == []


def test_each_host_ran_jobs_measured_from_the_logs(farm_build):
    rec = farm_build["manifest"]["distcc"]
    assert rec["engine"] == "distcc" and rec["hosts"] == farm_build["hosts"] and rec["refused"] == {}
    per_host = rec["jobs_per_host"]
    assert all(per_host[h] > 0 for h in farm_build["hosts"]), per_host
    # the client's count agrees with the daemons' own logs (which also hold the probe's one job):
    # the live one exactly, the killed one at most (a job it finished as it died never came back)
    live, dead = farm_build["hosts"]
    assert per_host[live] == farm_build["daemon_jobs"][0] - 1
    assert KILL_AFTER - 1 <= per_host[dead] <= farm_build["daemon_jobs"][1] - 1
    assert farm_build["manifest"]["build"]["jobs"] == 4   # -j from the slots: 2 hosts x /2


def test_the_killed_host_did_not_fail_the_build_and_fallbacks_are_counted(farm_build):
    assert farm_build["killed_at"] is not None, "the second daemon never reached the kill point"
    rec = farm_build["manifest"]["distcc"]
    assert rec["fallbacks"] >= 1 and rec["local_jobs"] >= 1
    assert f"fallbacks {rec['fallbacks']}" in farm_build["stdout"]


def test_the_farm_left_nothing_behind(farm_build):
    assert farm_build["leftovers"] == []
