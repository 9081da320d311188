"""KERNELRELEASE policy: compose, validate, lint, package versions, and the RHEL 6 oracle."""
from __future__ import annotations

import atexit
import json
import os
import re
import subprocess
import tempfile

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from kbuild.build import release as R
from kbuild.core.errors import BadInput, CheckFailed
from kbuild.core.source import KernelVersion as KV

pytestmark = pytest.mark.host_tools   # runs programs `make setup` installs (make unit does)

# --- the oracle: RHEL 6 /etc/init.d/kdump, as quoted in facts.md section 1 -------------------
# `uname -r` is a shell function reading $KREL, so the snippet itself stays as shipped.
RHEL6_CHECK = r'''
uname() { printf '%s\n' "$KREL"; }
check_nr_cpus() {
    if echo "$KDUMP_COMMANDLINE_APPEND" | grep -q nr_cpus;
    then
        ver=`uname -r`
        maj=`echo $ver | cut -d'-' -f1`
        min=`echo $ver | cut -d'-' -f2`
        min=${min%%.*}
        if [ "$maj" = "2.6.32" ] && [ $min -lt 171 ]
        then
            echo "Your kernel is old, please use maxcpus=1 instead of nr_cpus=1"
            return 1
        fi
    fi
    return 0
}
check_nr_cpus
'''
CMDLINES = {R.NR_CPUS: "irqpoll nr_cpus=1 reset_devices",
            R.MAXCPUS: "irqpoll maxcpus=1 reset_devices"}
_EMPTY_DIR = tempfile.mkdtemp(prefix="rhel6-oracle.")  # unquoted $ver must not glob anything
atexit.register(os.rmdir, _EMPTY_DIR)


def rhel6_refuses(release: str, cpu_limit_arg: str) -> bool:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "KREL": release,
           "KDUMP_COMMANDLINE_APPEND": CMDLINES[cpu_limit_arg]}
    p = subprocess.run(["bash", "-c", RHEL6_CHECK], env=env, cwd=_EMPTY_DIR,
                       capture_output=True, text=True)
    assert p.returncode in (0, 1), f"oracle broke on {release!r}: {p.stderr}"
    assert (p.returncode == 1) == ("Your kernel is old" in p.stdout)
    return p.returncode == 1


def lint_refuses(release: str, cpu_limit_arg: str) -> bool:
    return any(f.rule == "rhel6-nr-cpus" for f in R.lint(release, cpu_limit_arg=cpu_limit_arg))


ORACLE_CASES = [
    "2.6.32", "2.6.32-1", "2.6.32-170", "2.6.32-170.el6", "2.6.32-171", "2.6.32-171.kdump",
    "2.6.32-754.el6.x86_64", "2.6.32-0170", "2.6.32-+5", "2.6.32-custom", "2.6.32-",
    "2.6.32-.5", "2.6.32--5", "2.6.32-5-kdump", "2.6.32-99999999999999999999",
    "2.6.32-1e2", "2.6.32.27-1", "2.6.320-1", "2.6.3-1", "3.10.0-1160.el7", "6.1.192-3.kdump",
    "2.6.32-rc1-5.kdump", "2.6.32_1", "2.6.32-170smp", "2.6.32-17*", "2.6.32-1?",
]


@pytest.mark.parametrize("cpu", [R.NR_CPUS, R.MAXCPUS])
@pytest.mark.parametrize("release", ORACLE_CASES)
def test_rhel6_rule_matches_the_real_shell(release, cpu):
    assert lint_refuses(release, cpu) == rhel6_refuses(release, cpu)


def test_oracle_refuses_what_facts_say():
    assert rhel6_refuses("2.6.32-100.kdump", R.NR_CPUS)
    assert rhel6_refuses("2.6.32", R.NR_CPUS)          # no '-': cut -f2 returns everything
    assert not rhel6_refuses("2.6.32-custom", R.NR_CPUS)  # "integer expression expected"
    assert not rhel6_refuses("2.6.32-100.kdump", R.MAXCPUS)


