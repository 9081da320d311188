"""dist/<release>/manifest.json: the build's record, and the one contract between stages.

The build writes it last (temporary name, then rename) and removes it before `make` starts,
so a manifest on disk always describes a verified build. Later stages read it through
`Manifest`, whose typed fields are checked when it is read, and call `verify()` before they
trust an artifact: a rebuild may have replaced the files since. Schema: docs/manifest.md.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from kbuild.core import fs
from kbuild.core.errors import BadInput
from kbuild.core.hashing import file_sha256
from kbuild.core.paths import dist_root

SCHEMA = 1
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Artifact:
    name: str          # bzImage, vmlinux, System.map, config, modules/<path>
    path: Path
    sha256: str
    size: int = 0

    def intact(self) -> bool:
        return self.path.is_file() and file_sha256(self.path) == self.sha256


@dataclass(frozen=True)
class ReleaseInfo:
    """The release policy's answer as recorded: the release and both package-version mappings."""

    release: str
    localversion: str
    build: int | None
    cpu_limit_arg: str
    deb_version: str
    rpm_version: str
    rpm_release: str
    allow_unsafe_release: bool = False


@dataclass(frozen=True)
class Manifest:
    path: Path
    release: ReleaseInfo
    build_id: str
    arch: str
    epoch: int                     # SOURCE_DATE_EPOCH of the build
    build_dir: Path
    inputs: str
    tree_source: str | None        # the tree's directory if it still exists, else its tarball
    artifacts: tuple[Artifact, ...]
    record: dict = field(repr=False, compare=False)   # everything, as written

    @property
    def dist(self) -> Path:
        """dist/<release>/: where later stages put what they make of this build."""
        return self.path.parent

    @classmethod
    def read(cls, path: Path) -> "Manifest":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise BadInput(f"{path}: no manifest; run `invoke build-kernel` first") from None
        except (OSError, ValueError) as e:
            raise BadInput(f"{path}: unreadable manifest ({e})") from None
        if not isinstance(data, dict) or data.get("schema") != SCHEMA or data.get("status") != "success":
            raise BadInput(f"{path}: not a successful schema-{SCHEMA} build manifest; rebuild")
        def text(d: dict, key: str) -> str:
            if not isinstance(d[key], str) or not d[key]:
                raise ValueError(f"{key}={d[key]!r}")
            return d[key]
        try:
            rel, build, tree = data["release"], data["build"], data["tree"]
            info = ReleaseInfo(text(rel, "release"), rel["localversion"], rel["build"],
                               text(rel, "cpu_limit_arg"), text(rel, "deb_version"),
                               text(rel["rpm_version"], "version"), text(rel["rpm_version"], "release"),
                               bool(rel.get("allow_unsafe_release", False)))
            arts = tuple(Artifact(text(a, "name"), Path(text(a, "path")), text(a, "sha256"), int(a.get("size", 0)))
                         for a in data["artifacts"])
            source = tree.get("path") if tree.get("path") and Path(tree["path"]).is_dir() else tree.get("tarball")
            return cls(path, info, text(build, "build_id"), text(data["toolchain"], "arch"),
                       int(build["env"]["SOURCE_DATE_EPOCH"]), Path(text(build, "dir")), text(data, "inputs"),
                       source, arts, data)
        except (KeyError, TypeError, ValueError) as e:
            raise BadInput(f"{path}: manifest lacks or mangles {e} (an older schema, or edited?); rebuild") from None

    @classmethod
    def find(cls, *, path: str | Path | None = None, release: str | None = None,
             build_dir: str | Path | None = None, dist: Path | None = None) -> "Manifest":
        """--manifest, else dist/<release>/, else the newest manifest (built in `build_dir`, if given)."""
        if path:
            return cls.read(Path(path))
        dist = dist or dist_root()
        if release:
            return cls.read(dist / release / MANIFEST)
        found = []
        for p in dist.glob(f"*/{MANIFEST}"):
            try:
                m = cls.read(p)
            except BadInput:
                continue
            if build_dir is None or m.build_dir.resolve() == Path(build_dir).resolve():
                found.append((p.stat().st_mtime, str(p), m))
        if not found:
            where = f" built in {build_dir}" if build_dir else ""
            raise BadInput(f"no build manifest{where} under {dist}; run `invoke build-kernel` first")
        return max(found, key=lambda t: t[:2])[2]

    def artifact(self, name: str) -> Artifact:
        for a in self.artifacts:
            if a.name == name:
                return a
        raise BadInput(f"{self.path}: the manifest lists no {name} artifact; rebuild with `invoke build-kernel`")

    def modules(self) -> tuple[Artifact, ...]:
        return tuple(a for a in self.artifacts if a.name.startswith("modules/"))

    def intact(self) -> bool:
        """Every recorded artifact still exists with its recorded hash."""
        return all(a.intact() for a in self.artifacts)

    def verify(self, names: tuple[str, ...] | None = None) -> None:
        """Re-hash the artifacts (all, or `names`); BadInput names the first one that changed."""
        for a in (self.artifacts if names is None else tuple(self.artifact(n) for n in names)):
            if not a.intact():
                raise BadInput(f"{a.path}: {a.name} changed or vanished since {self.path} was written "
                               "(a rebuild in progress?); run `invoke build-kernel` again")

    def updated(self, **sections) -> "Manifest":
        """Write the manifest again with top-level `sections` replaced (e.g. a measurement)."""
        data = {**self.record, **sections}
        write(self.path, data)
        return Manifest.read(self.path)


def path_for(dist: Path, release: str) -> Path:
    return dist / release / MANIFEST


def write(path: Path, data: dict) -> None:
    fs.write_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def discard(path: Path) -> None:
    """Before compiling: an old manifest must not outlive the artifacts it describes."""
    path.unlink(missing_ok=True)
