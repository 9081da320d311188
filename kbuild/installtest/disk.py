"""The guest's disk: an ext4 image made from the root folder with `mke2fs -d`, read back with
debugfs. No loop device, no mount."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from kbuild.core import sizes
from kbuild.core.proc import run


@dataclass(frozen=True)
class Entry:
    name: str
    mode: int
    size: int

    @property
    def is_dir(self) -> bool:
        return self.mode & 0o170000 == 0o040000


def make(root: Path, image: Path, uuid: str, size: str, log: Path) -> None:
    image.unlink(missing_ok=True)
    run(["mke2fs", "-q", "-F", "-t", "ext4", "-U", uuid, "-E", "root_owner=0:0", "-d", str(root),
         str(image), f"{sizes.parse(size, 'disk size') // sizes.MIB}M"], log=log, package="e2fsprogs")


def _debugfs(image: Path, request: str, log: Path | None) -> str:
    return run(["debugfs", "-R", request, str(image)], log=log, check=False, package="e2fsprogs").output


# `ls -p`: /inode/mode/uid/gid/name/size/
_LS = re.compile(r"^/(\d+)/([0-7]+)/\d+/\d+/([^/]*)/(\d*)/$", re.M)


def listdir(image: Path, path: str, log: Path | None = None) -> list[Entry]:
    """Entries of a folder in the image (no . and ..); empty if it does not exist."""
    out = _debugfs(image, f"ls -p {path}", log)
    return [Entry(m.group(3), int(m.group(2), 8), int(m.group(4) or 0)) for m in _LS.finditer(out)
            if m.group(3) not in (".", "..")]


def fetch(image: Path, path: str, dest: Path, log: Path | None = None) -> Path | None:
    """Copy one file out of the image; None if it is not there."""
    dest.unlink(missing_ok=True)
    _debugfs(image, f"dump {path} {dest}", log)
    return dest if dest.is_file() else None
