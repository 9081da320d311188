"""The toolchain probe against real daemons in network namespaces (no kernel is compiled).

The mismatching host is a daemon whose PATH leads to Debian's gcc-11 under the names distcc asks
for (gcc, x86_64-linux-gnu-gcc): a real second compiler, installed by `make setup`, so the objects
really differ, as they would on a host with another toolchain.
"""
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.farm import NamespaceFarm, other_compiler
from kbuild.build import distcc
from kbuild.core.errors import BadInput

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def hosts():
    """good: 1 daemon with our gcc; other: 1 daemon with gcc-11; dead: a namespace with no daemon."""
    assert shutil.which("gcc-11"), "gcc-11 is missing: `make setup` installs it"
    root = Path(tempfile.mkdtemp(prefix="kbuild-other-gcc-"))
    farms = [NamespaceFarm(1), NamespaceFarm(1, compiler_dir=other_compiler(root)), NamespaceFarm(1, start=False)]
    try:
        good, other, dead = (f.__enter__() for f in farms)
        yield {"good": good.hosts, "other": other.hosts, "dead": dead.hosts, "dead_addr": dead.daemons[0].address}
    finally:
        for f in farms:
            f.close()
        shutil.rmtree(root, ignore_errors=True)
    assert [f.leftovers() for f in farms] == [[], [], []]


def test_the_same_compiler_passes_the_probe(hosts):
    farm = distcc.check_farm(hosts["good"])
    assert farm.spec == hosts["good"] and farm.refused == ()
    assert farm.local_comment.startswith("GCC: (Debian 12") and farm.local_version.startswith("12.")


def test_another_compiler_is_refused_naming_the_host_and_both_versions(hosts):
    farm = distcc.check_farm(f"{hosts['good']} {hosts['other']}")
    assert farm.spec == hosts["good"]
    (refused,) = farm.refused
    assert refused.host.spec == hosts["other"]
    assert repr(hosts["other"]) in refused.why and "11.3.0" in refused.why and farm.local_version in refused.why
    assert farm.record()["refused"] == {hosts["other"]: refused.why}


def test_an_unreachable_host_is_reported_with_its_address(hosts):
    farm = distcc.check_farm(f"{hosts['dead']} {hosts['good']}")
    (refused,) = farm.refused
    assert "unreachable" in refused.why and hosts["dead_addr"] in refused.why


def test_no_usable_host_is_exit_2_before_anything_is_built(hosts, tmp_path):
    with pytest.raises(BadInput, match="no usable distcc host"):
        distcc.check_farm(f"{hosts['other']} {hosts['dead']}")
    # --no-ccache: the build would send plain `gcc`, which this host's PATH turns into gcc-11
    # (with ccache, distcc gets /usr/bin/gcc, the same compiler there, and the probe says so)
    proc = subprocess.run([sys.executable, "-m", "invoke", "build-kernel", "--no-ccache", "--distcc",
                           f"{hosts['other']} {hosts['dead']}", "--build-dir", str(tmp_path / "b")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "11.3.0" in proc.stderr and hosts["dead_addr"] in proc.stderr
    assert not (tmp_path / "b").exists()     # refused before configure wrote anything


def test_with_ccache_the_probe_sends_what_ccache_sends(hosts):
    """ccache runs `distcc /usr/bin/gcc`: the host runs that path, not its PATH's gcc-11."""
    assert distcc.check_farm(hosts["other"], ccache=True).refused == ()


def test_the_farms_slots_give_the_jobs(hosts):
    farm = distcc.check_farm(hosts["good"])
    assert distcc.slots(farm, {}) == 2
