"""The kdump settings model (configs/kdump.toml): one source for every place kdump is configured."""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path

from .errors import BadInput
from .requirements import CONFIGS


@dataclass(frozen=True)
class KdumpSettings:
    path: str
    core_collector: str
    failure_action: str
    cmdline_append: str
    crashkernel: str
    kdump_conf_target: str = "modern"

    def capture_cmdline(self, cpu_limit_arg: str) -> str:
        """The capture kernel's extra arguments, with the release policy's CPU limit filled in."""
        return self.cmdline_append.format(cpu_limit=cpu_limit_arg)


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
    missing = sorted(k for k in known - set(data) if k != "kdump_conf_target")
    if missing:
        raise BadInput(f"{path}: missing kdump setting(s) {', '.join(missing)}")
    settings = KdumpSettings(**data)
    return replace(settings, **{k: v for k, v in overrides.items() if v is not None})
