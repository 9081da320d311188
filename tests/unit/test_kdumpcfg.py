"""The kdump settings model: loading, the lint that refuses bad settings, values per family."""
import re
from dataclasses import replace

import pytest

from kbuild.package import kdumpcfg as K
from kbuild.core.errors import BadInput, CheckFailed
from kbuild.package.render import render

DEFAULTS = K.load()


def errors(**changes) -> tuple[str, ...]:
    return K.lint(replace(DEFAULTS, **changes)).errors


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
    (tmp_path / "typo.toml").write_text(base + 'failure_acton = "halt"\n')
    with pytest.raises(BadInput, match="unknown kdump setting.*failure_acton"):
        K.load(tmp_path / "typo.toml")
    (tmp_path / "short.toml").write_text('path = "/var/crash"\n')
    with pytest.raises(BadInput, match="missing kdump setting.*core_collector.*crashkernel"):
        K.load(tmp_path / "short.toml")
    (tmp_path / "int.toml").write_text(base.replace('crashkernel = "256M"', "crashkernel = 256"))
    with pytest.raises(BadInput, match="crashkernel must be strings"):
        K.load(tmp_path / "int.toml")


def test_load_keeps_optional_keys_optional_and_applies_overrides(tmp_path):
    text = "\n".join(line for line in (K.CONFIGS / "kdump.toml").read_text().splitlines()
                     if not line.startswith(("kdump_conf_target", "kdump_tools_append")))
    (tmp_path / "min.toml").write_text(text)
    s = K.load(tmp_path / "min.toml", crashkernel="512M", failure_action=None)
    assert s.kdump_conf_target == "modern" and s.crashkernel == "512M" and s.failure_action == "reboot"
    assert s.kdump_tools_append == "systemd.unit=kdump-tools-dump.service"


@pytest.mark.parametrize("changes, message", [
    ({"path": "var/crash"}, "relative"),
    ({"path": "/var/my crash"}, "whitespace"),
    ({"core_collector": "makedumpfile -c -d 32"}, r"-d 32 is outside 0-31"),
    ({"core_collector": "makedumpfile -c -d 31,40"}, r"-d 31,40 is outside 0-31"),
    ({"core_collector": "makedumpfile -c -l -d 31"}, r"conflicting compression flags -c \(zlib\), -l \(lzo\)"),
    ({"core_collector": "makedumpfile -cz -d 31"}, r"conflicting compression flags -c .*-z \(zstd\)"),
    ({"core_collector": "makedumpfile -p -d 31 -c"}, "conflicting compression"),
    ({"core_collector": "cp"}, "must run makedumpfile"),
    ({"core_collector": "makedumpfile -q -d 31"}, "unknown makedumpfile option -q"),
    ({"core_collector": "makedumpfile --levels 31"}, "unknown makedumpfile option --levels"),
    ({"core_collector": "makedumpfile -d 31 /proc/vmcore"}, "unexpected argument '/proc/vmcore'"),
    ({"core_collector": "makedumpfile -c -d"}, "-d needs a value"),
    ({"core_collector": "makedumpfile -c -d 31; rm -rf /"}, "shell operators"),
    ({"failure_action": "explode"}, "failure_action 'explode' is unknown to `failure_action`"),
    ({"failure_action": "mount_root_run_init"}, "unknown to `failure_action` \\(modern\\)"),
    ({"failure_action": "dump_to_rootfs", "kdump_conf_target": "rhel6"}, "unknown to `default` \\(rhel6\\)"),
    ({"failure_action": "dump_to_rootfs"}, "no Debian kdump-tools equivalent"),
    ({"kdump_conf_target": "rhel5"}, "kdump_conf_target 'rhel5'"),
    ({"crashkernel": "auto"}, "RHEL 6-8 kernel patch"),
    ({"crashkernel": "256Q"}, "unrecognized 'Q'"),
    ({"crashkernel": "1G-512M:128M"}, "range end 512M <= start 1G"),
    ({"crashkernel": "2G:256M"}, "'-' expected"),
    ({"crashkernel": "256M,medium"}, "unrecognized"),
    ({"cmdline_append": "irqpoll {cpus} reset_devices"}, "only the {cpu_limit} placeholder"),
    ({"cmdline_append": "irqpoll reset_devices"}, "has no {cpu_limit}"),
    ({"cmdline_append": "irqpoll {cpu_limit} crashkernel=64M"}, "belongs to the production kernel"),
    ({"cmdline_append": 'irqpoll {cpu_limit} x="y"'}, "quotes"),
    ({"kdump_tools_append": "systemd.unit=$UNIT"}, "quotes, '\\$'"),
])
def test_lint_refuses(changes, message):
    found = errors(**changes)
    assert any(re.search(message, e) for e in found), found


