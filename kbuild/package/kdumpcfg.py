"""The kdump settings model (configs/kdump.toml): one source for every place kdump is configured.

`load` reads it, `lint` finds what a distro tool would choke on at crash time (when it is too
late), and `render_kdump_conf` / `render_kdump_tools` write it in each family's spelling:
/etc/kdump.conf (kexec-tools, kdump-utils) and /etc/default/kdump-tools (Debian kdump-tools).
"""
from __future__ import annotations

import re
import shlex
import tomllib
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path

from kbuild.core import makedumpfile
from kbuild.core.errors import BadInput, CheckFailed
from kbuild.core.paths import CONFIGS

# /etc/kdump.conf: the key that names the failure action, and the actions each spelling knows
# (kdump.conf(5): RHEL 6 `default`, kexec-tools 2.0.14+ / kdump-utils `failure_action`).
CONF_TARGETS = {
    "rhel6": ("default", ("reboot", "halt", "poweroff", "shell", "mount_root_run_init")),
    "modern": ("failure_action", ("reboot", "halt", "poweroff", "shell", "dump_to_rootfs")),
}
# Debian kdump-tools runs `$KDUMP_FAIL_CMD` (word-split, not eval'd) when saving the dump fails.
# Its capture kernel boots the real root, so the rootfs actions have no equivalent there.
KDUMP_TOOLS_FAIL_CMD = {
    "reboot": "reboot -f",
    "halt": "halt -f",
    "poweroff": "poweroff -f",
    "shell": "systemctl --no-block emergency",
}
_UNSAFE = re.compile(r"""["'`$\\\n;|&<>]""")   # cannot sit inside a "..." shell/systemd value


@dataclass(frozen=True)
class KdumpSettings:
    path: str
    core_collector: str
    failure_action: str
    cmdline_append: str
    crashkernel: str
    kdump_conf_target: str = "modern"
    # Debian only: kdump-tools' capture kernel boots straight into its dump unit.
    kdump_tools_append: str = "systemd.unit=kdump-tools-dump.service"

    def capture_cmdline(self, cpu_limit_arg: str) -> str:
        """The capture kernel's extra arguments, with the release policy's CPU limit filled in."""
        return self.cmdline_append.format(cpu_limit=cpu_limit_arg)


@dataclass(frozen=True)
class KdumpLint:
    """Errors refuse packaging; warnings are printed (e.g. a reservation that is likely too small)."""

    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.errors


