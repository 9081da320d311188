"""The install test's settings: configs/installtest.toml (typed, read once) and the task's flags."""
from __future__ import annotations

from dataclasses import dataclass

from kbuild.core import config, sizes
from kbuild.core.settings import as_accel, as_seconds
from kbuild.core.errors import BadInput
from kbuild.core.paths import CONFIGS

POLICY_FILE = CONFIGS / "installtest.toml"


@dataclass(frozen=True)
class Rootfs:
    suite: str
    variant: str
    include: tuple[str, ...]
    debconf: tuple[str, ...]
    max_age_days: int

    def __post_init__(self):
        for line in self.debconf:
            if len(line.split(None, 3)) != 4:
                raise ValueError(f"debconf {line!r}: expected `<package> <question> <type> <value>`")


@dataclass(frozen=True)
class Site:
    grub_cmdline_linux: str
    grub_cmdline_linux_default: str
    fstab_options: str

    def __post_init__(self):
        for name in ("grub_cmdline_linux", "grub_cmdline_linux_default"):
            if any(c in getattr(self, name) for c in "\"$`\\"):
                raise ValueError(f"{name}: quotes, '$', '`' and '\\' are not allowed")


@dataclass(frozen=True)
class Guest:
    memory: str
    smp: int
    accel: str
    kvm_probe_seconds: float
    disk_size: str
    timeout: float
    ready_timeout: int
    capture_timeout: float

    def __post_init__(self):
        for name in ("memory", "disk_size"):
            sizes.parse(getattr(self, name), f"guest.{name}")
        if self.accel not in ("auto", "kvm", "tcg"):
            raise ValueError(f"guest.accel {self.accel!r}: choose auto, kvm or tcg")


@dataclass(frozen=True)
class Find:
    low: str
    high: str
    step: str
    headroom_factor: float
    round_to: str

    def __post_init__(self):
        for name in ("low", "high", "step", "round_to"):
            sizes.parse(getattr(self, name), f"find.{name}")


@dataclass(frozen=True)
class InstallTestPolicy:
    rootfs: Rootfs
    site: Site
    guest: Guest
    find: Find
    needs: dict[str, str]


def policy() -> InstallTestPolicy:
    return config.cached(InstallTestPolicy, POLICY_FILE)


@dataclass(frozen=True)
class InstallTestSettings:
    """Validated flags. `crashkernel` (bytes) replaces our drop-in's value, as an admin's edit would."""

    release: str | None = None
    accel: str = "auto"
    timeout: float = 900.0
    keep: bool = False
    crashkernel: int | None = None
    find_crashkernel: bool = False
    alongside: str | None = None     # another release installed too, removed before the crash

    @classmethod
    def from_flags(cls, release=None, accel=None, timeout=None, keep=False, crashkernel=None,
                   find_crashkernel=False, alongside=None) -> "InstallTestSettings":
        pol = policy()
        accel = as_accel(accel or pol.guest.accel)
        timeout = as_seconds(timeout if timeout is not None else pol.guest.timeout, "--timeout")
        ck = None
        if crashkernel is not None:
            ck = sizes.parse(str(crashkernel), "--crashkernel")
            if not 0 < ck < sizes.parse(pol.guest.memory, "guest.memory"):
                raise BadInput(f"--crashkernel {crashkernel}: must be above 0 and below the guest memory "
                               f"({pol.guest.memory})")
        if find_crashkernel and crashkernel is not None:
            raise BadInput("give either --crashkernel or --find-crashkernel, not both")
        if alongside and release and alongside == release:
            raise BadInput(f"--alongside {alongside}: give another release than --release")
        return cls(release, accel, timeout, bool(keep), ck, bool(find_crashkernel), alongside or None)
