"""Shared by the hostile-settings tests: settings files from values, and the real-tool readers
that say what each output means to its consumer (sh, kdumpctl's reader, rpmspec, GRUB checks)."""
from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path

from kbuild.core.errors import BadInput
from kbuild.package import bootcfg, deb, kdumpcfg, rpm
from kbuild.package.payload import Payload
from kbuild.package.render import render, sh

# the shipped settings leave crashkernel to the build's measurement; the corpus sets one explicitly
DEFAULT_KDUMP = {**dataclasses.asdict(kdumpcfg.load()), "crashkernel": kdumpcfg.DEFAULT_CRASHKERNEL}
DEFAULT_BOOT = {"title": "Linux {release} (kdump pipeline)", "grub_dropin.name": "zz-kdump-pipeline.cfg",
                "legacy.root": "(hd0,0)", "legacy.options": "ro root=/dev/mapper/vg_root-lv_root rhgb quiet",
                "bls.options": "$kernelopts"}
# kdumpctl (kdump-utils kdump_read_conf): strip `#...`, trailing and leading blanks, then
# `read -r config_opt config_val`.
KDUMPCTL_READ = r'''sed -n -e "s/#.*//;s/\s*$//;s/^\s*//;s/\(\S\+\)\s*\(.*\)/\1 \2/p" "$1" |
while read -r config_opt config_val; do printf '%s\0%s\0' "$config_opt" "$config_val"; done'''
# kdump-config: `. /etc/default/kdump-tools`, later `makedumpfile $MAKEDUMP_ARGS ...` unquoted.
KDUMP_CONFIG_READ = r'''. "$1"
printf '%s\0' "$KDUMP_COREDIR" "$KDUMP_FAIL_CMD" "$KDUMP_CMDLINE_APPEND"
set -- $MAKEDUMP_ARGS
printf '%s\0' "$@"'''


def toml_string(value: str) -> str:
    """A TOML basic string holding exactly `value` (control characters as \\uXXXX)."""
    out = []
    for c in value:
        if c in '"\\':
            out.append("\\" + c)
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def kdump_toml(file: Path, /, **changes: str) -> Path:
    file.write_text("".join(f"{k} = {toml_string(v)}\n" for k, v in {**DEFAULT_KDUMP, **changes}.items()
                            if v is not None))
    return file


def boot_toml(path: Path, /, **changes: str) -> Path:
    values = {**DEFAULT_BOOT, **{k.replace("__", "."): v for k, v in changes.items()}}
    text = f"title = {toml_string(values['title'])}\n"
    for table in ("grub_dropin", "legacy", "bls"):
        text += f"[{table}]\n" + "".join(f"{k.split('.', 1)[1]} = {toml_string(v)}\n"
                                         for k, v in values.items() if k.startswith(table + "."))
    path.write_text(text)
    return path


def run_sh(script: str, *args: str, cwd: Path | None = None) -> list[str]:
    """Run `script` in dash with `args`; the NUL-separated fields it prints."""
    res = subprocess.run(["sh", "-c", script, "sh", *args], capture_output=True, cwd=cwd,
                         env={"PATH": os.environ["PATH"], "LC_ALL": "C"})
    assert res.returncode == 0, res.stderr
    return res.stdout.decode().split("\0")[:-1]


def assert_refused(e: BadInput) -> None:
    """Bad settings: exit 2 and one line, with the value escaped (no raw control character)."""
    msg = str(e)
    assert e.exit_code == 2, msg
    assert all(c.isprintable() for c in msg), repr(msg)