def load(path: Path | None = None, **overrides) -> KdumpSettings:
    """Read the model; unknown keys are refused so a typo never silently falls back to a default."""
    path = path or CONFIGS / "kdump.toml"
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise BadInput(f"{path}: cannot read kdump settings ({e})") from None
    known = {f.name for f in fields(KdumpSettings)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise BadInput(f"{path}: unknown kdump setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    missing = sorted(f.name for f in fields(KdumpSettings)
                     if f.default is MISSING and f.name not in data)
    if missing:
        raise BadInput(f"{path}: missing kdump setting(s) {', '.join(missing)}")
    bad = sorted(k for k, v in data.items() if not isinstance(v, str))
    if bad:
        raise BadInput(f"{path}: kdump setting(s) {', '.join(bad)} must be strings")
    settings = KdumpSettings(**data)
    return replace(settings, **{k: v for k, v in overrides.items() if v is not None})


def lint(s: KdumpSettings, cpu_limit_arg: str = "nr_cpus=1",
         formats: tuple[str, ...] | set[str] = ("deb", "rpm")) -> KdumpLint:
    """Every problem a distro tool would hit with these settings, found before packaging."""
    from kbuild.package.bootcfg import crashkernel_warnings, parse_crashkernel
    errors: list[str] = []
    warnings: list[str] = []

    def attempt(fn, *args):
        try:
            return fn(*args)
        except CheckFailed as e:
            errors.append(str(e))
            return None
    if not s.path.startswith("/"):
        errors.append(f"path {s.path!r} is relative; kdump needs an absolute folder such as /var/crash")
    elif _UNSAFE.search(s.path) or any(c.isspace() for c in s.path):
        errors.append(f"path {s.path!r}: whitespace and shell metacharacters are not allowed")
    collector = attempt(makedumpfile.parse, s.core_collector)
    if _UNSAFE.search(s.core_collector):
        errors.append(f"core_collector {s.core_collector!r}: quotes, '$', '\\' and shell "
                      "operators are not allowed (it is written into shell variables)")
    if collector and len(set(collector.compression)) > 1:
        names = ", ".join(f"{c} ({makedumpfile.COMPRESSION[c]})" for c in dict.fromkeys(collector.compression))
        errors.append(f"core_collector: conflicting compression flags {names}; keep one")
    if collector and not collector.dump_levels:
        warnings.append("core_collector has no -d: makedumpfile copies every page (the dump can "
                        "be as large as RAM); the tutorial uses -d 31")
    if s.kdump_conf_target not in CONF_TARGETS:
        errors.append(f"kdump_conf_target {s.kdump_conf_target!r}: use one of {', '.join(CONF_TARGETS)}")
    else:
        key, actions = CONF_TARGETS[s.kdump_conf_target]
        if s.failure_action not in actions:
            errors.append(f"failure_action {s.failure_action!r} is unknown to `{key}` "
                          f"({s.kdump_conf_target}); use one of {', '.join(actions)}")
        elif "deb" in formats and s.failure_action not in KDUMP_TOOLS_FAIL_CMD:
            errors.append(f"failure_action {s.failure_action!r} has no Debian kdump-tools "
                          f"equivalent; use one of {', '.join(KDUMP_TOOLS_FAIL_CMD)}")
    ck = attempt(parse_crashkernel, s.crashkernel)
    if ck:
        warnings.extend(crashkernel_warnings(ck))
    for name in ("cmdline_append", "kdump_tools_append"):
        value = getattr(s, name)
        try:
            text = value.format(cpu_limit=cpu_limit_arg)
        except (KeyError, IndexError, ValueError) as e:
            errors.append(f"{name} {value!r}: only the {{cpu_limit}} placeholder is known ({e})")
            continue
        if _UNSAFE.search(text):
            errors.append(f"{name} {value!r}: quotes, '$', '\\' and shell operators are not allowed")
        if any(w.startswith("crashkernel=") for w in text.split()):
            errors.append(f"{name}: crashkernel= belongs to the production kernel, not the capture one")
    if "{cpu_limit}" not in s.cmdline_append and cpu_limit_arg not in s.cmdline_append.split():
        errors.append(f"cmdline_append {s.cmdline_append!r} has no {{cpu_limit}}: the capture "
                      f"kernel would boot every CPU (the release policy says {cpu_limit_arg})")
    if not any(int(v) != 0 for v in re.findall(r"(?:^|\s)panic=(-?\d+)(?=\s|$)", s.cmdline_append)):
        warnings.append(f"cmdline_append {s.cmdline_append!r} has no panic=<seconds> (non-zero): a capture kernel "
                        "that fails (out of memory) hangs for good instead of rebooting")
    return KdumpLint(tuple(errors), tuple(warnings))


def check(s: KdumpSettings, cpu_limit_arg: str = "nr_cpus=1",
          formats: tuple[str, ...] | set[str] = ("deb", "rpm")) -> KdumpLint:
    """`lint`, raising CheckFailed with the first error (and a count of the others)."""
    result = lint(s, cpu_limit_arg, formats)
    if result.errors:
        more = f" (and {len(result.errors) - 1} more)" if len(result.errors) > 1 else ""
        raise CheckFailed(f"kdump settings: {result.errors[0]}{more}")
    return result


def kdump_conf_values(s: KdumpSettings) -> dict[str, str]:
    """The /etc/kdump.conf lines, in the target's spelling."""
    key = CONF_TARGETS[s.kdump_conf_target][0]
    return {"path": s.path, "core_collector": s.core_collector, key: s.failure_action}


def kdump_tools_values(s: KdumpSettings, cpu_limit_arg: str) -> dict[str, str]:
    """The /etc/default/kdump-tools variables (kdump-config adds -F to MAKEDUMP_ARGS itself)."""
    append = " ".join(p for p in (s.capture_cmdline(cpu_limit_arg),
                                  s.kdump_tools_append.format(cpu_limit=cpu_limit_arg)) if p)
    return {
        "KDUMP_COREDIR": s.path,
        "MAKEDUMP_ARGS": shlex.join(makedumpfile.parse(s.core_collector).args),
        "KDUMP_FAIL_CMD": KDUMP_TOOLS_FAIL_CMD[s.failure_action],
        "KDUMP_CMDLINE_APPEND": append,
    }