_oracle_releases = st.builds(
    str.__add__,
    st.sampled_from(["2.6.32", "2.6.32-", "2.6.32-1", "2.6.32-17", "2.6.32-170", "2.6.32-171",
                     "2.6.3", "2.6.320", "2.6.32.1-", "3.10.0-", "6.1.0"]),
    st.text(alphabet="0123456789.-+_~abcdeklmnprsx", max_size=10))


@settings(max_examples=150, deadline=None)
@given(_oracle_releases, st.sampled_from([R.NR_CPUS, R.MAXCPUS]))
def test_rhel6_rule_matches_the_real_shell_generated(release, cpu):
    assert lint_refuses(release, cpu) == rhel6_refuses(release, cpu)


# --- compose -----------------------------------------------------------------------------------
def test_compose_scheme():
    r = R.compose(KV(6, 1, 192), "kdump", 3)
    assert (r.release, r.localversion, r.build, r.cpu_limit_arg) == (
        "6.1.192-3.kdump", "-3.kdump", 3, "nr_cpus=1")
    assert r.make_vars == {"LOCALVERSION": "-3.kdump"}
    assert R.compose(KV(6, 1, 192), "kdump").release == "6.1.192-kdump"
    assert R.compose(KV(6, 1, 192), build=3).release == "6.1.192-3"
    plain = R.compose(KV(6, 1, 192))
    assert (plain.release, plain.localversion) == ("6.1.192", "")
    assert plain.make_vars == {"LOCALVERSION": ""}   # still passed: unset LOCALVERSION adds '+'
    assert R.compose(KV(6, 12, 0, "-rc1"), "kdump", 2).release == "6.12.0-rc1-2.kdump"
    assert R.KCONFIG == {"CONFIG_LOCALVERSION": '""', "CONFIG_LOCALVERSION_AUTO": "n"}


def test_compose_2632_defaults_to_a_build_rhel6_accepts():
    r = R.compose(KV(2, 6, 32), "kdump")
    assert r.release == "2.6.32-171.kdump" and r.cpu_limit_arg == R.NR_CPUS
    assert not rhel6_refuses(r.release, R.NR_CPUS)
    assert R.compose(KV(2, 6, 32), build=0).cpu_limit_arg == R.MAXCPUS


def test_compose_2632_insisting_on_an_old_build_switches_to_maxcpus():
    r = R.compose(KV(2, 6, 32), "kdump", 100)
    assert r.release == "2.6.32-100.kdump" and r.cpu_limit_arg == R.MAXCPUS
    assert any("maxcpus=1" in n and "nr_cpus" in n for n in r.notes)
    assert rhel6_refuses(r.release, R.NR_CPUS) and not rhel6_refuses(r.release, R.MAXCPUS)
    assert R.lint(r.release, cpu_limit_arg=r.cpu_limit_arg) == []


@pytest.mark.parametrize("lv", ["kdumpsmp", "dom0xen", "k64k", "Kdump", "k_dump", "k+dump", "k~1"])
def test_compose_refuses_unsafe_localversions(lv):
    with pytest.raises(CheckFailed, match="unsafe"):
        R.compose(KV(6, 1, 0), lv, 1)


def test_compose_refuses_debug_suffix_and_bad_build():
    with pytest.raises(CheckFailed):
        R.compose(KV(6, 1, 0), "debug")
    for bad in (-1, True, "3", 1.5):
        with pytest.raises(BadInput):
            R.compose(KV(6, 1, 0), "kdump", bad)


BAD_LOCALVERSIONS = ["kdump test", "a/b", "a;b", "$(id)", "`id`", "'x'", '"x"', "a|b", "a&b",
                     "a>b", "a<b", "a*", "a?", "a#b", "a\\b", "a\nb", "a\tb", "a=b", "a$b",
                     "a!b", "a(b", "-kdump", ".kdump", "kdump-", "kdump.", "x" * 60]


