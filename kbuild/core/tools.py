"""The one tool registry (configs/tools.toml): which program each stage runs, from which package.

`require(stage)` is every stage's preflight and `survey()` is `invoke doctor`: both read the
same table, so doctor cannot pass where a stage then stops on a missing program.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from kbuild.core import config
from kbuild.core.errors import MissingTool
from kbuild.core.paths import CONFIGS

STAGES = ("configure", "build", "package", "crash-test", "install-test")


@dataclass(frozen=True)
class Tool:
    package: str
    stages: tuple[str, ...]
    required: bool = True

    def __post_init__(self):
        bad = sorted(set(self.stages) - set(STAGES))
        if bad:
            raise ValueError(f"stages: unknown stage(s) {', '.join(bad)}; known: {', '.join(STAGES)}")


@dataclass(frozen=True)
class Registry:
    tool: dict[str, Tool]
    file: dict[str, Tool]


@dataclass(frozen=True)
class ToolStatus:
    name: str
    package: str
    stages: tuple[str, ...]
    required: bool
    found: str | None  # path, or None if missing


def registry() -> Registry:
    return config.cached(Registry, CONFIGS / "tools.toml")


def which(name: str) -> str | None:
    """PATH, then the sbin folders (kexec, mke2fs, debugfs), which a user's PATH may lack."""
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))


def package_for(program: str) -> str | None:
    """The Debian package of a program we run (by name or path), if the registry knows it."""
    tool = registry().tool.get(os.path.basename(program))
    return tool.package if tool else None


def survey(stages: tuple[str, ...] = STAGES) -> list[ToolStatus]:
    reg, out = registry(), []
    for name, t in reg.tool.items():
        if set(t.stages) & set(stages):
            out.append(ToolStatus(name, t.package, t.stages, t.required, which(name)))
    for path, t in reg.file.items():
        if set(t.stages) & set(stages):
            out.append(ToolStatus(path, t.package, t.stages, t.required, path if os.path.exists(path) else None))
    return out


def require(*stages: str) -> None:
    """Name every missing program of these stages, as one apt-get line, before any work starts."""
    missing = sorted({s.package for s in survey(stages) if s.required and not s.found})
    if missing:
        raise MissingTool(f"{' and '.join(stages)} needs programs that are not installed; "
                          f"run: apt-get install {' '.join(missing)} (`invoke doctor` lists them)")


def report(statuses: list[ToolStatus]) -> tuple[str, bool]:
    """Human-readable doctor report, and whether every required item is present."""
    lines, missing = [], []
    for s in statuses:
        mark = "ok     " if s.found else ("MISSING" if s.required else "absent ")
        lines.append(f"{mark}  {s.name:<36} {','.join(s.stages):<22} {s.found or 'apt-get install ' + s.package}")
        if not s.found and s.required:
            missing.append(s.package)
    if missing:
        lines.append("")
        lines.append("install the missing packages with: apt-get install " + " ".join(sorted(set(missing))))
    return "\n".join(lines), not missing
