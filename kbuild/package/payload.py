"""A verified build as the packagers see it, read from the build's manifest."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from kbuild.build import release as policy
from kbuild.core import arch as archmod
from kbuild.core.errors import BadInput, KbuildError
from kbuild.core.manifest import Manifest

BUILD_ID = re.compile(r"(?:[0-9a-f]{2}){2,64}")
MODULE_PATH = re.compile(r"(?!\.\.?(?:/|$))[A-Za-z0-9_+,-][A-Za-z0-9._+,-]*(?:/(?!\.\.?(?:/|$))[A-Za-z0-9._+,-]+)*")
MAX_EPOCH = 253402300800          # year 10000
RELEASE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
CONFIG_PACKAGE = "kdump-pipeline-config"   # one per system, whichever kernel it came with


@dataclass(frozen=True)
class Payload:
    """A verified build as the packagers see it: manifest fields plus artifact paths."""

    release: str
    deb_version: str
    rpm_version: str
    rpm_release: str
    cpu_limit_arg: str
    build_id: str
    epoch: int                       # SOURCE_DATE_EPOCH of the build: every mtime and date
    deb_arch: str
    rpm_arch: str
    image: Path                      # the arch's boot image (bzImage, Image), installed as /boot/vmlinuz-<release>
    vmlinux: Path
    system_map: Path
    config: Path
    modules: tuple[tuple[str, Path], ...]   # (path under lib/modules/<release>/, source)
    dist: Path                               # dist/<release>/, next to the manifest
    objcopy: str = "objcopy"                 # strips this arch's modules: the cross one unless native

    @classmethod
    def from_manifest(cls, m: Manifest) -> "Payload":
        """A manifest's build, after re-hashing every artifact: a rebuild may have replaced them."""
        if m.arch not in archmod.table():
            raise BadInput(f"{m.path}: architecture {m.arch!r} is not packaged "
                           f"(known: {', '.join(sorted(archmod.table()))}, configs/arches.toml)")
        target = archmod.get(m.arch)
        names = {x.name for x in m.artifacts}
        missing = [n for n in (target.image_name, "vmlinux", "System.map", "config") if n not in names]
        if missing:
            raise BadInput(f"{m.path}: manifest lists no {', '.join(missing)}; rebuild")
        r = m.release
        check_release(m)
        if not BUILD_ID.fullmatch(m.build_id):
            raise BadInput(f"{m.path}: build_id {m.build_id!r} is not a GNU build-id (hex); rebuild")
        if not 0 <= m.epoch < MAX_EPOCH:
            raise BadInput(f"{m.path}: SOURCE_DATE_EPOCH {m.epoch!r} is not a date; rebuild")
        for a in m.modules():
            rel = a.name.split("/", 1)[1]
            if not MODULE_PATH.fullmatch(rel):
                raise BadInput(f"{m.path}: module path {rel!r} is not a plain relative path under "
                               "lib/modules/<release>/; rebuild")
        m.verify()
        modules = tuple(sorted((a.name.split("/", 1)[1], a.path) for a in m.modules()))
        return cls(r.release, r.deb_version, r.rpm_version, r.rpm_release, r.cpu_limit_arg, m.build_id,
                   m.epoch, target.deb_arch, target.rpm_arch, m.artifact(target.image_name).path, m.artifact("vmlinux").path,
                   m.artifact("System.map").path, m.artifact("config").path, modules, m.dist,
                   target.cross_prefix() + "objcopy")


def check_release(m: Manifest) -> None:
    """The manifest is input: its release must be safe in paths and scripts, and the package
    versions and CPU limit it records must be what the release policy derives from it."""
    r = m.release
    if not RELEASE.fullmatch(r.release) or len(r.release) > policy.UTS_LEN:
        raise BadInput(f"{m.path}: release {r.release!r} is unsafe in paths and scripts; "
                       "pick one `invoke release-check` passes")
    try:
        deb, rpm = policy.deb_version(r.release), policy.rpm_version(r.release)
    except KbuildError as e:
        raise BadInput(f"{m.path}: release {r.release!r} has no package version ({e})") from None
    for what, recorded, derived in (("deb_version", r.deb_version, deb),
                                    ("rpm_version", (r.rpm_version, r.rpm_release), rpm)):
        if recorded != derived:
            raise BadInput(f"{m.path}: {what} {recorded!r} is not what the release policy derives "
                           f"from release {r.release!r} ({derived!r}); the manifest was edited, rebuild")
    if r.cpu_limit_arg not in (policy.NR_CPUS, policy.MAXCPUS):
        raise BadInput(f"{m.path}: cpu_limit_arg {r.cpu_limit_arg!r}: the release policy gives "
                       f"{policy.NR_CPUS!r} or {policy.MAXCPUS!r}; rebuild")
