"""distcc's host grammar at the boundary, where the hosts come from, and job counts read from a
client log in distcc 3.4's own format (lines copied from a real run)."""
import subprocess
import sys
from pathlib import Path

import pytest

from kbuild.build import distcc
from kbuild.build import stage as build
from kbuild.core.distcchosts import parse_hosts
from kbuild.core.errors import BadInput
from kbuild.core.settings import BuildSettings, ConfigureSettings

from tests.conftest import make_tree

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("text, specs, slots", [
    ("10.0.0.2/8,lzo 10.0.0.3/8", ["10.0.0.2/8,lzo", "10.0.0.3/8"], [8, 8]),
    ("farm1 farm2:3633", ["farm1", "farm2:3633"], [4, 4]),            # distcc's default: 4 slots
    ("--randomize localhost/1 builder@farm3/6:/usr/bin/distccd", ["localhost/1", "builder@farm3/6:/usr/bin/distccd"],
     [1, 6]),
    ("10.0.0.2:3632/2,auth=distcc", ["10.0.0.2:3632/2,auth=distcc"], [2]),
])
def test_hosts_in_distccs_own_syntax(text, specs, slots):
    hosts, _ = parse_hosts(text)
    assert [h.spec for h in hosts] == specs and [h.slots for h in hosts] == slots


@pytest.mark.parametrize("text, message", [
    ("", r"give at least one host"),
    ("10.0.0.2/8,zstd", r"'10.0.0.2/8,zstd' is not a distcc host"),
    ("10.0.0.2/0", r"has no job slots"),
    ("10.0.0.2/4,cpp", r"pump mode"),
    ("localhost/2", r"names no remote host"),
    ("+zeroconf", r"'\+zeroconf' is not a distcc host"),
])
def test_a_bad_host_list_is_one_line_showing_the_value(text, message):
    with pytest.raises(BadInput, match=message) as e:
        parse_hosts(text)
    assert repr(text) in str(e.value) and "\n" not in str(e.value)


def test_the_flag_wins_over_distcc_hosts_and_jobs_follow_the_farm(monkeypatch):
    monkeypatch.setenv("DISTCC_HOSTS", "env1/2 env2/2")
    conf = ConfigureSettings.from_flags()
    s = BuildSettings.from_flags(conf, distcc="flag1/3")
    assert s.distcc == "flag1/3" and "distcc" not in s.origins and s.jobs == 0   # 0: the farm's slots
    s = BuildSettings.from_flags(conf)
    assert s.distcc == "env1/2 env2/2" and s.origins["distcc"] == "environment DISTCC_HOSTS"
    assert BuildSettings.from_flags(conf, jobs="3").jobs == 3                     # --jobs still wins
    monkeypatch.setenv("DISTCC_HOSTS", "env1/2,bogus")
    with pytest.raises(BadInput, match=r"environment DISTCC_HOSTS.*'env1/2,bogus'"):
        BuildSettings.from_flags(conf)
    monkeypatch.delenv("DISTCC_HOSTS")
    s = BuildSettings.from_flags(conf)
    assert s.distcc is None and s.jobs >= 1


def test_a_bad_flag_value_exits_2_before_any_work():
    proc = subprocess.run([sys.executable, "-m", "invoke", "build-kernel", "--distcc", "10.0.0.2/8,lzo x/y"],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "'x/y' is not a distcc host" in proc.stderr and "Traceback" not in proc.stderr


def test_invoke_config_fills_the_flag(tmp_path):
    (tmp_path / "invoke.yaml").write_text("kbuild:\n  distcc: '10.0.0.9/2 10.0.0.10/2,bogus'\n")
    proc = subprocess.run([sys.executable, "-m", "invoke", "-f", str(tmp_path / "invoke.yaml"), "build-kernel"],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2 and "distcc (runtime config" in proc.stderr and "'10.0.0.10/2,bogus'" in proc.stderr


FARM = distcc.Farm(parse_hosts("10.213.1.2/2 10.213.2.2/2,lzo")[0], (), (), "GCC: x", "12.2.0")
LOG = """\
distcc[101] compile from init/main.c to init/main.o
distcc[101] exec on 10.213.1.2/2: x86_64-linux-gnu-gcc -c init/main.c -o init/main.o
distcc[101] cpp init/main.c on localhost completed ok
distcc[101] 17940 bytes from init/main.c compiled on 10.213.1.2 in 0.0276s, rate 635kB/s
distcc[101] compile init/main.c on 10.213.1.2/2 completed ok
distcc[102] compile kernel/fork.c on 10.213.2.2/2,lzo completed ok
distcc[103] compile kernel/exit.c on 10.213.2.2/2,lzo completed ok
distcc[104] (dcc_scan_args) compiler apparently called not for compile
distcc[104] exec on localhost: x86_64-linux-gnu-gcc -o scripts/basic/fixdep scripts/basic/fixdep.c
distcc[104] compile scripts/basic/fixdep.c on localhost completed ok
distcc[105] Warning: failed to distribute mm/slab.c to 10.213.2.2/2,lzo, running locally instead
distcc[105] compile mm/slab.c on localhost completed ok
distcc[106] (dcc_build_somewhere) Warning: failed to distribute, running locally instead
distcc[106] compile mm/util.c on localhost completed ok
"""


def test_jobs_per_host_local_work_and_fallbacks_from_the_client_log(tmp_path):
    log = tmp_path / "client.log"
    log.write_text(LOG)
    counts = distcc.count_jobs(log, FARM)
    assert counts.per_host == {"10.213.1.2/2": 1, "10.213.2.2/2,lzo": 2}
    assert (counts.local, counts.fallbacks) == (1, 2)
    assert distcc.count_jobs(tmp_path / "none.log", FARM).per_host == {"10.213.1.2/2": 0, "10.213.2.2/2,lzo": 0}


def test_cc_stays_gcc_distcc_comes_in_through_path_or_ccache(tmp_path):
    tree = make_tree(tmp_path / "t", 'config A\n\tbool "a"\n')
    env = build.build_env(tree, ccache=False, masquerade=distcc.MASQUERADE_DIR)
    assert env["PATH"].startswith(distcc.MASQUERADE_DIR + ":") and "CC" not in env
    extra = distcc.build_env(FARM, tmp_path / "state", ccache=True)
    assert extra["CCACHE_PREFIX"] == "distcc" and extra["DISTCC_HOSTS"] == "10.213.1.2/2 10.213.2.2/2,lzo"
    assert (tmp_path / "state").is_dir() and "CCACHE_PREFIX" not in distcc.build_env(FARM, tmp_path / "s2", False)
    # where jobs run never changes what they produce: none of this is a build input
    assert set(extra) <= set(build.ENGINE_ENV)


def test_the_reproducer_names_the_hosts(tmp_path):
    s = BuildSettings.from_flags(ConfigureSettings.from_flags(), distcc="a/2 b/2")
    tree = make_tree(tmp_path / "t", 'config A\n\tbool "a"\n')
    assert "--distcc 'a/2 b/2'" in build.reproducer(s, tree)
