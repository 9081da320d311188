"""Per-architecture facts (configs/arches.toml) as one typed table every stage reads."""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass

from kbuild.core import config
from kbuild.core.errors import BadInput
from kbuild.core.paths import CONFIGS

DEFAULT = "x86_64"
RELEASE_SOURCES = ("setup-header", "linux-banner")   # how kbuild.build.verify reads an image's release


@dataclass(frozen=True)
class Qemu:
    binary: str
    package: str
    machine: str
    cpu: str
    console: str
    nmi: bool


@dataclass(frozen=True)
class Arch:
    srcarch: str
    host: str
    cross_compile: str
    cross_package: str
    image_target: str
    image: str
    release_from: str
    defconfig: str
    localversion: str
    efi_arch: str
    legacy_grub: bool
    efi_stub: bool
    deb_arch: str
    rpm_arch: str
    multiarch: str
    qemu: Qemu
    name: str = ""          # the table's key, Kbuild's ARCH (filled in by `get`)

    def __post_init__(self):
        if self.release_from not in RELEASE_SOURCES:
            raise ValueError(f"release_from must be one of {', '.join(RELEASE_SOURCES)}, not {self.release_from!r}")

    @property
    def image_name(self) -> str:
        """The image's file name, which is also its artifact name in the manifest."""
        return self.image.rsplit("/", 1)[-1]

    def cross_prefix(self) -> str:
        """CROSS_COMPILE for this host: empty when building natively."""
        return "" if os.uname().machine == self.host else self.cross_compile


@functools.lru_cache(maxsize=None)
def table() -> dict[str, Arch]:
    raw = config.read_toml(CONFIGS / "arches.toml")
    where = CONFIGS / "arches.toml"
    return {name: config.build(Arch, {**data, "name": name}, f"{where}: {name}")
            for name, data in raw.items()}


def srcarch(name: str) -> str:
    """Kconfig's SRCARCH for a Kbuild ARCH: the table's, else ARCH itself (as Kbuild's Makefile does)."""
    a = table().get(name)
    return a.srcarch if a else name


def get(name: str = DEFAULT) -> Arch:
    """The architecture `name` (Kbuild's ARCH), or exit 2 listing the known ones."""
    known = table()
    if name not in known:
        raise BadInput(f"unknown architecture {name!r}; known: {', '.join(sorted(known))} (configs/arches.toml)")
    return known[name]