@pytest.mark.parametrize("lv", BAD_LOCALVERSIONS)
def test_bad_localversions_raise_badinput(lv):
    with pytest.raises(BadInput) as e:
        R.compose(KV(6, 1, 192), lv, 3)
    msg = str(e.value)
    assert "\n" not in msg and ("use" in msg or "pass" in msg or "shorten" in msg)
    with pytest.raises(BadInput):
        R.validate_localversion(lv, KV(6, 1, 192), 3)


def test_length_limit_is_exactly_64():
    base = "6.1.192-3."
    ok = "k" * (64 - len(base))
    assert R.compose(KV(6, 1, 192), ok, 3).release == base + ok
    with pytest.raises(BadInput, match="64"):
        R.validate_localversion(ok + "k", KV(6, 1, 192), 3)


# --- properties of compose ---------------------------------------------------------------------
_versions = st.one_of(
    st.builds(KV, st.integers(2, 7), st.integers(0, 20), st.integers(0, 400),
              st.sampled_from(["", "", "-rc1", "-rc7"])),
    st.just(KV(2, 6, 32)))
_ordinary_lv = st.one_of(st.just(""), st.from_regex(r"[a-z][a-z0-9]{0,9}(-[a-z0-9]{1,4})?",
                                                    fullmatch=True)).filter(
    lambda s: "smp" not in s and "64k" not in s and not s.endswith("xen") and s != "debug"
    and not s.endswith("-debug"))
_builds = st.one_of(st.none(), st.integers(0, 10**6))


@given(_versions, _ordinary_lv, _builds)
def test_compose_output_is_clean_and_packageable(v, lv, build):
    r = R.compose(v, lv, build)
    assert r.release == str(v) + r.localversion and len(r.release) <= 64
    assert R.lint(r.release, cpu_limit_arg=r.cpu_limit_arg) == []
    assert rhel6_refuses(r.release, r.cpu_limit_arg) is False
    assert R.deb_version(r.release) and R.rpm_version(r.release)


@given(_versions, st.text(alphabet="abcdefghijklmnopqrstuvwxyzABZ0123456789._+~-", max_size=12),
       _builds)
def test_compose_never_returns_an_unsafe_release(v, lv, build):
    try:
        r = R.compose(v, lv, build)
    except (BadInput, CheckFailed):
        return
    assert R.lint(r.release, cpu_limit_arg=r.cpu_limit_arg) == []


def assert_before(a: str, b: str):
    assert R.deb_compare(R.deb_version(a), R.deb_version(b)) < 0, (a, b)
    assert R.rpm_compare(R.rpm_version(a), R.rpm_version(b)) < 0, (a, b)


@given(_versions, _ordinary_lv, st.integers(0, 10**6))
def test_build_n_sorts_before_build_n_plus_1(v, lv, n):
    assert_before(R.compose(v, lv, n).release, R.compose(v, lv, n + 1).release)


@given(st.integers(2, 7), st.integers(0, 20), st.integers(0, 400), st.integers(1, 9),
       _ordinary_lv, _builds, _builds)
def test_rc_sorts_before_final(ver, pl, sl, rc, lv, b1, b2):
    pre = R.compose(KV(ver, pl, sl, f"-rc{rc}"), lv, b1).release
    assert_before(pre, R.compose(KV(ver, pl, sl), lv, b2).release)
    assert_before(pre, R.compose(KV(ver, pl, sl, f"-rc{rc + 1}"), lv, b2).release)


@given(st.integers(3, 7), st.integers(0, 20), st.integers(0, 400), st.integers(1, 300),
       _ordinary_lv, _builds, _builds)
def test_sublevel_sorts_numerically(ver, pl, sl, step, lv, b1, b2):
    assert_before(R.compose(KV(ver, pl, sl), lv, b1).release,
                  R.compose(KV(ver, pl, sl + step), lv, b2).release)


def test_ordering_examples():
    assert_before("6.1.9-1.kdump", "6.1.10-1.kdump")
    assert_before("6.1.192-9.kdump", "6.1.192-10.kdump")
    assert_before("6.1.0-rc1-3.kdump", "6.1.0-1.kdump")
    assert_before("6.1.0-rc7", "6.1.0")


