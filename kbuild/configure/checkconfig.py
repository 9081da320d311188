"""Check an existing .config (any file, e.g. Debian's /boot/config-*) against the requirements.

We judge the values the file states, because those are what a kernel built from it
has; the tree supplies the version (which symbols apply) and `file:line` for hints.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kbuild.configure import kconfig_parse
from kbuild.configure import requirements
from kbuild.core.kconfigfile import read_values
from kbuild.core.errors import BadInput
from kbuild.core.source import KernelTree
from kbuild.core.toolchain import Toolchain


@dataclass
class CapabilityCheck:
    capability: str
    ok: bool
    why: str


@dataclass
class ConfigCheck:
    config: str
    kernel: str
    results: list[CapabilityCheck]
    warnings: list[CapabilityCheck] = field(default_factory=list)   # advice: printed, never a failure

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def to_json(self) -> str:
        return json.dumps({"config": self.config, "kernel": self.kernel, "ok": self.ok,
                           "results": [asdict(r) for r in self.results],
                           "warnings": [asdict(w) for w in self.warnings]}, indent=2)

    def lines(self) -> str:
        width = max(len(r.capability) for r in self.results + self.warnings)
        return "\n".join([f"{'PASS' if r.ok else 'FAIL'}  {r.capability.ljust(width)}  {r.why}"
                          for r in self.results]
                         + [f"WARN  {w.capability.ljust(width)}  {w.why}" for w in self.warnings])


def check_config(config: Path, tree: KernelTree, toolchain: Toolchain | None = None) -> ConfigCheck:
    try:
        values = read_values(config)
    except OSError as e:
        raise BadInput(f"{config}: cannot read ({e.strerror})") from None
    if not values:
        raise BadInput(f"{config}: no CONFIG_ lines; is this a kernel .config?")
    reqs = requirements.load(tree.version)
    kconf = kconfig_parse.parse(tree, toolchain or Toolchain())

    def where(name: str) -> str:
        sym = kconf.syms.get(name)
        return f" ({kconfig_parse.sym_location(sym)})" if sym is not None and sym.nodes else ""

    def shown(name: str) -> str:
        v = values.get(name)
        return f"CONFIG_{name}={v}" if v not in (None, "n") else f"CONFIG_{name} is not set"

    results = []
    for cap in reqs.capabilities:
        ok = cap.held(values)
        if ok:
            on = [s for s in cap.symbols if values.get(s) == "y"]
            why = ", ".join(f"CONFIG_{s}=y" for s in on)
        else:
            missing = [s for s in cap.symbols if values.get(s) != "y"]
            joiner = " and " if not cap.any else " or "
            why = f"needs {joiner.join('CONFIG_' + s + '=y' for s in missing)}: " + \
                "; ".join(shown(s) + where(s) for s in missing) + f". {cap.reason}"
        results.append(CapabilityCheck(cap.id, ok, why))
    for f in reqs.forbidden:
        on = values.get(f.symbol) not in (None, "n")
        results.append(CapabilityCheck(f"no-{f.symbol.lower().replace('_', '-')}", not on,
                                       f"{shown(f.symbol)}{where(f.symbol)}: {f.reason}" if on else shown(f.symbol)))
    warnings = [CapabilityCheck(a.symbol.lower().replace("_", "-"), False, f"{shown(a.symbol)}{where(a.symbol)}: {a.reason}")
                for a in reqs.advice if values.get(a.symbol) != "y"]
    return ConfigCheck(str(config), str(tree.version), results, warnings)
