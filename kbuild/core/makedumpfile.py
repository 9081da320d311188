"""makedumpfile's command line, read the way its getopt_long reads it (makedumpfile.c, 1.7.x).

One table serves the kdump settings lint (what the distro tools will run) and the crash test
(which format the dump must be in). `-D` (debug) and `-p` (snappy) are flags: in `-DE` the `E`
is the ELF option, not an argument.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from kbuild.core.errors import CheckFailed

PROGRAM = "makedumpfile"
COMPRESSION = {"-c": "zlib", "-l": "lzo", "-p": "snappy", "-z": "zstd"}   # at most one
SHORT_FLAGS = frozenset("clpzeEFRXDfv")
SHORT_VALUE = frozenset("bdLxig")
LONG_VALUE = frozenset({"message-level", "config", "eppic", "num-threads", "cyclic-buffer",
                        "splitblock-size", "work-dir", "xen-syms", "xen-vmcoreinfo", "xen_phys_start",
                        "vtop", "diskset"})
LONG_FLAGS = frozenset({"split", "reassemble", "non-mmap", "non-cyclic", "dump-dmesg", "partial-dmesg",
                        "mem-usage", "dry-run", "show-stats", "check-params"})


@dataclass(frozen=True)
class Collector:
    """A core_collector split into its parts: the options as given, and what they mean."""

    program: str
    args: tuple[str, ...]
    flags: frozenset[str] = frozenset()      # short flags given, e.g. {"c", "E"}
    dump_levels: tuple[int, ...] = ()
    compression: tuple[str, ...] = ()
    options: tuple[tuple[str, str | None], ...] = ()   # (option, value) in order, e.g. ("-d", "31")

    @property
    def output_format(self) -> str:
        """kdump-compressed (the default), elf (-E) or flattened (-F)."""
        return "flattened" if "F" in self.flags else "elf" if "E" in self.flags else "kdump-compressed"


def parse(core_collector: str) -> Collector:
    """Split a makedumpfile command line; CheckFailed names the first thing makedumpfile would refuse."""
    try:
        words = shlex.split(core_collector)
    except ValueError as e:
        raise CheckFailed(f"core_collector {core_collector!r}: {e}") from None
    if not words or Path(words[0]).name != PROGRAM:
        raise CheckFailed(f"core_collector {core_collector!r}: must run makedumpfile (Debian's "
                          "kdump-tools only takes makedumpfile arguments)")
    args = words[1:]
    levels: list[int] = []
    comp: list[str] = []
    flags: set[str] = set()
    options: list[tuple[str, str | None]] = []
    i = 0
    while i < len(args):
        tok, i = args[i], i + 1
        if tok.startswith("--"):
            name, eq, value = tok[2:].partition("=")
            if name in LONG_VALUE:
                if not eq:
                    if i >= len(args):
                        raise CheckFailed(f"core_collector: --{name} needs a value")
                    value, i = args[i], i + 1
                options.append((f"--{name}", value))
            elif name in LONG_FLAGS and not eq:
                options.append((f"--{name}", None))
            else:
                raise CheckFailed(f"core_collector: unknown makedumpfile option --{name}")
            continue
        if not tok.startswith("-") or tok == "-":
            raise CheckFailed(f"core_collector: unexpected argument {tok!r}; kdump adds the vmcore "
                              "and dump file itself")
        for j, ch in enumerate(tok[1:], start=2):   # a cluster such as -cd31
            if ch in SHORT_VALUE:
                value = tok[j:]
                if not value:
                    if i >= len(args):
                        raise CheckFailed(f"core_collector: -{ch} needs a value")
                    value, i = args[i], i + 1
                if ch == "d":
                    levels.extend(dump_levels(value))
                options.append((f"-{ch}", value))
                break
            if ch not in SHORT_FLAGS:
                raise CheckFailed(f"core_collector: unknown makedumpfile option -{ch}")
            flags.add(ch)
            options.append((f"-{ch}", None))
            if f"-{ch}" in COMPRESSION:
                comp.append(f"-{ch}")
    return Collector(words[0], tuple(args), frozenset(flags), tuple(levels), tuple(comp), tuple(options))


def dump_levels(value: str) -> list[int]:
    """`-d 31`, or makedumpfile's retry list `-d 31,11,1`; each level is a 5-bit page mask."""
    out = []
    for part in value.split(","):
        if not re.fullmatch(r"[0-9]+", part) or not 0 <= int(part) <= 31:
            raise CheckFailed(f"core_collector: dump level -d {value} is outside 0-31 (a mask of "
                              "zero, cache, cache-private, user and free pages)")
        out.append(int(part))
    return out


def expected_format(core_collector: str) -> str:
    """The format a collector writes: makedumpfile's by its options; any other program copies
    /proc/vmcore byte for byte (ELF)."""
    try:
        words = shlex.split(core_collector)
    except ValueError:
        words = []
    if not words or Path(words[0]).name != PROGRAM:
        return "elf"
    return parse(core_collector).output_format