# --- package version mappings ------------------------------------------------------------------
@pytest.mark.parametrize("release,deb,rpm", [
    ("6.1.192-3.kdump", "6.1.192-3.kdump", ("6.1.192", "3.kdump")),
    ("6.1.0-rc1-3.kdump", "6.1.0~rc1-3.kdump", ("6.1.0~rc1", "3.kdump")),
    ("6.1.0-rc1", "6.1.0~rc1", ("6.1.0~rc1", "0")),
    ("6.1.192", "6.1.192", ("6.1.192", "0")),
    ("6.1.0-3.kdump-x", "6.1.0-3.kdump-x", ("6.1.0", "3.kdump_x")),
    ("6.1.0-rcx", "6.1.0-rcx", ("6.1.0", "rcx")),
])
def test_package_versions(release, deb, rpm):
    assert R.deb_version(release) == deb and R.rpm_version(release) == rpm


@pytest.mark.parametrize("fn,release", [(R.deb_version, "6.1.0-"), (R.deb_version, "6.1.0-1.k_x"),
                                        (R.rpm_version, "6.1.0-1.k%x"),
                                        (R.rpm_version, "6.1.0-k:")])
def test_unmappable_package_versions_raise(fn, release):
    with pytest.raises(CheckFailed):
        fn(release)


@pytest.mark.parametrize("a,b,want", [
    ("1.0~rc1", "1.0", -1), ("1.0", "1.0+b1", -1), ("1.0-1", "1.0-2", -1), ("1:0", "2", 1),
    ("1.0a", "1.0+", -1), ("1.0", "1.0-0", 0), ("1.010", "1.9", 1), ("1.0~", "1.0~~", 1)])
def test_deb_compare_examples(a, b, want):
    assert R.deb_compare(a, b) == want and R.deb_compare(b, a) == -want


@pytest.mark.parametrize("a,b,want", [("1.0~rc1", "1.0", -1), ("1.0", "1.0^a", -1),
                                      ("1.0a", "1.0.1", -1), ("010", "9", 1), ("1.0", "1_0", 0),
                                      ("1.0", "1.0.", 0), ("a", "1", -1)])
def test_rpm_compare_examples(a, b, want):
    assert R.rpm_compare((a, "1"), (b, "1")) == want and R.rpm_compare((b, "1"), (a, "1")) == -want


# --- lint: one test per rule; each fails if its rule is removed --------------------------------
RULE_CASES = [
    ("too-long", "6.1.192-3." + "k" * 55, ()),
    ("rhel6-nr-cpus", "2.6.32-100.kdump", ()),
    ("rhel6-nr-cpus", "2.6.32", ()),
    ("smp", "6.1.0-1.kdumpsmp", ()),
    ("smp", "2.6.32-171.smp.kdump", ()),
    ("xen", "6.1.0-1.dom0xen", ()),
    ("debug-suffix", "6.1.0-1-debug", ()),
    ("debug-suffix", "6.1.0-1.k+debug", ()),
    ("64k", "6.1.0-1.k64kb", ()),
    ("64k", "6.1.0-64k", ()),
    ("regex", "6.1.0-1.k+dump", ()),
    ("regex", "6.1.0-1.k(x)", ()),
    ("deb", "6.1.0-1.Kdump", ()),
    ("deb", "6.1.0-1.k_dump", ()),
    ("deb", "6.1.0-1-", ()),
    ("rpm", "6.1.0-1.k%dump", ()),
    ("rpm", "6.1.0-1.k:x", ()),
    ("ambiguous", "6.1.0-1.kdump", ("16.1.0-1.kdump",)),   # suffix: kdump-utils
    ("ambiguous", "6.1.0-1", ("6.1.0-10",)),               # prefix: unanchored grep
    ("ambiguous", "6.1.0-10", ("6.1.0-1",)),
]


