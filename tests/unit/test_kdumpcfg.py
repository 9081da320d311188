"""The kdump settings model: strict loading, every value in its target's grammar (exit 2),
the lint of what depends on the build, and the values each family gets."""
import re
from dataclasses import replace

import pytest

from kbuild.package import kdumpcfg as K
from kbuild.core.errors import BadInput
from kbuild.package.render import render

DEFAULTS = K.load()


def refusal(**changes) -> BadInput:
    with pytest.raises(BadInput) as e:
        replace(DEFAULTS, **changes)
    assert e.value.exit_code == 2 and "\n" not in str(e.value) and "\r" not in str(e.value)
    return e.value


def test_defaults_are_the_tutorials_and_lint_clean():
    assert DEFAULTS.path == "/var/crash"
    assert DEFAULTS.core_collector == "makedumpfile -c --message-level 1 -d 31"
    assert DEFAULTS.failure_action == "reboot"
    assert DEFAULTS.capture_cmdline("nr_cpus=1") == "irqpoll nr_cpus=1 reset_devices panic=10"
    assert DEFAULTS.capture_cmdline("maxcpus=1") == "irqpoll maxcpus=1 reset_devices panic=10"
    lint = K.lint(DEFAULTS)
    assert lint.ok and lint.errors == () and lint.warnings == ()


def test_load_refuses_unknown_missing_and_non_string_keys(tmp_path):
    base = (K.CONFIGS / "kdump.toml").read_text()
    for name, text, message in (
            ("typo", base + 'failure_acton = "halt"\n', r"typo.toml: unknown key\(s\) failure_acton"),
            ("short", 'path = "/var/crash"\n', r"short.toml: missing key\(s\) cmdline_append, core_collector, failure_action"),
            ("int", base + "crashkernel = 256\n",
             "int.toml: crashkernel: expected str, got 256"),
            ("bad", base.replace('path = "/var/crash"', 'path = "/var/crash*"'),
             r"bad.toml: path '/var/crash\*': use an absolute path")):
        (tmp_path / f"{name}.toml").write_text(text)
        with pytest.raises(BadInput, match=message) as e:
            K.load(tmp_path / f"{name}.toml")
        assert e.value.exit_code == 2


def test_load_keeps_optional_keys_optional_and_applies_overrides(tmp_path):
    text = "\n".join(line for line in (K.CONFIGS / "kdump.toml").read_text().splitlines()
                     if not line.startswith(("kdump_conf_target", "kdump_tools_append")))
    (tmp_path / "min.toml").write_text(text)
    s = K.load(tmp_path / "min.toml", crashkernel="512M", failure_action=None)
    assert s.kdump_conf_target == "modern" and s.crashkernel == "512M" and s.failure_action == "reboot"
    assert s.kdump_tools_append == "systemd.unit=kdump-tools-dump.service"
    with pytest.raises(BadInput, match=r"min.toml \(with overrides\): crashkernel=1E"):
        K.load(tmp_path / "min.toml", crashkernel="1E")


