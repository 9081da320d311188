"""Per-architecture facts (configs/arches.toml) as one typed table every stage reads."""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field

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


STOP_STACKS = ("nmi", "irq")   # where kbuild.crashtest.cpus looks for the CPU-stop path


@dataclass(frozen=True)
class Crash:
    """What the crash test's guest needs that differs by architecture."""

    console: str                       # console arguments of both kernels
    disk: str                          # QEMU device of the dump disk
    loader: str                        # ELF interpreter in the capture initramfs
    stop_function: str                 # where every CPU but the crashing one is stopped
    stop_stack: str                    # the per-CPU stack that function runs on (STOP_STACKS)
    capture_debs: tuple[str, ...] = ()   # Debian packages of the initramfs; empty: the host's programs
    skip: dict[str, str] = field(default_factory=dict)   # trigger -> why this arch cannot run it

    def __post_init__(self):
        if self.stop_stack not in STOP_STACKS:
            raise ValueError(f"stop_stack must be one of {', '.join(STOP_STACKS)}, not {self.stop_stack!r}")


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
    crash: Crash
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
