"""Parse a kernel tree's Kconfig with kconfiglib 14.1.0, made to understand 6.1 and 6.12.

Compatibility layer
-------------------
kconfiglib's last release (2020) predates one construct the 6.1 and 6.12 trees use:

* a bare ``modules`` attribute (kernel/module/Kconfig: ``config MODULES ... modules``).
  Linux 5.13 turned ``option modules`` into a first-level attribute. kconfiglib
  tokenises the bare line as ``[_T_MODULES]`` and gives up; we rewrite that token
  line to the old ``option modules`` spelling, which it understands. Help texts are
  not tokenised, so a help line reading "modules" is untouched.

and one evaluation difference that the olddefconfig cross-check exposed on defconfig:

* a bool/tristate symbol that something ``imply``-s (IMA_SECURE_AND_OR_TRUSTED_BOOT,
  NVMEM_LAYOUTS) is written by the C ``conf`` as ``# CONFIG_X is not set`` as soon as
  an implier is on, even when its own ``depends on`` is n (symbol.c: ``implied.tri !=
  no`` sets SYMBOL_WRITE). kconfiglib also requires the direct dependency and omits
  the line. We wrap ``Symbol.tri_value`` to set the write flag as conf does.

Everything else the two trees use (macros, ``$(shell,...)``, ``imply``, ranges,
``transitional`` is 6.18+) already parses; the integration tests parse both trees
and the olddefconfig cross-check confirms the evaluation.

Cache
-----
A parse costs about 1.5 s, most of it the ~90 toolchain probes behind `cc-option`.
The parsed (value-free) Kconfig object is pickled. The cache is keyed by the tree
path, the Kconfig environment and the identity of every toolchain program; before
use, the size and mtime of every Kconfig file and every `scripts/*.sh` it read are
compared, so an edited tree or a new compiler always reparses.
"""
from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import pickle
import sys
from pathlib import Path

import kconfiglib

from kbuild.core import fs
from kbuild.core.errors import BadInput
from kbuild.core.source import KernelTree, cache_root
from kbuild.core.toolchain import Toolchain

CACHE_FORMAT = 1


def _compat_tokenize(self, s, _orig=kconfiglib.Kconfig._tokenize):
    tokens = _orig(self, s)
    if len(tokens) == 2 and tokens[0] is kconfiglib._T_MODULES and tokens[1] is None:
        return [kconfiglib._T_OPTION, kconfiglib._T_MODULES, None]
    return tokens


_orig_tri_value = kconfiglib.Symbol.tri_value.fget


def _compat_tri_value(self):
    val = _orig_tri_value(self)
    if not self._write_to_conf and self.choice is None \
            and self.orig_type in (kconfiglib.BOOL, kconfiglib.TRISTATE) \
            and self.weak_rev_dep is not self.kconfig.n and kconfiglib.expr_value(self.weak_rev_dep):
        self._write_to_conf = True
    return val


def install_compat() -> None:
    """Teach kconfiglib the post-2020 syntax and conf's write rule for implied symbols."""
    if kconfiglib.Kconfig._tokenize is not _compat_tokenize:
        kconfiglib.Kconfig._tokenize = _compat_tokenize
    if kconfiglib.Symbol.tri_value.fget is not _compat_tri_value:
        kconfiglib.Symbol.tri_value = property(_compat_tri_value, kconfiglib.Symbol.tri_value.fset,
                                               doc=kconfiglib.Symbol.tri_value.__doc__)


@contextlib.contextmanager
def _kbuild_env(env: dict[str, str], cwd: Path):
    """Kconfig macros read os.environ and run in the cwd; set both, then restore."""
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    os.environ.update(env)
    os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)


@contextlib.contextmanager
def _gc_paused():
    """Unpickling 400k linked objects triggers many useless GC passes; skip them."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _stat_list(paths: list[str]) -> list[list]:
    out = []
    for p in paths:
        try:
            st = os.stat(p)
            out.append([p, st.st_size, st.st_mtime_ns])
        except OSError:
            out.append([p, -1, -1])
    return out


def _watched_files(kconf: kconfiglib.Kconfig, tree: KernelTree) -> list[str]:
    files = [str(tree.path / f) for f in kconf.kconfig_filenames]
    files += sorted(str(p) for p in (tree.path / "scripts").glob("*.sh"))
    return files


def _cache_paths(tree: KernelTree, env: dict[str, str], toolchain: Toolchain) -> tuple[Path, Path]:
    key = json.dumps([CACHE_FORMAT, kconfiglib.__version__ if hasattr(kconfiglib, "__version__") else "",
                      sys.version, str(tree.path), sorted(env.items()), toolchain.fingerprint()])
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    d = cache_root() / "kconfig"
    return d / f"{digest}.pickle", d / f"{digest}.json"


def _fresh(meta_path: Path) -> str | None:
    """The cache entry's digest if every file it was parsed from is unchanged, else None."""
    try:
        text = meta_path.read_text()
        meta = json.loads(text)
        if _stat_list([f for f, _, _ in meta["files"]]) == meta["files"]:
            return hashlib.sha256(text.encode()).hexdigest()
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def fresh_digest(tree: KernelTree, toolchain: Toolchain) -> str | None:
    """Identity of (tree Kconfig files, toolchain) if a parse of them is cached and current.

    Callers use it to prove "nothing changed" without parsing anything.
    """
    _, meta_path = _cache_paths(tree, toolchain.kconfig_env(tree), toolchain)
    return _fresh(meta_path)


def parse(tree: KernelTree, toolchain: Toolchain, *, use_cache: bool = True) -> kconfiglib.Kconfig:
    """Return a freshly parsed Kconfig (no values loaded) for `tree` under `toolchain`."""
    install_compat()
    env = toolchain.kconfig_env(tree)
    pickle_path, meta_path = _cache_paths(tree, env, toolchain)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 100_000))
    if use_cache and _fresh(meta_path) and pickle_path.exists():
        try:
            with open(pickle_path, "rb") as fh, _gc_paused():
                kconf = pickle.load(fh)
            kconf.warn_to_stderr = False
            return kconf
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError):
            pass  # a damaged cache entry is just a miss
    work = cache_root() / "kconfig-probe"
    work.mkdir(parents=True, exist_ok=True)
    with _kbuild_env(env, work):
        try:
            kconf = kconfiglib.Kconfig("Kconfig", warn_to_stderr=False)  # relative: srctree is set
        except kconfiglib.KconfigError as e:
            raise BadInput(f"{tree.path}: Kconfig does not parse: {str(e).splitlines()[0]}") from None
    if use_cache:
        _store(kconf, tree, pickle_path, meta_path)
    return kconf


def _store(kconf: kconfiglib.Kconfig, tree: KernelTree, pickle_path: Path, meta_path: Path) -> None:
    readline, kconf._readline = kconf._readline, None  # bound to a closed file; not picklable
    try:
        pickle_path.parent.mkdir(parents=True, exist_ok=True)
        for path, data in ((pickle_path, pickle.dumps(kconf, protocol=pickle.HIGHEST_PROTOCOL)),
                           (meta_path, json.dumps({"files": _stat_list(_watched_files(kconf, tree))}).encode())):
            fs.write_atomic(path, data)
    except OSError:
        pass  # caching is an optimisation; a full disk must not fail the configure
    finally:
        kconf._readline = readline


def sym_location(sym) -> str:
    """`file:line` of a symbol's first definition, as kconfiglib records it."""
    if getattr(sym, "nodes", None):
        node = sym.nodes[0]
        return f"{node.filename}:{node.linenr}"
    return "(not defined in this tree)"
