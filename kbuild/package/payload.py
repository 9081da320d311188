"""A verified build as the packagers see it, read from the build's manifest."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from kbuild.core.errors import BadInput
from kbuild.core.manifest import Manifest

CONFIG_PACKAGE = "kdump-pipeline-config"   # one per system, whichever kernel it came with
ARCH = {"x86_64": ("amd64", "x86_64")}     # manifest toolchain.arch -> (dpkg, rpm) architecture


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
    bzimage: Path
    vmlinux: Path
    system_map: Path
    config: Path
    modules: tuple[tuple[str, Path], ...]   # (path under lib/modules/<release>/, source)
    dist: Path                               # dist/<release>/, next to the manifest

    @classmethod
    def from_manifest(cls, m: Manifest) -> "Payload":
        """A manifest's build, after re-hashing every artifact: a rebuild may have replaced them."""
        names = {a.name for a in m.artifacts}
        missing = [n for n in ("bzImage", "vmlinux", "System.map", "config") if n not in names]
        if missing:
            raise BadInput(f"{m.path}: manifest lists no {', '.join(missing)}; rebuild")
        r = m.release
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+~-]*", r.release):
            raise BadInput(f"{m.path}: release {r.release!r} is unsafe in paths and scripts; "
                           "pick one `invoke release-check` passes")
        if m.arch not in ARCH:
            raise BadInput(f"{m.path}: architecture {m.arch!r} is not packaged (known: {', '.join(ARCH)})")
        m.verify()
        modules = tuple(sorted((a.name.split("/", 1)[1], a.path) for a in m.modules()))
        return cls(r.release, r.deb_version, r.rpm_version, r.rpm_release, r.cpu_limit_arg, m.build_id,
                   m.epoch, *ARCH[m.arch], m.artifact("bzImage").path, m.artifact("vmlinux").path,
                   m.artifact("System.map").path, m.artifact("config").path, modules, m.dist)
