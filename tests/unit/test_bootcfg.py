"""crashkernel= grammar and the boot entries rendered from configs/boot.toml.

The grammar is also checked against the kernel's own parser, compiled from the real tree,
in tests/integration/test_package_real.py; the validators that run grub-script-check and
shellcheck are there too.
"""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kbuild.package import bootcfg as B
from kbuild.core.errors import BadInput, CheckFailed

pytestmark = pytest.mark.host_tools   # runs programs `make setup` installs (make unit does)

M, G = 1 << 20, 1 << 30


@pytest.mark.parametrize("text, size, ranges, offset, suffix", [
    ("256M", 256 * M, (), None, None),
    ("0x10000000", 256 * M, (), None, None),
    ("512m@16M", 512 * M, (), 16 * M, None),
    ("1G-4G:192M,4G-64G:256M,64G-:512M", None,
     ((G, 4 * G, 192 * M), (4 * G, 64 * G, 256 * M), (64 * G, None, 512 * M)), None, None),
    ("0-:256M@64M", None, ((0, None, 256 * M),), 64 * M, None),
    ("512M,high", 512 * M, (), None, "high"),
    ("128M,low", 128 * M, (), None, "low"),
    ("1T", 1 << 40, (), None, None),
])
def test_grammar_accepts(text, size, ranges, offset, suffix):
    ck = B.parse_crashkernel(text)
    assert (ck.text, ck.size, ck.ranges, ck.offset, ck.suffix) == (text, size, ranges, offset, suffix)


@pytest.mark.parametrize("text, message", [
    ("", "empty"),
    (" 256M", "whitespace"),
    ("auto", "RHEL 6-8 kernel patch"),
    ("M", "the size: a size such as 256M expected"),
    ("010M", r"leading 0, which the kernel reads as octal \(8M\)"),  # refused: never what was meant
    ("0400M", r"reads as octal \(256M\)"),
    ("256X", "unrecognized 'X'"),
    ("08M", "unrecognized '8M'"),                          # 8 is not an octal digit
    ("256M@", "offset after '@'"),
    ("256M,high@16M", "unrecognized"),
    ("1G-1G:256M", "range end 1G <= start 1G"),
    ("1G:256M", "'-' expected"),
    ("1G-2G256M", "unrecognized '-2G256M'"),           # no colon: the simple form, as the kernel reads it
    ("1G-2G256M:1M", "':' expected"),
    ("1G-2G:", "a size: a size such as 256M expected"),
    ("1G-2G:256M;", "unrecognized ';'"),
    ("0M", "size is zero"),
    ("0-:0M", "size is zero"),
    ("16777216T", "does not fit in 64 bits"),
])
def test_grammar_refuses(text, message):
    with pytest.raises(CheckFailed, match=message) as e:
        B.parse_crashkernel(text)
    assert "use size[@offset]" in str(e.value) and "\n" not in str(e.value)


@given(st.integers(1, 4095), st.sampled_from(["", "K", "M", "G", "k", "m", "g"]))
def test_any_decimal_size_parses_to_its_value(n, unit):
    ck = B.parse_crashkernel(f"{n}{unit}")
    assert ck.size == n << {"": 0, "k": 10, "m": 20, "g": 30}[unit.lower()]


def test_warnings_for_traps():
    assert B.crashkernel_warnings(B.parse_crashkernel("256M")) == []
    small = B.crashkernel_warnings(B.parse_crashkernel("64M"))
    assert len(small) == 1 and "64M is below 96M" in small[0]
    ranges = B.crashkernel_warnings(B.parse_crashkernel("2G-64G:256M,64G-:512M"))
    assert len(ranges) == 1 and "less than 2G" in ranges[0]


def entries(**kw):
    return B.BootEntries.for_release("6.1.192-3.kdump", kw.pop("crashkernel", "256M"), **kw)


def test_entries_come_from_configs_boot_toml():
    e = entries()
    assert e.title == "Linux 6.1.192-3.kdump (kdump pipeline)"
    assert e.dropin_name == "zz-kdump-pipeline.cfg" and e.args == "crashkernel=256M"
    assert sorted([e.dropin_name, "kdump-tools.cfg"])[-1] == e.dropin_name   # sourced after it


def test_entries_refuse_bad_settings(tmp_path):
    good = (B.CONFIGS / "boot.toml").read_text()
    cases = {
        "quote": (good.replace('title = "Linux {release} (kdump pipeline)"', "title = \"Linux's {release}\""),
                  "title must not contain any of"),
        "name": (good.replace('name = "zz-kdump-pipeline.cfg"', 'name = "zz kdump"'), "plain \\*.cfg"),
        "missing": (good.replace("[bls]", "[blx]"), "unusable boot settings"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / f"{name}.toml").write_text(text)
        with pytest.raises(BadInput, match=message):
            B.BootEntries.for_release("6.1.192-kdump", "256M", tmp_path / f"{name}.toml")
    with pytest.raises(CheckFailed, match="RHEL 6-8"):
        entries(crashkernel="auto")


def test_rendered_entries_carry_release_and_crashkernel():
    e = entries()
    assert B.parse_keyed(B.bls_entry(e)) == [
        ("title", e.title), ("version", "6.1.192-3.kdump"), ("linux", "/vmlinuz-6.1.192-3.kdump"),
        ("initrd", "/initramfs-6.1.192-3.kdump.img"), ("options", "$kernelopts crashkernel=256M")]
    stanza = B.parse_keyed(B.grub_conf(e))
    assert [k for k, _ in stanza] == ["title", "root", "kernel", "initrd"]
    assert dict(stanza)["kernel"].startswith("/vmlinuz-6.1.192-3.kdump ro ")
    assert dict(stanza)["kernel"].endswith(" crashkernel=256M")


@pytest.mark.parametrize("linux, default, expected", [
    ("", "quiet", "quiet crashkernel=256M"),
    ("ro crashkernel=512M console=ttyS0", "quiet", "ro console=ttyS0 quiet crashkernel=256M"),
    ("crashkernel=1G", "", "crashkernel=256M"),
])
def test_dropin_leaves_exactly_ours_after_kdump_tools(linux, default, expected):
    # kdump-tools' own drop-in (crashkernel=384M-:128M) is sourced first, as grub-mkconfig does.
    assert B.dropin_cmdline(entries(), linux, default) == expected


def test_keyed_check_catches_unknown_keys_and_wrong_values():
    e = entries()
    ok = {"title": e.title, "version": e.release, "linux": f"/vmlinuz-{e.release}"}
    B._check_keyed("BLS entry", B.bls_entry(e), B.BLS_KEYS, e, "options", ok)
    with pytest.raises(CheckFailed, match="unknown key.*kernel"):
        B._check_keyed("BLS entry", B.bls_entry(e) + "kernel /x\n", B.BLS_KEYS, e, "options", ok)
    with pytest.raises(CheckFailed, match="expected one `version 6.1.192-4.kdump`"):
        B._check_keyed("BLS entry", B.bls_entry(e), B.BLS_KEYS, e, "options",
                       {**ok, "version": "6.1.192-4.kdump"})
    twice = B.bls_entry(e).replace("crashkernel=256M", "crashkernel=256M crashkernel=1G")
    with pytest.raises(CheckFailed, match="exactly crashkernel=256M"):
        B._check_keyed("BLS entry", twice, B.BLS_KEYS, e, "options", ok)
