"""Config fragments: `CONFIG_X=value` / `# CONFIG_X is not set` files, read strictly.

Kbuild's merge_config.sh silently ignores typos and drops what does not survive.
We refuse malformed lines, unknown symbols and wrong types up front (exit 2),
before anything is written, so a 40-minute build never starts on a typo.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path

import kconfiglib

from kbuild.core import kconfigfile
from kbuild.core.errors import BadInput
from kbuild.configure.kconfig_parse import sym_location

_TYPE_NAMES = {kconfiglib.BOOL: "bool", kconfiglib.TRISTATE: "tristate", kconfiglib.STRING: "string",
               kconfiglib.INT: "int", kconfiglib.HEX: "hex"}


@dataclass(frozen=True)
class Assignment:
    """One requested value. `value` is y/m/n for bool/tristate, the raw text otherwise."""

    name: str
    value: str
    source: str  # "file:line"
    origin: str  # "profile <name>" or "fragment"
    quoted: bool = False  # string values must be written "like this"


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        body = raw[1:-1]
        return re.sub(r'\\(.)', r"\1", body)
    return raw


def parse_file(path: Path, origin: str) -> list[Assignment]:
    """Read a fragment; every line is an assignment, `# ...` comment or blank."""
    try:
        lines = Path(path).read_text().splitlines()
    except UnicodeDecodeError:
        raise BadInput(f"{path}: not a text file; expected a Kconfig fragment") from None
    except OSError as e:
        raise BadInput(f"{path}: cannot read fragment ({e.strerror})") from None
    seen: dict[str, Assignment] = {}
    out: list[Assignment] = []
    for n, line in enumerate(lines, 1):
        text = line.strip()
        where = f"{path}:{n}"
        if not text:
            continue
        m = kconfigfile.LINE.match(text)   # the same line grammar as a .config
        if m and m.group(1):
            raw = m.group(2)
            a = Assignment(m.group(1), _unquote(raw), where, origin, quoted=raw.startswith('"'))
        elif m:
            a = Assignment(m.group(3), "n", where, origin)
        elif text.startswith("#") and not text.startswith("# CONFIG_"):
            continue
        else:
            raise BadInput(f"{where}: expected `CONFIG_X=value` or `# CONFIG_X is not set`, got {text!r}")
        prev = seen.get(a.name)
        if prev and prev.value != a.value:
            raise BadInput(f"{where}: CONFIG_{a.name}={a.value} contradicts {prev.source} "
                           f"(CONFIG_{a.name}={prev.value}); keep one of them")
        seen[a.name] = a
        out.append(a)
    return out


def validate(assignments: list[Assignment], kconf: kconfiglib.Kconfig) -> None:
    """Each symbol must exist in this tree and the value must fit its type."""
    for a in assignments:
        sym = kconf.syms.get(a.name)
        if sym is None or not sym.nodes:
            names = [s.name for s in kconf.unique_defined_syms]
            close = difflib.get_close_matches(a.name, names, n=3, cutoff=0.75)
            hint = f"; did you mean {', '.join('CONFIG_' + c for c in close)}?" if close else ""
            raise BadInput(f"{a.source}: CONFIG_{a.name} is not a symbol of this kernel tree{hint}")
        typ = sym.orig_type
        ok = {
            kconfiglib.BOOL: lambda v: v in ("y", "n"),
            kconfiglib.TRISTATE: lambda v: v in ("y", "m", "n"),
            kconfiglib.INT: lambda v: re.fullmatch(r"-?[0-9]+", v) is not None,
            kconfiglib.HEX: lambda v: re.fullmatch(r"0[xX][0-9a-fA-F]+", v) is not None,
            kconfiglib.STRING: lambda v: a.quoted,
        }.get(typ, lambda v: False)(a.value)
        if not ok:
            want = {kconfiglib.BOOL: "y or n", kconfiglib.TRISTATE: "y, m or n",
                    kconfiglib.INT: "a decimal integer", kconfiglib.HEX: "a 0x-prefixed hex number",
                    kconfiglib.STRING: 'a double-quoted string'}.get(typ, "a valid value")
            raise BadInput(f"{a.source}: CONFIG_{a.name} is a {_TYPE_NAMES.get(typ, 'untyped')} symbol "
                           f"({sym_location(sym)}); {a.value!r} is not {want}")
