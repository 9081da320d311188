"""Package-version ordering checked with the real tools: dpkg and rpm (apt-get install -y rpm).

These never skip: a missing tool is a failure that names the package, because CI installs them.
"""
from __future__ import annotations

import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kbuild.build import release as R
from kbuild.core.source import KernelVersion as KV

TOOLS = {"dpkg": "dpkg", "rpm": "rpm"}   # program -> Debian package


@pytest.fixture(scope="module", autouse=True)
def tools_present():
    missing = [f"{prog} (apt-get install -y {pkg})" for prog, pkg in TOOLS.items()
               if shutil.which(prog) is None]
    if missing:
        pytest.fail("required tools missing: " + ", ".join(missing), pytrace=False)


def dpkg_cmp(a: str, b: str) -> int:
    """dpkg's three-way verdict; any warning (bad syntax) fails the test."""
    for op, result in (("lt", -1), ("gt", 1)):
        p = subprocess.run(["dpkg", "--compare-versions", a, op, b], capture_output=True, text=True)
        assert p.returncode in (0, 1) and not p.stderr, f"dpkg on {a!r} {op} {b!r}: {p.stderr}"
        if p.returncode == 0:
            return result
    return 0


def rpm_cmp_many(pairs: list[tuple[tuple[str, str], tuple[str, str]]]) -> list[int]:
    """rpm's own vercmp on "V-R" strings, many pairs in one rpm process."""
    for (v1, r1), (v2, r2) in pairs:   # safe to embed in a Lua string literal, no macros
        for s in (v1, r1, v2, r2):
            assert all(c.isalnum() or c in "._+~^" for c in s), s
    body = " ".join(f'print(rpm.vercmp("{v1}-{r1}", "{v2}-{r2}") .. " ")'
                    for (v1, r1), (v2, r2) in pairs)
    p = subprocess.run(["rpm", "--eval", f"%{{lua: {body}}}"], capture_output=True, text=True)
    assert p.returncode == 0 and not p.stderr.strip(), p.stderr
    out = [int(x) for x in p.stdout.split()]
    assert len(out) == len(pairs), p.stdout
    return out


def test_rpm_has_lua_vercmp_and_tilde():
    assert rpm_cmp_many([(("6.1.0~rc1", "1"), ("6.1.0", "1"))]) == [-1]


ORDERED = [  # (older, newer) kernel releases
    ("6.1.192-3.kdump", "6.1.192-4.kdump"),
    ("6.1.192-9.kdump", "6.1.192-10.kdump"),
    ("6.1.192-99", "6.1.192-100"),
    ("6.1.9-7.kdump", "6.1.10-1.kdump"),
    ("6.1.192-3.kdump", "6.1.193-1.kdump"),
    ("6.1.0-rc1-3.kdump", "6.1.0-1.kdump"),
    ("6.1.0-rc7-100.kdump", "6.1.0-1.kdump"),
    ("6.1.0-rc1-5.kdump", "6.1.0-rc2-1.kdump"),
    ("6.1.0-rc9-1.kdump", "6.1.0-rc10-1.kdump"),
    ("6.1.0-rc1", "6.1.0"),
    ("6.12.0-rc1-2.kdump", "6.12.0-2.kdump"),
    ("6.1.0-1.kdump-a", "6.1.0-2.kdump-a"),
    ("2.6.32-171.kdump", "2.6.32-172.kdump"),
    ("2.6.32-754.kdump", "3.10.0-1.kdump"),
    ("6.9.12-1.kdump", "6.10.0-1.kdump"),
]


@pytest.mark.parametrize("older,newer", ORDERED)
def test_ordering_with_dpkg(older, newer):
    assert dpkg_cmp(R.deb_version(older), R.deb_version(newer)) == -1
    assert dpkg_cmp(R.deb_version(newer), R.deb_version(older)) == 1


def test_ordering_with_rpm():
    pairs = [(R.rpm_version(a), R.rpm_version(b)) for a, b in ORDERED]
    assert rpm_cmp_many(pairs) == [-1] * len(pairs)
    assert rpm_cmp_many([(b, a) for a, b in pairs]) == [1] * len(pairs)


def test_kernel_mkspec_mapping_is_why_we_split():
    # `make binrpm-pkg` uses Version = release with '-' -> '_': rc then sorts AFTER final.
    assert rpm_cmp_many([(("6.1.0_rc1", "1"), ("6.1.0", "1"))]) == [1]


# --- hypothesis: composed releases --------------------------------------------------------------
_lv = st.one_of(st.just(""), st.from_regex(r"[a-z][a-z0-9]{0,7}(-[a-z0-9]{1,3})?", fullmatch=True)
                ).filter(lambda s: "smp" not in s and "64k" not in s and not s.endswith("xen")
                         and s != "debug" and not s.endswith("-debug"))
_build = st.one_of(st.none(), st.integers(0, 10**6))


@st.composite
def ordered_pairs(draw):
    ver, pl, sl = draw(st.integers(2, 7)), draw(st.integers(0, 20)), draw(st.integers(0, 300))
    lv, kind = draw(_lv), draw(st.sampled_from(["build", "rc", "rc-step", "sublevel"]))
    n = draw(st.integers(0, 10**6))
    if kind == "build":
        return (R.compose(KV(ver, pl, sl), lv, n).release,
                R.compose(KV(ver, pl, sl), lv, n + 1).release)
    rc = draw(st.integers(1, 9))
    if kind == "rc":
        return (R.compose(KV(ver, pl, sl, f"-rc{rc}"), lv, draw(_build)).release,
                R.compose(KV(ver, pl, sl), lv, draw(_build)).release)
    if kind == "rc-step":
        return (R.compose(KV(ver, pl, sl, f"-rc{rc}"), lv, draw(_build)).release,
                R.compose(KV(ver, pl, sl, f"-rc{rc + 1}"), lv, draw(_build)).release)
    return (R.compose(KV(ver, pl, sl), lv, draw(_build)).release,
            R.compose(KV(ver, pl, sl + draw(st.integers(1, 50))), lv, draw(_build)).release)


@settings(max_examples=50, deadline=None)
@given(ordered_pairs())
def test_composed_ordering_with_real_tools(pair):
    older, newer = pair
    assert dpkg_cmp(R.deb_version(older), R.deb_version(newer)) == -1, pair
    assert rpm_cmp_many([(R.rpm_version(older), R.rpm_version(newer))]) == [-1], pair


# --- hypothesis: our Python comparators agree with the tools (the unit tests rely on them) -----
_deb_versions = st.builds(
    lambda up, rev: up + (f"-{rev}" if rev else ""),
    st.from_regex(r"[0-9][0-9a-z.+~]{0,8}", fullmatch=True),
    st.one_of(st.just(""), st.from_regex(r"[0-9a-z.+~]{1,6}", fullmatch=True)))
_rpm_parts = st.from_regex(r"[0-9a-zA-Z._+~^]{1,8}", fullmatch=True)


@settings(max_examples=50, deadline=None)
@given(_deb_versions, _deb_versions)
def test_deb_compare_agrees_with_dpkg(a, b):
    assert R.deb_compare(a, b) == dpkg_cmp(a, b), (a, b)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.tuples(_rpm_parts, _rpm_parts), st.tuples(_rpm_parts, _rpm_parts)),
                min_size=1, max_size=20))
def test_rpm_compare_agrees_with_rpm(pairs):
    assert [R.rpm_compare(a, b) for a, b in pairs] == rpm_cmp_many(pairs), pairs
