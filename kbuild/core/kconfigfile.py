"""Reading a .config (or a fragment's assignments) the way Kbuild writes it: one definition."""
from __future__ import annotations

import re
from pathlib import Path

LINE = re.compile(r"^(?:CONFIG_([A-Za-z0-9_]+)=(.*)|# CONFIG_([A-Za-z0-9_]+) is not set)$")


def parse_values(text: str) -> dict[str, str]:
    """Symbol (without CONFIG_) -> value as written ('n' for `is not set`); other lines ignored."""
    out = {}
    for line in text.splitlines():
        m = LINE.match(line.strip())
        if m:
            if m.group(1):
                out[m.group(1)] = m.group(2)
            else:
                out[m.group(3)] = "n"
    return out


def read_values(path: Path) -> dict[str, str]:
    return parse_values(Path(path).read_text(errors="replace"))