@pytest.mark.parametrize("changes, message", [
    ({"path": "var/crash"}, "relative"),
    ({"path": "/var/my crash"}, "use an absolute path of letters"),
    ({"path": "/var/crash/\0x"}, r"control character '\\x00'"),                 # NUL
    ({"path": "/var/../../etc"}, r"no '\.' or '\.\.' parts"),
    ({"path": "/var/crash/."}, "absolute path"),
    ({"path": "/"}, "absolute path"),
    ({"path": "//var/crash"}, "absolute path"),
    ({"path": "/var/crash/"}, "no trailing '/'"),
    ({"path": "/var/crash*"}, "absolute path"),
    ({"path": "/var/crash#x"}, "absolute path"),
    ({"path": "/var/crash/%(id)"}, "absolute path"),
    ({"path": "/var/crash/%{lua:os.execute('id')}"}, "absolute path"),
    ({"core_collector": "makedumpfile -c -d 32"}, r"-d 32 is outside 0-31"),
    ({"core_collector": "makedumpfile -c -d 31,40"}, r"-d 31,40 is outside 0-31"),
    ({"core_collector": "makedumpfile -c -l -d 31"}, r"conflicting compression flags -c \(zlib\), -l \(lzo\)"),
    ({"core_collector": "makedumpfile -cz -d 31"}, r"conflicting compression flags -c .*-z \(zstd\)"),
    ({"core_collector": "makedumpfile -p -d 31 -c"}, "conflicting compression"),
    ({"core_collector": "cp"}, "must start with 'makedumpfile' by name"),
    ({"core_collector": "/tmp/evil/makedumpfile -d 31"}, "must start with 'makedumpfile' by name"),
    ({"core_collector": "/usr/sbin/makedumpfile -cd 31"}, "by name"),
    ({"core_collector": "makedumpfile -q -d 31"}, "unknown makedumpfile option -q"),
    ({"core_collector": "makedumpfile --levels 31"}, "unknown makedumpfile option --levels"),
    ({"core_collector": "makedumpfile -d 31 /proc/vmcore"}, "unexpected argument '/proc/vmcore'"),
    ({"core_collector": "makedumpfile -c -d"}, "-d needs a value"),
    ({"core_collector": "makedumpfile -c -d 31; rm -rf /"}, r"'31;' has a character"),
    ({"core_collector": "makedumpfile -d 31 --work-dir=/var/tmp/a*b"}, r"'--work-dir=/var/tmp/a\*b' has a character"),
    ({"core_collector": "makedumpfile -d 31 --work-dir /var/tmp/../x"}, r"--work-dir '/var/tmp/\.\./x' is not an absolute path"),
    ({"core_collector": "makedumpfile -d 31 --message-level x"}, "--message-level 'x' is not a decimal number"),
    ({"core_collector": "makedumpfile  -d 31"}, "single spaces"),
    ({"core_collector": "makedumpfile -d '31'"}, "has a character"),
    ({"core_collector": "makedumpfile -d 31 %{lua:x}"}, "has a character"),
    ({"failure_action": "explode"}, "failure_action 'explode' is unknown to `failure_action`"),
    ({"failure_action": "mount_root_run_init"}, "unknown to `failure_action` \\(modern\\)"),
    ({"failure_action": "dump_to_rootfs", "kdump_conf_target": "rhel6"}, "unknown to `default` \\(rhel6\\)"),
    ({"kdump_conf_target": "rhel5"}, "kdump_conf_target 'rhel5'"),
    ({"crashkernel": "auto"}, "RHEL 6-8 kernel patch"),
    ({"crashkernel": "256Q"}, "unrecognized 'Q'"),
    ({"crashkernel": "1G-512M:128M"}, "range end 512M <= start 1G"),
    ({"crashkernel": "2G:256M"}, "'-' expected"),
    ({"crashkernel": "256M,medium"}, "unrecognized"),
    ({"crashkernel": "1E"}, "1E is above the 64G bound"),
    ({"cmdline_append": "irqpoll {cpus} reset_devices"}, r"'\{cpus\}' is not a kernel command-line parameter"),
    ({"cmdline_append": "{cpu_limit:>9000000000000000000}"}, "is not a kernel command-line parameter"),
    ({"cmdline_append": "irqpoll {cpu_limit} crashkernel=64M"}, "belongs to the production kernel"),
    ({"cmdline_append": 'irqpoll {cpu_limit} x="y"'}, "is not a kernel command-line parameter"),
    ({"cmdline_append": "irqpoll  {cpu_limit}"}, r"'' is not a kernel"),
    ({"cmdline_append": "irqpoll {cpu_limit}\treset_devices"}, r"control character '\\t'"),
    ({"kdump_tools_append": "systemd.unit=$UNIT"}, r"'systemd.unit=\$UNIT' is not a kernel"),
])
def test_settings_outside_their_grammar_are_refused_on_construction(changes, message):
    assert re.search(message, str(refusal(**changes))), str(refusal(**changes))


def test_refusal_messages_escape_the_value_like_repr():
    text = str(refusal(path="/var/cr\rash\n"))
    assert "'/var/cr\\rash\\n'" in text


def test_lint_refuses_what_depends_on_the_build_and_families():
    assert "has no {cpu_limit}" in K.lint(replace(DEFAULTS, cmdline_append="irqpoll reset_devices")).errors[0]
    s = replace(DEFAULTS, failure_action="dump_to_rootfs")
    assert "no Debian kdump-tools equivalent" in K.lint(s, formats={"deb"}).errors[0]
    assert K.lint(s, formats={"rpm"}).ok
    assert K.lint(replace(DEFAULTS, failure_action="mount_root_run_init", kdump_conf_target="rhel6"),
                  formats={"rpm"}).ok


def test_legal_variants_pass():
    for changes in ({"core_collector": "makedumpfile -l --message-level=7 -d31 -F"},
                    {"core_collector": "makedumpfile -c -c -d 31"},          # the same flag twice
                    {"core_collector": "makedumpfile -d 31 --work-dir=/var/tmp/ab -x /usr/lib/debug/vmlinux"},
                    {"path": "/var/crash/kdump-1.x_y+z"},
                    {"failure_action": "shell"},
                    {"cmdline_append": "irqpoll nr_cpus=1 reset_devices"},   # literal, matches policy
                    {"cmdline_append": "irqpoll {cpu_limit} reset_devices panic=10 console=ttyS0,115200n8"},
                    {"kdump_tools_append": ""},
                    {"crashkernel": "1G-4G:192M,4G-:512M"},
                    {"crashkernel": "512M,high"}):
        assert K.lint(replace(DEFAULTS, **changes)).errors == (), changes


