"""ccache for kernel builds: depend mode, without its blind spot for `.incbin`.

Depend mode takes a compile's inputs from the compiler's -MD list, and a file embedded with
`.incbin` is never on it: x86's piggy.S embeds the compressed kernel, kernel/configs.c the
config, certs/*.S the keys, arm64's vdso-wrap.S the vdso. With an unchanged source text, ccache
would serve an object that embeds another build's file, so a bzImage could boot a kernel other
than its vmlinux. Direct mode sees the directive in the source and compiles uncached, so the
compilers come through wrappers that put such a source in direct mode.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from kbuild.core import fs
from kbuild.core.source import cache_root

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

WRAPPER = """#!/bin/sh
# {name} through ccache, written by kbuild.build.ccache: a source that embeds a file with
# .incbin leaves depend mode (blind to that file); direct mode then compiles it uncached.
for arg; do
    case $arg in
    -*) ;;
    *.S|*.c) if grep -qsF .incbin -- "$arg"; then unset CCACHE_DEPEND; fi ;;
    esac
done
exec {ccache} {real} "$@"
"""


def available() -> bool:
    return os.path.isdir(MASQUERADE) and shutil.which("ccache") is not None


def wrappers() -> Path | None:
    """A folder of compiler wrappers, one per name Debian's ccache masquerades as (gcc, cc, the
    cross compilers), each calling ccache with the real compiler; None without ccache."""
    if not available():
        return None
    ccache = shutil.which("ccache")
    plain = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                            if p and Path(p).resolve() != Path(MASQUERADE).resolve())
    folder = cache_root() / "ccache-wrappers"
    for name in sorted(os.listdir(MASQUERADE)):
        real = shutil.which(name, path=plain)
        if not real:
            continue
        text = WRAPPER.format(name=name, ccache=ccache, real=real)
        target = folder / name
        if not target.is_file() or target.read_text() != text:
            fs.write_atomic(target, text)
            target.chmod(0o755)
    return folder
