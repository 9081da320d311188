"""The kdump settings model (configs/kdump.toml): one source for every place kdump is configured.

Settings are untrusted input (docs/packaging.md): `KdumpSettings` refuses, when it is built,
every value that is not in its target's own grammar, so no other module sees one. `lint` adds
what depends on the build and the package families (and the warnings), and `kdump_conf_values`
/ `kdump_tools_values` give each family's spelling: /etc/kdump.conf (kexec-tools, kdump-utils)
and /etc/default/kdump-tools (Debian kdump-tools). Escaping per output format is the renderer's
job (kbuild/package/render.py), so it cannot be forgotten by a new field.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from kbuild.build.release import MAXCPUS, NR_CPUS
from kbuild.core import config, makedumpfile
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
CPU_LIMIT = "{cpu_limit}"   # a whole word of cmdline_append, replaced by the release policy's limit
# One kernel command-line parameter as we accept it: `name` or `name=value`, no quoting (the
# kernel's own quotes would need shell and GRUB quoting around them too).
KERNEL_TOKEN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(?:=[A-Za-z0-9._,:/+=@-]*)?")
KERNEL_TOKEN_RULE = "name or name=value words of letters, digits and . _ , : / + = @ -, single spaces"


def printable(name: str, value: str) -> str:
    """No control characters (NUL, CR, LF, tab, DEL, Unicode line separators) in any setting."""
    bad = next((c for c in value if not c.isprintable()), None)
    if bad is not None:
        raise BadInput(f"{name} {value!r}: control character {bad!r} is not allowed")
    return value


def kernel_tokens(name: str, value: str, variables: tuple[str, ...] = ()) -> tuple[str, ...]:
    """`value` as kernel command-line words; `variables` are whole words allowed as they are."""
    printable(name, value)
    words = tuple(value.split(" ")) if value else ()
    bad = next((w for w in words if w not in variables and not KERNEL_TOKEN.fullmatch(w)), None)
    if bad is not None:
        extra = f" (or one of {', '.join(variables)} as a whole word)" if variables else ""
        raise BadInput(f"{name} {value!r}: {bad!r} is not a kernel command-line parameter; use "
                       f"{KERNEL_TOKEN_RULE}{extra}")
    return words


DEFAULT_CRASHKERNEL = "256M"   # when neither the settings nor a measurement give a reservation


@dataclass(frozen=True)
class KdumpSettings:
    """Validated on construction (load, replace): a value outside its grammar is exit 2."""

    path: str
    core_collector: str
    failure_action: str
    cmdline_append: str
    # None: package takes the largest reservation measured for the build (crash-test or
    # install-test --find-crashkernel), else DEFAULT_CRASHKERNEL. A value here always wins.
    crashkernel: str | None = None
    kdump_conf_target: str = "modern"
    # Debian only: kdump-tools' capture kernel boots straight into its dump unit.
    kdump_tools_append: str = "systemd.unit=kdump-tools-dump.service"

    def __post_init__(self):
        for f in ("path", "core_collector", "failure_action", "cmdline_append", "crashkernel",
                  "kdump_conf_target", "kdump_tools_append"):
            if f == "crashkernel" and self.crashkernel is None:
                continue
            if not isinstance(getattr(self, f), str):
                raise BadInput(f"{f} {getattr(self, f)!r}: must be a string")
            printable(f, getattr(self, f))
        check_path("path", self.path)
        self.collector()
        if self.kdump_conf_target not in CONF_TARGETS:
            raise BadInput(f"kdump_conf_target {self.kdump_conf_target!r}: use one of "
                           f"{', '.join(CONF_TARGETS)}")
        key, actions = CONF_TARGETS[self.kdump_conf_target]
        if self.failure_action not in actions:
            raise BadInput(f"failure_action {self.failure_action!r} is unknown to `{key}` "
                           f"({self.kdump_conf_target}); use one of {', '.join(actions)}")
        for name in ("cmdline_append", "kdump_tools_append"):
            words = kernel_tokens(name, getattr(self, name), (CPU_LIMIT,))
            if any(w.startswith("crashkernel=") for w in words):
                raise BadInput(f"{name} {getattr(self, name)!r}: crashkernel= belongs to the "
                               "production kernel, not the capture one")
        from kbuild.package.bootcfg import parse_crashkernel
        try:
            if self.crashkernel is not None:
                parse_crashkernel(self.crashkernel)
        except CheckFailed as e:
            raise BadInput(str(e)) from None

    def collector(self) -> makedumpfile.Collector:
        """core_collector in makedumpfile's own option table, the same words for both families."""
        try:
            c = makedumpfile.settings_collector(self.core_collector)
        except CheckFailed as e:
            raise BadInput(str(e)) from None
        if len(set(c.compression)) > 1:
            names = ", ".join(f"{x} ({makedumpfile.COMPRESSION[x]})" for x in dict.fromkeys(c.compression))
            raise BadInput(f"core_collector {self.core_collector!r}: conflicting compression flags "
                           f"{names}; keep one")
        return c

    def capture_cmdline(self, cpu_limit_arg: str) -> str:
        """The capture kernel's extra arguments, the release policy's CPU limit put in by plain
        substitution of the {cpu_limit} word (never str.format: the text is user input)."""
        return _substitute(self.cmdline_append, cpu_limit_arg)


def _substitute(text: str, cpu_limit_arg: str) -> str:
    if cpu_limit_arg not in (NR_CPUS, MAXCPUS):
        raise BadInput(f"cpu_limit_arg {cpu_limit_arg!r}: use {NR_CPUS!r} or {MAXCPUS!r}")
    return " ".join(cpu_limit_arg if w == CPU_LIMIT else w for w in text.split(" ") if w)


