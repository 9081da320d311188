"""Project defaults from invoke's own config files: a `kbuild:` section gives any task flag its default.

Sources, later wins (invoke's order): /etc/invoke.yaml, ~/.invoke.yaml, the project's invoke.yaml
beside tasks.py, INVOKE_KBUILD_<FLAG> environment variables, a runtime file (`invoke -f FILE`);
an explicit flag beats them all. Every source is checked on its own against `ProjectDefaults`, so
a typo or a wrong type is exit 2 naming the file and the key, never a silently ignored setting.
"""
from __future__ import annotations

import contextvars
import dataclasses
import typing
from dataclasses import dataclass
from typing import Any

from kbuild.core import config
from kbuild.core.errors import BadInput

SECTION = "kbuild"
# (invoke's attribute, how we name it in messages), in invoke's merge order
SOURCES = (("system", "system config"), ("user", "user config"), ("project", "project config"),
           ("env", "environment (INVOKE_KBUILD_*)"), ("runtime", "runtime config (-f)"))


@dataclass(frozen=True)
class ProjectDefaults:
    """Every flag that may take its default from a `kbuild:` section, with its type."""

    source: str | None = None
    profile: str | None = None
    base_config: str | None = None
    fragment: tuple[str, ...] | None = None
    build_dir: str | None = None
    localversion: str | None = None
    build_number: int | None = None
    jobs: int | None = None
    no_ccache: bool | None = None
    allow_unsafe_release: bool | None = None
    no_wait: bool | None = None
    kdump_config: str | None = None
    formats: str | None = None
    memory: str | None = None
    crashkernel: str | None = None
    kexec: str | None = None
    timeout: float | None = None
    accel: str | None = None
    keep: bool | None = None
    cpus: int | None = None
    trigger: str | None = None
    distcc: str | None = None
    arch: str | None = None


KEYS = tuple(f.name for f in dataclasses.fields(ProjectDefaults))


@dataclass(frozen=True)
class Resolved:
    values: dict[str, Any]        # key -> value from the config files (only keys that were set)
    origins: dict[str, str]       # key -> where it came from, e.g. "project config /srv/x/invoke.yaml"


def _from_env(value: Any, tp: Any, key: str) -> Any:
    """INVOKE_KBUILD_* values arrive as text; read them as the flag's type."""
    if not isinstance(value, str):
        return value
    base = next((a for a in typing.get_args(tp) if a is not type(None)), tp)
    try:
        if base is bool:
            if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(value)
            return value.lower() in ("1", "true", "yes")
        if base in (int, float):
            return base(value)
        if typing.get_origin(base) is tuple:
            return value.split(",")
    except ValueError:
        raise BadInput(f"environment (INVOKE_KBUILD_{key.upper()}): {value!r} is not a valid "
                       f"{getattr(base, '__name__', 'value')}") from None
    return value


def resolve(invoke_config: Any) -> Resolved:
    """Check each source's `kbuild:` section, then layer them in invoke's order."""
    hints = typing.get_type_hints(ProjectDefaults)
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for attr, label in SOURCES:
        data = getattr(invoke_config, f"_{attr}", None) or {}
        section = data.get(SECTION) if isinstance(data, dict) else None
        if section is None:
            continue
        path = getattr(invoke_config, f"_{attr}_path", None)
        where = f"{label} {path}" if path else label
        if not isinstance(section, dict):
            raise BadInput(f"{where}: `{SECTION}:` must be a mapping of flag names to values")
        section = {k: v for k, v in section.items() if v is not None}   # None: the collection's own placeholders
        if attr == "env":
            section = {k: _from_env(v, hints.get(k, str), k) for k, v in section.items()}
        section = {k.replace("-", "_"): v for k, v in section.items()}
        checked = config.build(ProjectDefaults, section, f"{where}: {SECTION}:")
        for k in section:
            values[k] = getattr(checked, k)
            origins[k] = where
    return Resolved(values, origins)


def placeholders() -> dict:
    """The collection's defaults: invoke reads INVOKE_KBUILD_* only for keys that exist."""
    return {SECTION: {k: None for k in KEYS}}


FILLED: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("kbuild_defaults_filled", default={})


def filled() -> dict[str, str]:
    """Flags of the running task that took their value from a config file: name -> source."""
    return dict(FILLED.get())
