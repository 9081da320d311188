"""Compile progress on stderr: objects done, expected, and an ETA."""
from __future__ import annotations

import collections
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

    The rate is the one over the last WINDOW seconds (the first objects, big core files, are
    slower than the rest, and the load may change), and the ETA adds the tail that the last
    full build spent after its last object (the final link, the image).
    """

    STEP = re.compile(r"^\s+(CC|AS|CC \[M\])\s")
    WINDOW = 60.0

    def __init__(self, expected: int | None, why_no_eta: str = "no earlier count", tail: float = 0.0):
        self.expected, self.done, self.start = expected, 0, time.monotonic()
        self.why_no_eta, self.tail = why_no_eta, tail
        self.tty = sys.stderr.isatty()
        self._last = 0.0
        self.last_object_at = self.start
        self._recent: collections.deque[tuple[float, int]] = collections.deque()

    def rate(self, now: float) -> float:
        """Objects per second over the last WINDOW seconds, or since the start before that."""
        while len(self._recent) > 1 and now - self._recent[1][0] >= self.WINDOW:
            self._recent.popleft()
        t0, d0 = self._recent[0] if self._recent and now - self._recent[0][0] >= self.WINDOW / 3 \
            else (self.start, 0)
        return (self.done - d0) / (now - t0) if now > t0 else 0.0

    def line(self, text: str) -> None:
        if not self.STEP.match(text):
            return
        self.done += 1
        now = self.last_object_at = time.monotonic()
        self._recent.append((now, self.done))
        if now - self._last < (0.5 if self.tty else 15):
            return
        self._last = now
        elapsed = now - self.start
        if self.expected:
            frac = min(self.done / self.expected, 0.99)
            rate = self.rate(now)
            eta = max(self.expected - self.done, 0) / rate + self.tail if rate > 0 else 0
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


def expected_work(build_dir: Path, config_key: str) -> tuple[int | None, float, str]:
    """(objects a full build of this configuration compiled, or None, the seconds that build
    spent after its last object, the reason when there is no count)."""
    if any(build_dir.glob("init/*.o")):
        return None, 0.0, "incremental build, make decides what to redo"
    try:
        known = json.loads(counts_file().read_text()).get(config_key)
    except (OSError, ValueError, AttributeError):
        known = None
    if isinstance(known, int):    # written before the tail was recorded
        known = {"objects": known, "tail": 0.0}
    if isinstance(known, dict) and isinstance(known.get("objects"), int) and known["objects"] > 0:
        tail = known.get("tail")
        return known["objects"], float(tail) if isinstance(tail, (int, float)) and tail >= 0 else 0.0, ""
    return None, 0.0, "first build of this configuration"


def record_objects(config_key: str, count: int, tail: float = 0.0) -> None:
    """After a build from an empty folder: how many objects this configuration takes, and how
    long the build ran after its last object."""
    try:
        known = json.loads(counts_file().read_text())
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    known[config_key] = {"objects": count, "tail": round(tail, 1)}
    fs.write_atomic(counts_file(), json.dumps(known, indent=1, sort_keys=True))
