"""ccache for kernel builds: depend mode, minus the objects it cannot see into.

Depend mode takes a compile's inputs from the compiler's -MD list, and a file embedded with
`.incbin` is never on it: x86's piggy.S embeds the compressed kernel, kernel/configs.c the
config, certs/*.S the keys, arm64's vdso-wrap.S the vdso. With an unchanged source text, ccache
would serve an object that embeds another build's file, so a bzImage could boot a kernel other
than its vmlinux. An entry that depend mode stored is served in direct mode too, so those
objects (configs/ccache.toml) bypass ccache altogether, and every other compile pays nothing.
"""
from __future__ import annotations

import fnmatch
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from kbuild.core import config
from kbuild.core.errors import CheckFailed
from kbuild.core.paths import CONFIGS

MASQUERADE = "/usr/lib/ccache"     # Debian's ccache: one link per installed compiler name
# - depend mode stores a result without running the preprocessor a second time (the kernel's
#   -Wp,-MMD gives ccache the dependency list), so a cold cache costs about what no cache does;
# - base_dir / makes absolute paths in the command line relative to the build folder, and the
#   folder itself stays out of the hash (our prefix maps keep it out of the objects too);
# - our prefix maps name the folders but always map them to ".", so they leave the hash; the
#   -D marker (stage.PREFIX_MAP_MARKER) keeps these objects apart from builds without the maps;
# - the inode cache keeps each header's hash by inode and mtime: a kernel object names ~300
#   headers, and without it every lookup and every store hashes all of them again.
SETTINGS = {"CCACHE_DEPEND": "1", "CCACHE_BASEDIR": "/", "CCACHE_NOHASHDIR": "1", "CCACHE_INODECACHE": "1",
            "CCACHE_IGNOREOPTIONS": "-ffile-prefix-map=* -Wa,--debug-prefix-map=*"}
POLICY = CONFIGS / "ccache.toml"


@dataclass(frozen=True)
class Uncached:
    target: str      # a make target or `%` pattern, relative to the build folder
    embeds: str      # what its source pulls in with .incbin (for the reader)


@dataclass(frozen=True)
class Policy:
    uncached: tuple[Uncached, ...]

    def make_args(self) -> list[str]:
        """make options that compile these targets with ccache off. `--eval` travels to every
        Kbuild sub-make in MAKEFLAGS, and a target-specific export reaches only that recipe."""
        return [f"--eval={u.target}: export CCACHE_DISABLE=1" for u in self.uncached]

    def covers(self, target: str) -> bool:
        return any(fnmatch.fnmatchcase(target, u.target.replace("%", "*")) for u in self.uncached)


def policy(path: Path = POLICY) -> Policy:
    return config.cached(Policy, path)


def available() -> bool:
    return os.path.isdir(MASQUERADE) and shutil.which("ccache") is not None


def path_head() -> str | None:
    """What leads PATH so that `gcc` (and each cross compiler) is ccache; None without ccache."""
    return MASQUERADE if available() else None


def compiled_sources(build_dir: Path):
    """(object, source) for every object Kbuild compiled in `build_dir`, from its .cmd files."""
    for cmd in build_dir.rglob(".*.o.cmd"):
        try:
            text = cmd.read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("source_") and " := " in line:
                obj, src = line[len("source_"):].split(" := ", 1)
                yield obj, Path(src.strip())
                break


def check_uncached(build_dir: Path, pol: Policy | None = None) -> int:
    """Refuse a build in which ccache may have served an object whose source embeds a file:
    every compiled source that contains `.incbin` must be listed in configs/ccache.toml.
    Returns how many such objects the build has (all listed)."""
    pol = pol or policy()
    seen = 0
    for obj, src in compiled_sources(build_dir):
        if src.suffix not in (".S", ".s", ".c"):
            continue
        path = src if src.is_absolute() else build_dir / src
        try:
            if b".incbin" not in path.read_bytes():
                continue
        except OSError:
            continue
        if not pol.covers(obj):
            raise CheckFailed(f"{build_dir / obj}: its source {src} embeds a file with .incbin, which ccache's "
                              f"depend mode cannot see, and {POLICY.name} does not keep it uncached; add "
                              f'[[uncached]] target = "{obj}" to configs/{POLICY.name} and rebuild with --no-ccache once')
        seen += 1
    return seen
