"""One writer per folder: an flock on `.<folder>.lock` beside it, with who holds it written inside.

Beside, not inside: a dist/<release>/ folder holds exactly what a stage published.

The kernel releases an flock when its holder dies, however it dies, so a stale lock never
blocks. A second run waits and says for whom (pid, task, start time); with wait=False it
stops at once with that line (exit 1).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from pathlib import Path
from typing import Iterator

from kbuild.core.errors import CheckFailed



class Busy(CheckFailed):
    """Another run holds the folder and we were asked not to wait."""


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {info['pid']} ({info['task']}, started {info['started']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another run"


@contextlib.contextmanager
def exclusive(folder: Path, task: str, wait: bool = True) -> Iterator[None]:
    """Hold `folder` for this run; see the module docstring."""
    folder = Path(folder).resolve()
    folder.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder.parent / f".{folder.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = _holder(fd)
            if not wait:
                raise Busy(f"{folder} is in use by {who}; rerun later, or without --no-wait to wait") from None
            print(f"waiting for {folder}: in use by {who}", file=sys.stderr, flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "task": task,
                                  "started": time.strftime("%Y-%m-%d %H:%M:%S")}).encode(), 0)
        yield
    finally:
        os.close(fd)   # releases the flock