def test_warnings_do_not_block():
    lint = K.lint(replace(DEFAULTS, crashkernel="2G-:256M", core_collector="makedumpfile -c"))
    assert lint.ok
    assert any("reserves nothing on machines with less than 2G" in w for w in lint.warnings)
    assert any("no -d" in w for w in lint.warnings)


def test_check_raises_exit_2_one_line_with_a_count():
    s = replace(DEFAULTS, cmdline_append="irqpoll", failure_action="dump_to_rootfs")
    with pytest.raises(BadInput) as e:
        K.check(s)
    assert str(e.value).startswith("kdump settings: failure_action 'dump_to_rootfs' has no Debian")
    assert "(and 1 more)" in str(e.value) and "\n" not in str(e.value) and e.value.exit_code == 2


def test_capture_cmdline_substitutes_the_word_without_str_format():
    s = replace(DEFAULTS, cmdline_append="irqpoll {cpu_limit} reset_devices")
    assert s.capture_cmdline("maxcpus=1") == "irqpoll maxcpus=1 reset_devices"
    with pytest.raises(BadInput, match="cpu_limit_arg 'x {y}'"):
        s.capture_cmdline("x {y}")


def test_kdump_conf_values_in_both_spellings():
    assert K.kdump_conf_values(DEFAULTS) == {
        "path": "/var/crash", "core_collector": "makedumpfile -c --message-level 1 -d 31",
        "failure_action": "reboot"}
    rhel6 = K.kdump_conf_values(replace(DEFAULTS, kdump_conf_target="rhel6"))
    assert rhel6["default"] == "reboot" and "failure_action" not in rhel6


def test_both_families_get_the_same_makedumpfile_words():
    s = replace(DEFAULTS, core_collector="makedumpfile -cd31 --work-dir=/var/tmp/ab -x /v")
    conf = K.kdump_conf_values(s)["core_collector"].split(" ")
    args = K.kdump_tools_values(s, "nr_cpus=1")["MAKEDUMP_ARGS"].split(" ")
    assert conf == ["makedumpfile", *args] == s.core_collector.split(" ")


def test_kdump_conf_template_renders_the_target_spelling():
    for target, line in (("modern", "failure_action reboot"), ("rhel6", "default reboot")):
        s = replace(DEFAULTS, kdump_conf_target=target)
        text = render("kdump/kdump.conf.j2", package="p", target=target,
                      key=K.CONF_TARGETS[target][0], values=K.kdump_conf_values(s))
        body = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
        assert body == ["path /var/crash", "core_collector makedumpfile -c --message-level 1 -d 31", line]


def test_kdump_tools_values():
    v = K.kdump_tools_values(DEFAULTS, "maxcpus=1")
    assert v == {"KDUMP_COREDIR": "/var/crash", "MAKEDUMP_ARGS": "-c --message-level 1 -d 31",
                 "KDUMP_FAIL_CMD": "reboot -f",
                 "KDUMP_CMDLINE_APPEND": "irqpoll maxcpus=1 reset_devices panic=10 systemd.unit=kdump-tools-dump.service"}
    text = render("kdump/kdump-tools.j2", package="p", v=v)
    assert "KDUMP_CMDLINE_APPEND='irqpoll maxcpus=1 reset_devices panic=10 systemd.unit=kdump-tools-dump.service'" in text
    assert "KDUMP_FAIL_CMD='reboot -f'" in text and "MAKEDUMP_ARGS='-c --message-level 1 -d 31'" in text
    assert "KDUMP_COREDIR=/var/crash" in text and "USE_KDUMP=1" in text


def test_capture_append_without_panic_timeout_warns():
    """A capture kernel that runs out of memory hangs for good without panic= (install-test proves it)."""
    for append in ("irqpoll {cpu_limit} reset_devices", "irqpoll {cpu_limit} panic=0"):
        assert any("panic=" in w for w in K.lint(replace(DEFAULTS, cmdline_append=append)).warnings), append
    for good in (DEFAULTS, replace(DEFAULTS, cmdline_append="irqpoll {cpu_limit} panic=-1")):   # -1: at once
        assert not any("panic=" in w for w in K.lint(good).warnings)
