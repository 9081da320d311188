"""Compile progress on stderr: objects done, expected, and an ETA."""
from __future__ import annotations

import re
import sys
import time


class Progress:
    """`objects done / expected, ETA` on stderr; expected comes from the last build of this folder."""

    STEP = re.compile(r"^\s+(CC|AS|CC \[M\])\s")

    def __init__(self, expected: int | None):
        self.expected, self.done, self.start = expected, 0, time.monotonic()
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
            msg = f"{self.done} objects compiled, {int(elapsed)}s (first build of this folder: no ETA yet)"
        sys.stderr.write(("\r" + msg + "   ") if self.tty else msg + "\n")
        sys.stderr.flush()

    def finish(self) -> None:
        if self.tty:
            sys.stderr.write("\r" + " " * 90 + "\r")
            sys.stderr.flush()