def check_kdump_outputs(k: kdumpcfg.KdumpSettings, p: Payload, boot: bootcfg.BootEntries, work: Path) -> None:
    """Every output of the kdump settings reads back, through the consumer's own parsing, as
    the literal values of the model (the {cpu_limit} word replaced)."""
    work.mkdir(parents=True, exist_ok=True)
    args = list(k.collector().args)
    append = " ".join(x for x in (k.capture_cmdline(p.cpu_limit_arg),
                                  kdumpcfg._substitute(k.kdump_tools_append, p.cpu_limit_arg)) if x)
    # DEB: /etc/default/kdump-tools, sourced; MAKEDUMP_ARGS split and globbed as kdump-config does,
    # in a folder where a glob would match something.
    tools = work / "kdump-tools"
    tools.write_text(deb.kdump_tools_defaults(k, p.cpu_limit_arg, "kdump-pipeline-config"))
    globs = work / "glob"
    globs.mkdir(exist_ok=True)
    for name in ("a", "ab", "31", "x.cfg"):
        (globs / name).write_text("")
    got = run_sh(KDUMP_CONFIG_READ, str(tools), cwd=globs)
    assert got == [k.path, kdumpcfg.KDUMP_TOOLS_FAIL_CMD.get(k.failure_action, ""), append, *args], got
    # RPM: /etc/kdump.conf as kdumpctl reads it; core_collector runs unquoted, like MAKEDUMP_ARGS.
    conf = work / "kdump.conf"
    conf.write_text(rpm.kdump_conf(k))
    key = kdumpcfg.CONF_TARGETS[k.kdump_conf_target][0]
    pairs = run_sh(KDUMPCTL_READ, str(conf))
    assert pairs == ["path", k.path, "core_collector", " ".join(["makedumpfile", *args]),
                     key, k.failure_action], pairs
    assert run_sh('set -- $1; printf "%s\\0" "$@"', pairs[3], cwd=globs) == ["makedumpfile", *args]
    # The spec: rpmspec -P expands every macro; our text must come out exactly as rendered.
    check_spec(p, k, boot, work)


def check_spec(p: Payload, k: kdumpcfg.KdumpSettings, boot: bootcfg.BootEntries, work: Path) -> str:
    ctx = rpm.context(p, k, boot)
    work.mkdir(parents=True, exist_ok=True)
    spec = work / "kernel.spec"
    spec.write_text(rpm.spec_file(p, ctx, Path("/nonexistent/payload"), []))
    res = subprocess.run(["rpmspec", "-P", str(spec)], capture_output=True, text=True,
                         env={"PATH": os.environ["PATH"], "HOME": str(work), "LC_ALL": "C"})
    assert res.returncode == 0, res.stderr
    for name in rpm.SCRIPTLETS:   # each scriptlet, as the shell will see it, unchanged by rpm
        assert render(f"rpm/{name}.j2", **ctx).rstrip("\n") in res.stdout, name
    for line in (f"Version: {p.rpm_version}", f"Release: {p.rpm_release}",
                 f"Provides: kernel-uname-r = {p.release}"):
        assert line in res.stdout.splitlines(), line
    return res.stdout


def check_boot_outputs(e: bootcfg.BootEntries, work: Path) -> None:
    """The entries read back literally: keyed files, the sourced drop-in, the real validators."""
    assert "grub-script-check: ok" in bootcfg.validate(e, work / "validate")
    assert bootcfg.dropin_cmdline(e) == f"quiet {e.args}"
    bls = bootcfg.parse_keyed(bootcfg.bls_entry(e))
    assert dict(bls)["title"] == e.title and dict(bls)["options"] == f"{e.bls_options} {e.args}".strip()
    # blscfg pastes `options` into a GRUB script: only words, `$kernelopts` the one variable.
    for word in dict(bls)["options"].split(" "):
        assert word == "$kernelopts" or not set(word) & set(";|&<>`'\"\\${}\n#"), word
    legacy = dict(bootcfg.parse_keyed(bootcfg.grub_conf(e)))
    assert legacy["title"] == e.title and legacy["root"] == e.legacy_root
    assert legacy["kernel"] == " ".join(x for x in (f"/vmlinuz-{e.release}", e.legacy_options, e.args) if x)
    # grubby --title in %posttrans: the quoted word reads back as the title.
    assert run_sh(f"printf '%s\\0' {sh(e.title)}") == [e.title]
