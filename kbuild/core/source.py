"""Locate a kernel tree (directory or linux-*.tar.xz) and read its version from the Makefile."""
from __future__ import annotations

import json
import os
import re
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from kbuild.core import fs
from kbuild.core.errors import BadInput, CommandFailed
from kbuild.core.hashing import file_sha256
from kbuild.core.proc import run

DEFAULT_SOURCE = "/usr/src/linux-source-6.1.tar.xz"
_VERSION_KEYS = ("VERSION", "PATCHLEVEL", "SUBLEVEL", "EXTRAVERSION")


def cache_root() -> Path:
    """Where unpacked trees and parsed-Kconfig caches live (override with KBUILD_CACHE_DIR)."""
    base = os.environ.get("KBUILD_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "kdump-pipeline")
    return Path(base)


@dataclass(frozen=True)
class KernelVersion:
    version: int
    patchlevel: int
    sublevel: int
    extraversion: str = ""

    def __str__(self) -> str:
        return f"{self.version}.{self.patchlevel}.{self.sublevel}{self.extraversion}"

    @property
    def key(self) -> tuple[int, int, int]:
        return (self.version, self.patchlevel, self.sublevel)


@dataclass(frozen=True)
class KernelTree:
    """An unpacked kernel source tree we never modify (we always build with O=)."""

    path: Path
    version: KernelVersion
    tarball: Path | None = None
    tarball_sha256: str | None = None

    @property
    def name(self) -> str:
        return f"linux-{self.version}"


def read_version(makefile: Path) -> KernelVersion:
    """Parse VERSION/PATCHLEVEL/SUBLEVEL/EXTRAVERSION assignments from the top Makefile."""
    values: dict[str, str] = {}
    try:
        head = makefile.read_text(errors="replace").splitlines()[:20]
    except OSError as e:
        raise BadInput(f"{makefile}: cannot read ({e.strerror}); is this a kernel tree?") from None
    for line in head:
        m = re.match(r"^(VERSION|PATCHLEVEL|SUBLEVEL|EXTRAVERSION)\s*=\s*(.*?)\s*$", line)
        if m:
            values[m.group(1)] = m.group(2)
    try:
        return KernelVersion(int(values["VERSION"]), int(values["PATCHLEVEL"]),
                             int(values.get("SUBLEVEL") or 0), values.get("EXTRAVERSION", ""))
    except (KeyError, ValueError):
        raise BadInput(f"{makefile}: no VERSION/PATCHLEVEL/SUBLEVEL lines; this is not a kernel "
                       "top-level Makefile") from None


def _check_tree(path: Path) -> KernelVersion:
    for marker in ("Makefile", "Kconfig", "scripts/kconfig"):
        if not (path / marker).exists():
            raise BadInput(f"{path}: not a kernel tree (no {marker}); pass --source a kernel "
                           "directory or a linux-*.tar.xz")
    return read_version(path / "Makefile")


def _sha256(path: Path) -> str:
    """sha256 of a file, memoised on (path, size, mtime) because tarballs are ~150 MB."""
    st = path.stat()
    memo = cache_root() / "sha256.json"
    key = f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"
    try:
        known = json.loads(memo.read_text())
    except (OSError, ValueError):
        known = {}
    if key in known:
        return known[key]
    known[key] = file_sha256(path)
    fs.write_atomic(memo, json.dumps(known, indent=1))
    return known[key]


def _unpack(tarball: Path, sha: str) -> Path:
    """Unpack once into a content-keyed cache; a crash mid-way leaves only a temp dir."""
    dest = cache_root() / "trees" / sha[:16]
    if (dest / ".complete").exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{sha[:16]}.", suffix=".partial", dir=dest.parent))
    try:
        try:
            run(["tar", "-xf", str(tarball), "-C", str(tmp), "--no-same-owner"])
        except CommandFailed as e:
            raise BadInput(f"{tarball}: cannot unpack ({e.tail.splitlines()[-1] if e.tail else e}); "
                           "expected a linux-*.tar.xz") from None
        tops = [p for p in tmp.iterdir()]
        if len(tops) != 1 or not tops[0].is_dir():
            raise BadInput(f"{tarball}: expected one top-level directory, found {len(tops)}")
        _check_tree(tops[0])
        (tmp / ".complete").write_text(tops[0].name + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def locate(source: str | os.PathLike | None) -> KernelTree:
    """Resolve --source: a kernel directory, or a tarball unpacked into the cache."""
    src = Path(source or DEFAULT_SOURCE)
    if not src.exists():
        hint = " (install it with `make setup`: it comes from the linux-source-6.1 package)" \
            if str(src) == DEFAULT_SOURCE else ""
        raise BadInput(f"{src}: no such file or directory{hint}")
    if src.is_dir():
        return KernelTree(src.resolve(), _check_tree(src))
    if not os.access(src, os.R_OK):
        raise BadInput(f"{src}: not readable")
    if not tarfile.is_tarfile(src):
        raise BadInput(f"{src}: not a tar archive; expected a kernel directory or linux-*.tar.xz")
    sha = _sha256(src)
    root = _unpack(src, sha)
    top = root / (root / ".complete").read_text().strip()
    return KernelTree(top, _check_tree(top), tarball=src.resolve(), tarball_sha256=sha)
