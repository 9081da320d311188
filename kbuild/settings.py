"""Task flags, validated once into typed settings before any work starts."""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import BadInput
from .requirements import CONFIGS

REPO = CONFIGS.parent
DEFAULT_PROFILE = "minimal"


@dataclass(frozen=True)
class Profile:
    """A named starting point: a base (allnoconfig, defconfig) plus fragments from configs/."""

    name: str
    description: str
    base: str
    fragments: tuple[Path, ...]


def profile_names() -> list[str]:
    return sorted(p.stem for p in (CONFIGS / "profiles").glob("*.toml"))


def load_profile(name: str) -> Profile:
    path = CONFIGS / "profiles" / f"{name}.toml"
    if not path.exists():
        raise BadInput(f"unknown profile {name!r}; choose one of: {', '.join(profile_names())}")
    data = tomllib.loads(path.read_text())
    if data.get("base") not in ("allnoconfig", "defconfig"):
        raise BadInput(f"{path}: base must be allnoconfig or defconfig, not {data.get('base')!r}")
    return Profile(name, data.get("description", ""), data["base"],
                   tuple(CONFIGS / "fragments" / f for f in data.get("fragments", [])))


@dataclass(frozen=True)
class ConfigureSettings:
    source: str | None
    profile: Profile | None
    base_config: Path | None
    fragments: tuple[Path, ...]
    build_dir: Path | None
    crosscheck: bool = True
    tool_args: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.profile.name if self.profile else "custom"

    @classmethod
    def from_flags(cls, source=None, profile=None, base_config=None, fragment=(), build_dir=None,
                   crosscheck=True) -> "ConfigureSettings":
        if profile and base_config:
            raise BadInput("give either --profile or --base-config, not both")
        prof = None if base_config else load_profile(profile or DEFAULT_PROFILE)
        base = Path(base_config) if base_config else None
        if base is not None and not base.is_file():
            raise BadInput(f"{base}: --base-config is not a readable file")
        frags = tuple(Path(f) for f in (fragment or ()))
        for f in frags:
            if not f.is_file():
                raise BadInput(f"{f}: --fragment is not a readable file")
        return cls(source, prof, base, frags, Path(build_dir) if build_dir else None, crosscheck)

    def default_build_dir(self, tree_name: str) -> Path:
        return REPO / "build" / f"{tree_name}-{self.label}"
