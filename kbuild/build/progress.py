"""Compile progress on stderr: objects done, expected, and an ETA."""
from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

from kbuild.core import fs
from kbuild.core.source import cache_root


class Progress:
    """`objects done / expected, ETA` on stderr, or no ETA at all when we cannot know the work.

    An ETA is shown only for a build from an empty folder of a configuration built before:
    then make compiles every object, and the earlier count says how many. In a folder that
    already holds objects, make alone decides what to redo (a relink compiles a handful, a
    changed header hundreds), so a count from elsewhere would be a wrong promise.
    """

    STEP = re.compile(r"^\s+(CC|AS|CC \[M\])\s")

    def __init__(self, expected: int | None, why_no_eta: str = "no earlier count"):
        self.expected, self.done, self.start = expected, 0, time.monotonic()
        self.why_no_eta = why_no_eta
        self.tty = sys.stderr.isatty()
        self._last = 0.0

    def line(self, text: str) -> None:
        if not self.STEP.match(text):
            return
        self.done += 1
        now = time.monotonic()
        if now - self._last < (0.5 if self.tty else 15):
            return
        self._last = now
        elapsed = now - self.start
        if self.expected:
            frac = min(self.done / self.expected, 0.99)
            eta = elapsed / frac * (1 - frac) if frac > 0 else 0
            bar = "#" * int(frac * 30)
            msg = f"[{bar:<30}] {self.done}/~{self.expected} objects, ETA {int(eta) // 60}m{int(eta) % 60:02d}s"
        else:
            msg = f"{self.done} objects compiled, {int(elapsed)}s (no ETA: {self.why_no_eta})"
        sys.stderr.write(("\r" + msg + "   ") if self.tty else msg + "\n")
        sys.stderr.flush()

    def finish(self) -> None:
        if self.tty:
            sys.stderr.write("\r" + " " * 90 + "\r")
            sys.stderr.flush()


def counts_file() -> Path:
    return cache_root() / "object-counts.json"


def expected_objects(build_dir: Path, config_key: str) -> tuple[int | None, str]:
    """(objects a full build of this configuration compiled, or None with the reason)."""
    if any(build_dir.glob("init/*.o")):
        return None, "incremental build, make decides what to redo"
    try:
        count = json.loads(counts_file().read_text()).get(config_key)
    except (OSError, ValueError, AttributeError):
        count = None
    return (count, "") if isinstance(count, int) and count > 0 else (None, "first build of this configuration")


def record_objects(config_key: str, count: int) -> None:
    """After a build from an empty folder: how many objects this configuration takes."""
    try:
        known = json.loads(counts_file().read_text())
    except (OSError, ValueError):
        known = {}
    known[config_key] = count
    fs.write_atomic(counts_file(), json.dumps(known, indent=1, sort_keys=True))
