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
# Options that take a value, each with the grammar of that value (VALUE below).
SHORT_VALUE = {"b": "int", "d": "levels", "L": "size", "x": "path", "i": "path", "g": "path"}
LONG_VALUE = {"message-level": "int", "config": "path", "eppic": "path", "num-threads": "int",
              "cyclic-buffer": "int", "splitblock-size": "int", "work-dir": "path",
              "xen-syms": "path", "xen-vmcoreinfo": "path", "xen_phys_start": "hex",
              "vtop": "hex", "diskset": "path"}
LONG_FLAGS = frozenset({"split", "reassemble", "non-mmap", "non-cyclic", "dump-dmesg", "partial-dmesg",
                        "mem-usage", "dry-run", "show-stats", "check-params"})
# An absolute path that every consumer takes literally: kdump.conf (where `#` starts a comment),
# kdump-config's unquoted $MAKEDUMP_ARGS (word splitting and globbing) and shell scripts.
# Portable file name characters only; each part non-empty, no `.` or `..` parts.
PATH = re.compile(r"(?:/(?!\.\.?(?:/|$))[A-Za-z0-9._+-]+)+")
PATH_RULE = "an absolute path of letters, digits and . _ + - (no '.' or '..' parts, no trailing '/')"
VALUE = {"int": (re.compile(r"[0-9]{1,9}"), "a decimal number"),
         "size": (re.compile(r"[0-9]{1,19}[KMGkmg]?"), "a size such as 512M"),
         "hex": (re.compile(r"(?:0x)?[0-9a-fA-F]{1,16}"), "a hexadecimal address"),
         "path": (PATH, PATH_RULE),
         "levels": (re.compile(r"[0-9]{1,2}(?:,[0-9]{1,2})*"), "dump levels such as 31 or 31,11,1")}


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
                options.append((f"--{name}", _value(f"--{name}", LONG_VALUE[name], value)))
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
                options.append((f"-{ch}", _value(f"-{ch}", SHORT_VALUE[ch], value)))
                break
            if ch not in SHORT_FLAGS:
                raise CheckFailed(f"core_collector: unknown makedumpfile option -{ch}")
            flags.add(ch)
            options.append((f"-{ch}", None))
            if f"-{ch}" in COMPRESSION:
                comp.append(f"-{ch}")
    return Collector(words[0], tuple(args), frozenset(flags), tuple(levels), tuple(comp), tuple(options))


def _value(option: str, kind: str, value: str) -> str:
    """An option's value in its own grammar; nothing else can pass kdump's unquoted expansion."""
    pattern, rule = VALUE[kind]
    if not pattern.fullmatch(value):
        raise CheckFailed(f"core_collector: {option} {value!r} is not {rule}")
    return value


def settings_collector(core_collector: str) -> Collector:
    """A core_collector as a settings file may give it: `makedumpfile` by name (both families run
    their own), then options from the table above, single spaces, no quoting. Such a value is the
    same word list in /etc/kdump.conf and in kdump-tools' MAKEDUMP_ARGS, which neither quotes."""
    words = core_collector.split(" ")
    if words[0] != PROGRAM:
        raise CheckFailed(f"core_collector {core_collector!r}: must start with {PROGRAM!r} by name "
                          "(not a path: each distro runs its own; Debian's kdump-tools only takes "
                          "makedumpfile arguments)")
    if "" in words:
        raise CheckFailed(f"core_collector {core_collector!r}: separate the words with single spaces")
    bad = next((w for w in words if not _WORD.fullmatch(w)), None)
    if bad is not None:
        raise CheckFailed(f"core_collector {core_collector!r}: {bad!r} has a character kdump would "
                          "not pass on literally (quotes, globs, '#', '$', '%'); use letters, "
                          "digits and . _ , : / + = -")
    return parse(core_collector)


_WORD = re.compile(r"[A-Za-z0-9._,:/+=-]+")


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
