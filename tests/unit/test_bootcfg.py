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
    ("64G", 64 * G, (), None, None),
    ("4P-:1G", None, ((1 << 52, None, G),), None, None),
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
    ("1E", r"1E is above the 64G bound kbuild accepts"),          # a typo for 1G
    ("65G", "above the 64G bound"),
    ("1G-2G:128G", "128G is above the 64G bound"),
    ("256M@8P", r"8P is above the 4P bound kbuild accepts for a RAM size or an offset"),
    ("5P-:256M", "above the 4P bound"),
])
def test_grammar_refuses(text, message):
    with pytest.raises(CheckFailed, match=message) as e:
        B.parse_crashkernel(text)
    assert "use size[@offset]" in str(e.value) and "\n" not in str(e.value)


@given(st.integers(1, 64), st.sampled_from(["", "K", "M", "G", "k", "m", "g"]))
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


@pytest.mark.parametrize("old, new, message", [
    ('title = "Linux {release} (kdump pipeline)"', "title = \"Linux's {release}\"",
     r"boot.toml: title \"Linux's \{release\}\": use words of letters"),
    ('title = "Linux {release} (kdump pipeline)"', 'title = "Linux {cpu_limit:>9000000000000000000}"',
     r"title 'Linux \{cpu_limit:>9000000000000000000\}': use words"),   # no str.format
    ('title = "Linux {release} (kdump pipeline)"', 'title = "Linux\\rX"', r"title 'Linux\\rX': control character '\\r'"),
    ('name = "zz-kdump-pipeline.cfg"', 'name = "zz kdump"', r"grub_dropin: name 'zz kdump' must be a plain \*.cfg"),
    ("[bls]", "[blx]", "unknown key.*blx"),
    ('root = "(hd0,0)"', 'root = "(hd0,0)\\nroot (hd9,9)"', r"legacy: root '\(hd0,0\)\\nroot \(hd9,9\)': control"),
    ('root = "(hd0,0)"', 'root = "/dev/sda1"', r"root '/dev/sda1': use GRUB legacy device syntax"),
    ('options = "$kernelopts"', 'options = "$kernelopts; insmod evil; echo injected"',
     r"bls: options .*'\$kernelopts;' is not a kernel command-line parameter"),
    ('options = "$kernelopts"', 'options = "$kernelopts ${evil}"', r"'\$\{evil\}' is not a kernel"),
    ('options = "$kernelopts"', 'options = "$kernelopts crashkernel=1G"', "crashkernel= comes from configs/kdump.toml"),
    ('options = "ro root=/dev/mapper/vg_root-lv_root rhgb quiet"', 'options = "ro $kernelopts"',
     r"legacy: options 'ro \$kernelopts'"),
])
def test_entries_refuse_bad_settings(tmp_path, old, new, message):
    good = (B.CONFIGS / "boot.toml").read_text()
    assert old in good
    (tmp_path / "boot.toml").write_text(good.replace(old, new))
    with pytest.raises(BadInput, match=message) as e:
        B.BootEntries.for_release("6.1.192-kdump", "256M", tmp_path / "boot.toml")
    assert e.value.exit_code == 2 and "\n" not in str(e.value) and "\r" not in str(e.value)


def test_entries_refuse_bad_crashkernel_and_legal_variants_pass(tmp_path):
    with pytest.raises(BadInput, match="RHEL 6-8"):
        entries(crashkernel="auto")
    good = (B.CONFIGS / "boot.toml").read_text()
    (tmp_path / "boot.toml").write_text(good.replace('root = "(hd0,0)"', 'root = "(hd1,2,a)"').replace(
        'options = "$kernelopts"', 'options = "$kernelopts console=ttyS0,115200n8 rd.lvm.lv=vg/root"'))
    e = B.BootEntries.for_release("6.1.192-kdump", "256M", tmp_path / "boot.toml")
    assert e.legacy_root == "(hd1,2,a)" and e.bls_options.endswith("rd.lvm.lv=vg/root")


def test_rendered_entries_carry_release_and_crashkernel():
    e = entries()
    assert B.parse_keyed(B.bls_entry(e)) == [
        ("title", e.title), ("version", "6.1.192-3.kdump"), ("architecture", "x64"),
        ("linux", "/vmlinuz-6.1.192-3.kdump"),
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


def test_arm64_entries_are_efi_only(tmp_path):
    """arm64: the BLS entry names EFI's aa64 (loaders hide it elsewhere) and no legacy GRUB stanza is
    written or checked; the GRUB 2 drop-in and menuentry are the same as on x86 and pass the real tools."""
    from kbuild.core import arch
    e = B.BootEntries.for_release("6.1.192-arm64.kdump", "256M", arch=arch.get("arm64"))
    assert ("architecture", "aa64") in B.parse_keyed(B.bls_entry(e))
    files = {p.relative_to(tmp_path / "boot").as_posix() for p in B.write(e, tmp_path / "boot")}
    assert "grub.conf" not in files and "loader/entries/6.1.192-arm64.kdump.conf" in files
    assert "no grub.conf" in B.validate(e, tmp_path / "check") and "architecture aa64" in B.validate(e, tmp_path / "c2")
