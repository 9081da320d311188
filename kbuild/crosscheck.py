"""Ask the kernel's own `conf` whether our .config is already what it would produce.

We run `make O=<build> olddefconfig` on a copy (KCONFIG_CONFIG points at it) so our
.config stays untouched, then compare symbol by symbol. Any difference means our
evaluation disagrees with Kbuild's (usually a toolchain variable), and the build
would not get what the ledger promised.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

from .proc import run
from .source import KernelTree
from .toolchain import Toolchain

_LINE = re.compile(r"^(?:CONFIG_([A-Za-z0-9_]+)=(.*)|# CONFIG_([A-Za-z0-9_]+) is not set)$")


def read_values(path: Path) -> dict[str, str]:
    """Symbol -> value as written in a .config ('n' for `is not set`)."""
    out = {}
    for line in path.read_text(errors="replace").splitlines():
        m = _LINE.match(line.strip())
        if m:
            if m.group(1):
                out[m.group(1)] = m.group(2)
            else:
                out[m.group(3)] = "n"
    return out


def crosscheck(tree: KernelTree, toolchain: Toolchain, build_dir: Path, config: Path) -> dict:
    copy = build_dir / ".config.crosscheck"
    shutil.copyfile(config, copy)
    try:
        run(["make", "-s", "-C", str(tree.path), f"O={build_dir}", *toolchain.make_vars(),
             f"KCONFIG_CONFIG={copy.name}", "olddefconfig"], log=build_dir / "configure.log", package="make")
        ours, theirs = read_values(config), read_values(copy)
    finally:
        for leftover in (copy, copy.with_name(copy.name + ".old")):
            leftover.unlink(missing_ok=True)
    diffs = [{"symbol": s, "ours": ours.get(s, "(absent)"), "kernel": theirs.get(s, "(absent)")}
             for s in sorted(set(ours) | set(theirs)) if ours.get(s) != theirs.get(s)]
    return {"ok": not diffs, "differences": diffs}