@pytest.mark.parametrize("rule,release,others", RULE_CASES)
def test_each_rule_fires(rule, release, others):
    findings = R.lint(release, list(others))
    hits = [f for f in findings if f.rule == rule]
    assert hits, f"{rule} did not fire on {release!r}: {findings}"
    for f in hits:
        assert f.consumer and f.problem and f.fix and f.consumer in str(f)


@pytest.mark.parametrize("release", ["6.1.0-1.kdump", "6.1.192-3.kdump", "2.6.32-171.kdump",
                                     "2.6.32-754.el6.x86-64", "6.1.0-1.xenial", "6.1.0-1.debugk",
                                     "6.1.0-1.k6.4k", "6.12.0-rc1-2", "6.1.0-1-kdump"])
def test_close_neighbours_are_clean(release):
    assert R.lint(release, ["6.1.0-2.kdump", "6.1.0-11.kdump"]) == []


def test_maxcpus_disables_only_the_rhel6_rule():
    assert R.lint("2.6.32-100.kdump", cpu_limit_arg=R.MAXCPUS) == []
    assert [f.rule for f in R.lint("2.6.32-100.smp", cpu_limit_arg=R.MAXCPUS)] == ["smp"]
    with pytest.raises(BadInput):
        R.lint("6.1.0", cpu_limit_arg="nr_cpus=2")


@pytest.mark.parametrize("release", ["", " ", "6.1.0 ", " 6.1.0", "6.1.0\n", "6.1.0-1 x",
                                     "abc", "6", "6.", ".6.1", "v6.1.0", "6.1.0-1\x00", "6.x.1"])
def test_malformed_releases_raise_badinput(release):
    for fn in (R.lint, R.check, R.suggest, R.deb_version, R.rpm_version):
        with pytest.raises(BadInput) as e:
            fn(release)
        assert e.value.exit_code == 2 and "\n" not in str(e.value)


# --- check / suggest ---------------------------------------------------------------------------
def test_check_safe_release():
    rep = R.check("6.1.192-3.kdump")
    assert rep.ok and rep.exit_code == 0 and rep.suggestion is None
    data = json.loads(rep.to_json())
    assert data["deb_version"] == "6.1.192-3.kdump"
    assert data["rpm_version"] == ["6.1.192", "3.kdump"] and data["ok"] is True
    assert data["findings"] == [] and data["exit_code"] == 0


def test_check_unsafe_release():
    rep = R.check("2.6.32-100.Kdump_smp")
    assert not rep.ok and rep.exit_code == 1
    assert {"rhel6-nr-cpus", "smp", "deb"} <= {f.rule for f in rep.findings}
    assert rep.suggestion == "2.6.32-171.kdump" and R.lint(rep.suggestion) == []
    data = json.loads(rep.to_json())
    assert data["exit_code"] == 1 and data["findings"][0]["consumer"]
    assert R.check("2.6.32-100.kdump", cpu_limit_arg=R.MAXCPUS).ok


def test_suggest_keeps_clean_releases_and_dodges_others():
    assert R.suggest("6.1.192-3.kdump") == "6.1.192-3.kdump"
    s = R.suggest("6.1.0-1", others=["6.1.0-10", "6.1.0-1.kdump"])
    assert R.lint(s, ["6.1.0-10", "6.1.0-1.kdump"]) == [] and s.startswith("6.1.0-1.")


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.builds(str.__add__, st.sampled_from(["6.1.0", "6.1.192-3", "2.6.32-5", "6.12.0-rc1-2",
                                               "2.6.32", "6.1"]),
                 st.text(alphabet="abcdefxnskpmug0123456789.-+_~KSX$()*", max_size=70)))
@example("6.1.0-ssmpmp64k-xen")
@example("6.1.0-" + "k" * 60 + "xen")
def test_suggest_always_lints_clean(release):
    s = R.suggest(release)
    assert R.lint(s) == [] and s.startswith(re.match(r"\d+\.\d+(\.\d+)?", release).group())
