"""Ask the kernel's own `conf` whether our .config is already what it would produce.

We run `make O=<build> olddefconfig` on a copy (KCONFIG_CONFIG points at it) so our
.config stays untouched, then compare symbol by symbol. Any difference means our
evaluation disagrees with Kbuild's (usually a toolchain variable), and the build
would not get what the ledger promised.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from kbuild.core.kconfigfile import read_values
from kbuild.core.proc import run
from kbuild.core.source import KernelTree
from kbuild.core.toolchain import Toolchain

def crosscheck(tree: KernelTree, toolchain: Toolchain, build_dir: Path, config: Path) -> dict:
    copy = build_dir / ".config.crosscheck"
    shutil.copyfile(config, copy)
    try:
        run(["make", "-s", "-C", str(tree.path), f"O={build_dir}", *toolchain.make_vars(),
             f"KCONFIG_CONFIG={copy.name}", "olddefconfig"], log=build_dir / "configure.log")
        ours, theirs = read_values(config), read_values(copy)
    finally:
        for leftover in (copy, copy.with_name(copy.name + ".old")):
            leftover.unlink(missing_ok=True)
    diffs = [{"symbol": s, "ours": ours.get(s, "(absent)"), "kernel": theirs.get(s, "(absent)")}
             for s in sorted(set(ours) | set(theirs)) if ours.get(s) != theirs.get(s)]
    return {"ok": not diffs, "differences": diffs}