def test_lint_accepts_legal_variants():
    for changes in ({"core_collector": "makedumpfile -l --message-level=7 -d31 -F"},
                    {"core_collector": "/usr/sbin/makedumpfile -cd 31,11"},
                    {"core_collector": "makedumpfile -c -c -d 31"},          # the same flag twice
                    {"failure_action": "shell"},
                    {"cmdline_append": "irqpoll nr_cpus=1 reset_devices"},   # literal, matches policy
                    {"crashkernel": "1G-4G:192M,4G-:512M"},
                    {"crashkernel": "512M,high"}):
        assert errors(**changes) == (), changes


def test_deb_only_rule_is_skipped_for_rpm_only():
    for s in (replace(DEFAULTS, failure_action="dump_to_rootfs"),
              replace(DEFAULTS, failure_action="mount_root_run_init", kdump_conf_target="rhel6")):
        assert K.lint(s, formats={"rpm"}).ok
        assert "no Debian kdump-tools equivalent" in K.lint(s, formats={"deb"}).errors[0]


def test_warnings_do_not_block():
    lint = K.lint(replace(DEFAULTS, crashkernel="2G-:256M", core_collector="makedumpfile -c"))
    assert lint.ok
    assert any("reserves nothing on machines with less than 2G" in w for w in lint.warnings)
    assert any("no -d" in w for w in lint.warnings)


def test_check_raises_one_line_with_a_count():
    s = replace(DEFAULTS, path="crash", crashkernel="auto")
    with pytest.raises(CheckFailed) as e:
        K.check(s)
    assert str(e.value).startswith("kdump settings: path 'crash' is relative")
    assert "(and 1 more)" in str(e.value) and "\n" not in str(e.value)


def test_kdump_conf_values_in_both_spellings():
    assert K.kdump_conf_values(DEFAULTS) == {
        "path": "/var/crash", "core_collector": "makedumpfile -c --message-level 1 -d 31",
        "failure_action": "reboot"}
    rhel6 = K.kdump_conf_values(replace(DEFAULTS, kdump_conf_target="rhel6"))
    assert rhel6["default"] == "reboot" and "failure_action" not in rhel6


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
    assert 'KDUMP_CMDLINE_APPEND="irqpoll maxcpus=1 reset_devices panic=10 systemd.unit=kdump-tools-dump.service"' in text
    assert 'KDUMP_FAIL_CMD="reboot -f"' in text and "USE_KDUMP=1" in text


def test_capture_append_without_panic_timeout_warns():
    """A capture kernel that runs out of memory hangs for good without panic= (install-test proves it)."""
    for append in ("irqpoll {cpu_limit} reset_devices", "irqpoll {cpu_limit} panic=0"):
        assert any("panic=" in w for w in K.lint(replace(DEFAULTS, cmdline_append=append)).warnings), append
    for good in (DEFAULTS, replace(DEFAULTS, cmdline_append="irqpoll {cpu_limit} panic=-1")):   # -1: at once
        assert not any("panic=" in w for w in K.lint(good).warnings)