def check_path(name: str, value: str) -> str:
    """The dump folder: absolute, normalised, not `/`, no glob, comment or shell characters."""
    if not value.startswith("/"):
        raise BadInput(f"{name} {value!r} is relative; kdump needs an absolute folder such as /var/crash")
    if not makedumpfile.PATH.fullmatch(value):
        raise BadInput(f"{name} {value!r}: use {makedumpfile.PATH_RULE}, e.g. /var/crash")
    return value


@dataclass(frozen=True)
class KdumpLint:
    """Errors refuse packaging; warnings are printed (e.g. a reservation that is likely too small)."""

    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.errors


def load(path: Path | None = None, **overrides) -> KdumpSettings:
    """Read and validate the model (strict loader: unknown keys, wrong types and values outside
    their grammar are exit 2 naming the file and key); overrides are validated the same way."""
    path = Path(path or CONFIGS / "kdump.toml")
    settings = load_strict(KdumpSettings, path)
    changes = {k: v for k, v in overrides.items() if v is not None}
    if not changes:
        return settings
    try:
        return replace(settings, **changes)
    except BadInput as e:
        raise config.ConfigError(f"{path} (with overrides): {e}") from None


def load_strict(cls, path: Path):
    """config.load, with any control character left in the message (a key name, the file name)
    escaped the way repr() does, so the error stays one readable line."""
    try:
        return config.load(cls, path)
    except config.ConfigError as e:
        text = str(e)
        if all(c.isprintable() for c in text):
            raise
        raise config.ConfigError("".join(c if c.isprintable() else repr(c)[1:-1] for c in text)) from None


def lint(s: KdumpSettings, cpu_limit_arg: str = NR_CPUS,
         formats: tuple[str, ...] | set[str] = ("deb", "rpm"), floor: tuple[int, str] | None = None) -> KdumpLint:
    """What depends on the build and the families asked for, plus warnings (risky but legal)."""
    from kbuild.package.bootcfg import crashkernel_warnings, parse_crashkernel
    errors: list[str] = []
    warnings: list[str] = []
    if "deb" in formats and s.failure_action not in KDUMP_TOOLS_FAIL_CMD:
        errors.append(f"failure_action {s.failure_action!r} has no Debian kdump-tools "
                      f"equivalent; use one of {', '.join(KDUMP_TOOLS_FAIL_CMD)}")
    if CPU_LIMIT not in s.cmdline_append.split(" ") and cpu_limit_arg not in s.cmdline_append.split(" "):
        errors.append(f"cmdline_append {s.cmdline_append!r} has no {CPU_LIMIT}: the capture "
                      f"kernel would boot every CPU (the release policy says {cpu_limit_arg})")
    if not s.collector().dump_levels:
        warnings.append("core_collector has no -d: makedumpfile copies every page (the dump can "
                        "be as large as RAM); the tutorial uses -d 31")
    if s.crashkernel is not None:
        warnings.extend(crashkernel_warnings(parse_crashkernel(s.crashkernel), *(floor or ())))
    if not any(int(v) != 0 for v in re.findall(r"(?:^|\s)panic=(-?\d+)(?=\s|$)", s.cmdline_append)):
        warnings.append(f"cmdline_append {s.cmdline_append!r} has no panic=<seconds> (non-zero): a capture kernel "
                        "that fails (out of memory) hangs for good instead of rebooting")
    return KdumpLint(tuple(errors), tuple(warnings))


def check(s: KdumpSettings, cpu_limit_arg: str = NR_CPUS,
          formats: tuple[str, ...] | set[str] = ("deb", "rpm"), floor: tuple[int, str] | None = None) -> KdumpLint:
    """`lint`, raising BadInput (bad settings: exit 2) with the first error and a count of the others."""
    result = lint(s, cpu_limit_arg, formats, floor)
    if result.errors:
        more = f" (and {len(result.errors) - 1} more)" if len(result.errors) > 1 else ""
        raise BadInput(f"kdump settings: {result.errors[0]}{more}")
    return result


def kdump_conf_values(s: KdumpSettings) -> dict[str, str]:
    """The /etc/kdump.conf lines, in the target's spelling; core_collector is the program and the
    very words kdump-tools gets as MAKEDUMP_ARGS."""
    key = CONF_TARGETS[s.kdump_conf_target][0]
    collector = " ".join((makedumpfile.PROGRAM, *s.collector().args))
    return {"path": s.path, "core_collector": collector, key: s.failure_action}


def kdump_tools_values(s: KdumpSettings, cpu_limit_arg: str) -> dict[str, str]:
    """The /etc/default/kdump-tools variables (kdump-config adds -F to MAKEDUMP_ARGS itself).
    kdump-config expands $MAKEDUMP_ARGS unquoted: the words carry no quote, glob or IFS
    character other than the single spaces between them, so they reach makedumpfile as they are."""
    append = " ".join(p for p in (s.capture_cmdline(cpu_limit_arg),
                                  _substitute(s.kdump_tools_append, cpu_limit_arg)) if p)
    return {
        "KDUMP_COREDIR": s.path,
        "MAKEDUMP_ARGS": " ".join(s.collector().args),
        "KDUMP_FAIL_CMD": KDUMP_TOOLS_FAIL_CMD[s.failure_action],
        "KDUMP_CMDLINE_APPEND": append,
    }
