"""Atomic publishing: a reader sees the old file or folder, or the new one, never half of it.

Temporary names carry the writer's pid (`.<name>.<pid>.tmp`, `.<name>.<pid>.old`), so a run
killed half-way can be told from one still going, and `remove_leftovers` only clears the dead.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
from pathlib import Path
from typing import Iterator

_LEFTOVER = re.compile(r"^\.(.+)\.(\d+)\.(tmp|old)$")


def temp_name(dest: Path, kind: str = "tmp") -> Path:
    return dest.with_name(f".{dest.name}.{os.getpid()}.{kind}")


@contextlib.contextmanager
def atomic_path(dest: Path) -> Iterator[Path]:
    """Yield a temporary path beside `dest`; rename it over `dest` only if the block succeeds."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(dest)
    try:
        yield tmp
        os.replace(tmp, dest)
    finally:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def write_atomic(dest: Path, data: str | bytes, mode: int | None = None) -> Path:
    """Write a whole file under a temporary name, then rename it into place."""
    with atomic_path(Path(dest)) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
        if mode is not None:
            tmp.chmod(mode)
    return Path(dest)


def publish_file(src: Path, dest: Path) -> Path:
    """Copy a finished file into place under its final name in one rename."""
    with atomic_path(Path(dest)) as tmp:
        shutil.copyfile(src, tmp)
    return Path(dest)


def swap_dir(staged: Path, final: Path) -> Path:
    """Replace the folder `final` by `staged` with two renames; the old one is removed after."""
    old = temp_name(final, "old")
    if final.exists():
        os.replace(final, old)
    os.replace(staged, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def remove_leftovers(folder: Path) -> list[Path]:
    """Remove `.<name>.<pid>.tmp|old` entries in `folder` whose writer has died; returns them."""
    removed = []
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        m = _LEFTOVER.match(p.name)
        if not m or _alive(int(m.group(2))):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed
