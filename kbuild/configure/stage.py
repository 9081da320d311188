"""The configure stage: base config + profile + fragments -> requirements enforced -> .config.

Order matters and mirrors what a kernel engineer does by hand:
base (allnoconfig, the arch's defconfig or --base-config) -> profile fragments ->
user fragments (later wins) -> solve every request -> enforce the kdump requirements
-> keep the forbidden options off -> ledger -> write .config -> kernel cross-check.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import kconfiglib

from kbuild.configure import fragments as fragmod
from kbuild.configure import kconfig_parse
from kbuild.configure import requirements
from kbuild.configure.crosscheck import crosscheck
from kbuild.core import fs
from kbuild.core.errors import BadInput, CheckFailed
from kbuild.core.hashing import digest, file_sha256, tree_digest
from kbuild.core.kconfigfile import read_values
from kbuild.core.paths import CONFIGS, REPO
from kbuild.configure.kconfig_enforce import Enforcer
from kbuild.configure.ledger import LedgerEntry, RequirementLedger
from kbuild.core.settings import ConfigureSettings
from kbuild.core.source import KernelTree, locate
from kbuild.core.toolchain import Toolchain


STAMP = ".kbuild-configure.json"
KBUILD = Path(__file__).resolve().parents[1]


class ConfigureFailed(CheckFailed):
    """A request or requirement could not hold; carries the ledger that says why."""

    def __init__(self, result: "ConfigureResult", explanations: list[str]):
        self.result, self.ledger, self.explanations = result, result.ledger, explanations
        more = f" (and {len(explanations) - 1} more, see the ledger)" if len(explanations) > 1 else ""
        super().__init__(explanations[0] + more)


@dataclass
class ConfigureResult:
    tree: KernelTree
    config: Path | None
    ledger: RequirementLedger
    reused: bool = False  # nothing changed since the last successful configure


def config_digest(path: Path) -> str:
    """Hash of the symbol values only: Kbuild's syncconfig rewrites .config in conf's own
    layout (comments, order) on the first `make`, which must not count as a change."""
    return digest(sorted(read_values(Path(path)).items()))


def _inputs_digest(settings: ConfigureSettings, tree: KernelTree, toolchain: Toolchain) -> str | None:
    """Everything that can change the .config, hashed; None if the Kconfig parse is not current."""
    kdigest = kconfig_parse.fresh_digest(tree, toolchain)
    if kdigest is None:
        return None
    # The code that decides what .config we write (core and configure, derived): editing it
    # invalidates the rerun shortcut.
    code = tree_digest([KBUILD / "core", KBUILD / "configure"], "*.py")
    files = [CONFIGS / "requirements.toml"]
    if settings.profile:
        files += [CONFIGS / "profiles" / f"{settings.profile.name}.toml", *settings.profile.fragments]
        if settings.profile.base == "defconfig":
            files.append(tree.path / settings.arch.defconfig)
    if settings.base_config:
        files.append(settings.base_config)
    files += list(settings.fragments) + list(settings.policy_fragments)
    return digest([kdigest, code, str(tree.path), tree.tarball_sha256, str(tree.version), settings.label,
                   settings.arch.name, toolchain.make_vars(),
                   settings.crosscheck, [(str(f), file_sha256(f)) for f in files]])


def _reuse(stamp: Path, config: Path, inputs: str | None) -> RequirementLedger | None:
    if inputs is None or not stamp.exists() or not config.exists():
        return None
    try:
        data = json.loads(stamp.read_text())
        ours = HEADER_MARK in config.read_text()[:200]   # not rewritten in Kbuild's own words
        if ours and data["inputs"] == inputs and data["config_values"] == config_digest(config):
            return RequirementLedger.from_dict(data["ledger"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _write_stamp(stamp: Path, inputs: str | None, config: Path, ledger: RequirementLedger) -> None:
    if inputs is None:
        return
    fs.write_atomic(stamp, json.dumps({"inputs": inputs, "config_values": config_digest(config),
                                       "ledger": ledger.to_dict()}))


def _load_base(kconf: kconfiglib.Kconfig, settings: ConfigureSettings, tree: KernelTree,
               toolchain: Toolchain) -> None:
    if settings.base_config is not None:
        _load_config_file(kconf, settings.base_config)
    elif settings.profile.base == "defconfig":
        _load_config_file(kconf, tree.path / settings.arch.defconfig)
    else:  # allnoconfig: every settable symbol n, except those marked allnoconfig_y
        for sym in kconf.unique_defined_syms:
            sym.set_value(2 if sym.is_allnoconfig_y else 0)


def _load_config_file(kconf: kconfiglib.Kconfig, path: Path) -> None:
    try:
        kconf.load_config(str(path), replace=True)
    except (OSError, kconfiglib.KconfigError) as e:
        raise BadInput(f"{path}: cannot load as a kernel config ({e})") from None


def _requests(settings: ConfigureSettings) -> list[fragmod.Assignment]:
    out = []
    for f in settings.profile.fragments if settings.profile else ():
        out += fragmod.parse_file(f, f"profile {settings.profile.name}")
    for f in settings.fragments:
        out += fragmod.parse_file(f, "fragment")
    for f in settings.policy_fragments:
        out += fragmod.parse_file(f, "release policy")
    return out


def _display(a: fragmod.Assignment) -> str:
    return f'"{a.value}"' if a.quoted else a.value


def _rel(source: str) -> str:
    """configs/... paths relative to the repository, so ledgers do not leak machine paths."""
    root = str(REPO) + os.sep
    return source[len(root):] if source.startswith(root) else source


@dataclass
class Solution:
    """What solving left behind for the ledger: the winning request per symbol, and why
    a request or requirement could not hold (or what enforcing it pulled in)."""

    final: dict[str, fragmod.Assignment]
    blockers: dict[str, str]     # request source -> blocker
    cap_notes: dict[str, str]    # capability id (or id + ":changes", "forbid:SYM") -> note


def enforce(kconf: kconfiglib.Kconfig, reqs: requirements.Requirements,
            requests: list[fragmod.Assignment]) -> tuple[RequirementLedger, list[str]]:
    """Apply requests and requirements to `kconf`; return the ledger and explanations."""
    solution = solve(kconf, reqs, requests)
    return ledger_for(kconf, reqs, requests, solution)


def solve(kconf: kconfiglib.Kconfig, reqs: requirements.Requirements,
          requests: list[fragmod.Assignment]) -> Solution:
    """Requests first (the last per symbol wins, then locked), then each capability, then the
    forbidden options off; the solver explains what blocked each one."""
    prefer = {c.symbols[0]: list(c.prefer) for c in reqs.capabilities if c.prefer}
    solver = Enforcer(kconf, prefer)
    final = {a.name: a for a in requests}  # the last request per symbol wins
    for a in final.values():
        solver.lock(a.name, a.value, f"{a.origin} ({_rel(a.source)})")
    blockers: dict[str, str] = {}
    for a in final.values():
        b = solver.request(a.name, a.value)
        if b:
            blockers[a.source] = str(b)
    cap_notes: dict[str, str] = {}
    for cap in reqs.capabilities:
        targets = cap.symbols
        if cap.any and any(kconf.syms[s].tri_value == 2 for s in targets if s in kconf.syms):
            continue
        for name in targets[:1] if cap.any else targets:
            if name not in kconf.syms or not kconf.syms[name].nodes:
                cap_notes[cap.id] = f"{name} is not defined in this tree (requirements data for {reqs.version})"
                continue
            mark = len(solver.changes)
            b = solver.request(name, "y")
            if b:
                cap_notes[cap.id] = str(b)
            else:
                solver.lock(name, "y", f"requirement {cap.id}")
                pulled = [f"{s}={v}" for s, v in solver.changes[mark:] if s != name]
                if pulled:
                    cap_notes.setdefault(cap.id + ":changes", "enabled " + ", ".join(dict.fromkeys(pulled)))
    for f in reqs.forbidden:
        if f.symbol in kconf.syms:
            b = solver.request(f.symbol, "n")
            if b:
                cap_notes["forbid:" + f.symbol] = str(b)
    return Solution(final, blockers, cap_notes)


def ledger_for(kconf: kconfiglib.Kconfig, reqs: requirements.Requirements, requests: list[fragmod.Assignment],
               sol: Solution) -> tuple[RequirementLedger, list[str]]:
    """One ledger line per request, capability and forbidden option; explanations for failures."""
    final, blockers, cap_notes = sol.final, sol.blockers, sol.cap_notes
    ledger = RequirementLedger()
    for a in requests:
        sym = kconf.syms[a.name]
        source = f"{a.origin} ({_rel(a.source)})"
        if final[a.name] is not a:
            ledger.add(LedgerEntry(a.name, source, _display(a), sym.str_value, "overridden",
                                   f"superseded by {_rel(final[a.name].source)}"))
            continue
        ok = sym.str_value == a.value
        why = "" if ok else blockers.get(a.source) or f"evaluates to {sym.str_value}"
        ledger.add(LedgerEntry(a.name, source, _display(a), sym.str_value, "pass" if ok else "fail", why))
    for cap in reqs.capabilities:
        vals = {s: (kconf.syms[s].str_value if s in kconf.syms and kconf.syms[s].nodes else "undefined")
                for s in cap.symbols}
        held = cap.held(vals)
        why = cap_notes.get(cap.id, "") if not held else cap_notes.get(cap.id + ":changes", "")
        ledger.add(LedgerEntry("|".join(cap.symbols), f"requirement {cap.id}",
                               "y (any)" if cap.any else "y",
                               " ".join(f"{s}={v}" for s, v in vals.items()) if len(vals) > 1 else next(iter(vals.values())),
                               "pass" if held else "fail", why or ("" if held else cap.reason)))
    for f in reqs.forbidden:
        val = kconf.syms[f.symbol].str_value if f.symbol in kconf.syms else "undefined"
        held = val in ("n", "undefined")
        ledger.add(LedgerEntry(f.symbol, "requirement (must stay off)", "n", val,
                               "pass" if held else "fail", "" if held else cap_notes.get("forbid:" + f.symbol, f.reason)))
    failures = sorted(ledger.failures, key=lambda e: not e.source.startswith("requirement"))
    explanations = [f"{e.source}: CONFIG_{e.symbol} requested {e.requested}, got {e.effective}: {e.why}"
                    for e in failures]
    return ledger, explanations


HEADER_MARK = "written by kbuild (kconfiglib)"


def _write_config(kconf: kconfiglib.Kconfig, path: Path, tree: KernelTree) -> None:
    with fs.atomic_path(path) as tmp:
        kconf.write_config(str(tmp), header=f"#\n# Linux {tree.version} Kernel Configuration, "
                                          f"{HEADER_MARK}\n#\n", save_old=False)


def configure(settings: ConfigureSettings, toolchain: Toolchain | None = None) -> ConfigureResult:
    """Write <build>/.config, or reuse it when no input changed since it was written and checked.
    ConfigureFailed (with the ledger) when a request or requirement cannot hold."""
    toolchain = toolchain or Toolchain.for_arch(settings.arch)
    if toolchain.arch != settings.arch.name:
        raise BadInput(f"the toolchain targets {toolchain.arch} but --arch is {settings.arch.name}")
    tree = locate(settings.source)
    reqs = requirements.load(tree.version)
    requests = _requests(settings)  # syntax errors before the (slower) parse
    build_dir = settings.build_dir or settings.default_build_dir(tree.name)
    config, stamp = build_dir / ".config", build_dir / STAMP
    inputs = _inputs_digest(settings, tree, toolchain)
    ledger = _reuse(stamp, config, inputs)
    if ledger is not None:
        return ConfigureResult(tree, config, ledger, reused=True)
    stamp.unlink(missing_ok=True)
    kconf = kconfig_parse.parse(tree, toolchain)
    fragmod.validate(requests, kconf)
    _load_base(kconf, settings, tree, toolchain)
    for a in requests:  # as user values first, so later solving sees the whole request set
        kconf.syms[a.name].set_value(a.value)
    ledger, explanations = enforce(kconf, reqs, requests)
    if explanations:
        raise ConfigureFailed(ConfigureResult(tree, None, ledger), explanations)
    _write_config(kconf, config, tree)
    if settings.crosscheck:
        ledger.crosscheck = crosscheck(tree, toolchain, build_dir, config)
        if not ledger.crosscheck["ok"]:
            diffs = ledger.crosscheck["differences"]
            names = ", ".join(d["symbol"] for d in diffs[:10])
            raise ConfigureFailed(ConfigureResult(tree, config, ledger), [
                f"the kernel's `make olddefconfig` changes {len(diffs)} symbol(s) of our .config: {names}"])
    _write_stamp(stamp, inputs or _inputs_digest(settings, tree, toolchain), config, ledger)
    return ConfigureResult(tree, config, ledger)
