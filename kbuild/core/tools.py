"""The one tool registry (configs/tools.toml): which program each stage runs, from which package.

`require(stage)` is every stage's preflight and `survey()` is `invoke doctor`: both read the
same table, so doctor cannot pass where a stage then stops on a missing program.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from kbuild.core import arch as archmod
from kbuild.core import config
from kbuild.core.errors import MissingTool
from kbuild.core.paths import CONFIGS

STAGES = ("configure", "build", "package", "crash-test", "install-test")


@dataclass(frozen=True)
class Tool:
    package: str
    stages: tuple[str, ...]
    required: bool = True
    arches: tuple[str, ...] = ()   # only runs for these target arches (a cross compiler); empty: every arch

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
    arches: tuple[str, ...] = ()


def registry() -> Registry:
    return config.cached(Registry, CONFIGS / "tools.toml")


def which(name: str) -> str | None:
    """PATH, then the sbin folders (kexec, mke2fs, debugfs), which a user's PATH may lack."""
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))


def package_for(program: str) -> str | None:
    """The Debian package of a program we run (by name or path), if the registry knows it."""
    tool = registry().tool.get(os.path.basename(program))
    return tool.package if tool else None


def survey(stages: tuple[str, ...] = STAGES, arch: str | None = None) -> list[ToolStatus]:
    """Every registered program of these stages; with `arch`, only those that target needs."""
    reg, out = registry(), []
    for name, t in reg.tool.items():
        if set(t.stages) & set(stages) and (arch is None or not t.arches or arch in t.arches):
            out.append(ToolStatus(name, t.package, t.stages, t.required, which(name), t.arches))
    for path, t in reg.file.items():
        if set(t.stages) & set(stages):
            out.append(ToolStatus(path, t.package, t.stages, t.required, path if os.path.exists(path) else None))
    return out


def require(*stages: str, arch: str = "x86_64") -> None:
    """Name every missing program of these stages for target `arch`, as one apt-get line, before any work starts."""
    native = os.uname().machine
    missing = sorted({s.package for s in survey(stages, arch) if s.required and not s.found
                      and not (s.arches and _host_native(arch, native))})
    if missing:
        raise MissingTool(f"{' and '.join(stages)} needs programs that are not installed; "
                          f"run: apt-get install {' '.join(missing)} (`invoke doctor` lists them)")


def _host_native(arch: str, machine: str) -> bool:
    """A cross compiler is not needed when the host builds `arch` natively."""
    return archmod.get(arch).host == machine


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
