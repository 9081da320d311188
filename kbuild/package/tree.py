"""One package's file tree under construction, with pinned modes and mtimes."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from kbuild.core.proc import run


class PackageTree:
    """One package's file tree under construction; `seal` pins modes and mtimes."""

    def __init__(self, root: Path, objcopy: str = "objcopy"):
        self.root, self.objcopy = root, objcopy   # objcopy for the modules' arch (the host's reads only its own)
        root.mkdir(parents=True, exist_ok=True)

    def path(self, dest: str) -> Path:
        p = self.root / dest.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def dir(self, dest: str) -> Path:
        p = self.root / dest.lstrip("/")
        p.mkdir(parents=True, exist_ok=True)
        return p

    def copy(self, dest: str, src: Path, mode: int = 0o644) -> Path:
        p = self.path(dest)
        shutil.copyfile(src, p)
        p.chmod(mode)
        return p

    def stripped(self, dest: str, src: Path) -> Path:
        """A kernel module without debug info (what `make INSTALL_MOD_STRIP=1` installs)."""
        p = self.path(dest)
        run([self.objcopy, "--strip-debug", str(src), str(p)])
        p.chmod(0o644)
        return p

    def text(self, dest: str, text: str | bytes, mode: int = 0o644) -> Path:
        p = self.path(dest)
        p.write_bytes(text if isinstance(text, bytes) else text.encode())
        p.chmod(mode)
        return p

    def symlink(self, dest: str, target: str) -> Path:
        p = self.path(dest)
        p.symlink_to(target)
        return p

    def seal(self, epoch: int) -> None:
        """Directories 0755, every entry's mtime = SOURCE_DATE_EPOCH (symlinks included)."""
        for dirpath, dirs, files in os.walk(self.root):
            for name in dirs + files:
                p = Path(dirpath) / name
                if p.is_dir() and not p.is_symlink():
                    p.chmod(0o755)
                os.utime(p, (epoch, epoch), follow_symlinks=False)
        self.root.chmod(0o755)
        os.utime(self.root, (epoch, epoch))


