"""Check every external tool and build dependency; name the Debian package for each gap."""
from __future__ import annotations

import os
import shutil
import tomllib
from dataclasses import dataclass

from .requirements import CONFIGS


@dataclass(frozen=True)
class ToolStatus:
    name: str
    package: str
    stage: str
    required: bool
    found: str | None  # path, or None if missing


def survey() -> list[ToolStatus]:
    data = tomllib.loads((CONFIGS / "tools.toml").read_text())
    out = []
    for name, spec in data.get("tool", {}).items():
        out.append(ToolStatus(name, spec["package"], spec["stage"], spec.get("required", True), shutil.which(name)))
    for path, spec in data.get("file", {}).items():
        out.append(ToolStatus(path, spec["package"], spec["stage"], spec.get("required", True),
                              path if os.path.exists(path) else None))
    return out


def report(statuses: list[ToolStatus]) -> tuple[str, bool]:
    """Human-readable report, and whether every required item is present."""
    lines, missing = [], []
    for s in statuses:
        mark = "ok     " if s.found else ("MISSING" if s.required else "absent ")
        lines.append(f"{mark}  {s.name:<36} {s.stage:<10} {s.found or 'apt-get install ' + s.package}")
        if not s.found and s.required:
            missing.append(s.package)
    if missing:
        lines.append("")
        lines.append("install the missing packages with: apt-get install " + " ".join(sorted(set(missing))))
    return "\n".join(lines), not missing
