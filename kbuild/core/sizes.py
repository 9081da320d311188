"""Memory sizes as the kernel reads them (lib/cmdline.c memparse), one parser for every setting.

memparse() takes `0x` hex, a leading `0` as octal and decimal, then an optional K, M, G, T, P
or E suffix (case-insensitive). We keep that grammar but refuse a leading-zero octal number:
`0400M` is 256M to the kernel and 400M to almost every reader, so it is never what was meant.
"""
from __future__ import annotations

import re

from kbuild.core.errors import BadInput

_SHIFT = {"": 0, "k": 10, "m": 20, "g": 30, "t": 40, "p": 50, "e": 60}
NUMBER = re.compile(r"(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)([KMGTPEkmgtpe]?)")
MIB = 1 << 20


class SizeError(BadInput):
    """A size that the kernel's grammar does not accept, or that we refuse as ambiguous."""


def memparse(text: str, pos: int = 0, what: str = "a size") -> tuple[int, int]:
    """Parse one size at `pos` of `text`; returns (bytes, end position)."""
    m = NUMBER.match(text, pos)
    if not m:
        raise SizeError(f"{what}: a size such as 256M expected at {text[pos:] or 'the end'!r}")
    digits = m.group(1)
    if len(digits) > 1 and digits[0] == "0" and digits[1] not in "xX":
        raise SizeError(f"{what}: {m.group(0)!r} has a leading 0, which the kernel reads as octal "
                        f"({fmt(int(digits, 8) << _SHIFT[m.group(2).lower()])}); write it without the 0")
    n = int(digits, 0 if digits[:2].lower() == "0x" else 10) << _SHIFT[m.group(2).lower()]
    if n >> 64:
        raise SizeError(f"{what}: {m.group(0)} does not fit in 64 bits (the kernel would wrap it around)")
    return n, m.end()


def parse(text: str | int, what: str = "size") -> int:
    """A whole string that is one size -> bytes (e.g. '1G', '256M', '0x10000000')."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    t = str(text).strip()
    n, end = memparse(t, 0, f"{what} {text!r}")
    if end != len(t):
        raise SizeError(f"{what} {text!r}: unexpected {t[end:]!r} after the size; use e.g. 256M or 1G")
    return n


def fmt(n: int) -> str:
    """Bytes -> the shortest exact spelling (256M, 1G, 4096K, or plain bytes)."""
    for unit, shift in (("E", 60), ("P", 50), ("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if n and n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return str(n)
