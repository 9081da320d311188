"""The toolchain Kbuild would use, and the environment its Kconfig macros read.

Kconfig evaluates `$(CC)`, `$(LD)`, `cc-option`, `$(PAHOLE)` ... at parse time, so
toolchain-dependent symbols (CC_IS_GCC, GCC_VERSION, PAHOLE_VERSION, AS_HAS_*,
DWARF5 support) only come out as the kernel's own `conf` computes them if we export
the same variables the top-level Makefile exports. The olddefconfig cross-check
proves that we did.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field

from kbuild.core import arch as archmod
from kbuild.core.errors import MissingTool
from kbuild.core.proc import run
from kbuild.core.source import KernelTree

@dataclass(frozen=True)
class Toolchain:
    """Program names exactly as Kbuild spells them (`make CC=... LD=...`)."""

    arch: str = "x86_64"
    cross_compile: str = ""
    cc: str = "gcc"
    ld: str = "ld"
    objcopy: str = "objcopy"
    pahole: str = "pahole"
    rustc: str = "rustc"
    bindgen: str = "bindgen"
    hostcc: str = "gcc"
    hostcxx: str = "g++"
    _version_text: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def for_arch(cls, arch: archmod.Arch) -> "Toolchain":
        """Kbuild's toolchain for `arch` on this host: its ARCH, and CROSS_COMPILE unless native."""
        return cls(arch=arch.name, cross_compile=arch.cross_prefix())

    @property
    def srcarch(self) -> str:
        return archmod.srcarch(self.arch)

    def tool(self, name: str) -> str:
        return self.cross_compile + getattr(self, name) if name in ("cc", "ld", "objcopy") \
            else getattr(self, name)

    def cc_version_text(self) -> str:
        """First line of `$(CC) --version` without '#', as the top Makefile computes it."""
        if "cc" not in self._version_text:
            try:
                out = run([self.tool("cc"), "--version"], env={"LC_ALL": "C"}, check=False).output
            except MissingTool:
                out = ""
            self._version_text["cc"] = (out.splitlines() or [""])[0].replace("#", "")
        return self._version_text["cc"]

    def make_vars(self) -> list[str]:
        """Variables passed on every `make` command line, so Kbuild and we agree."""
        return [f"ARCH={self.arch}", f"CROSS_COMPILE={self.cross_compile}",
                f"CC={self.tool('cc')}", f"LD={self.tool('ld')}", f"HOSTCC={self.hostcc}"]

    def kconfig_env(self, tree: KernelTree) -> dict[str, str]:
        """The variables Kconfig files read (kconfiglib's `env_vars` on 6.1 and 6.12)."""
        v = tree.version
        return {
            "srctree": str(tree.path),
            "ARCH": self.arch,
            "SRCARCH": self.srcarch,
            "CC": self.tool("cc"),
            "LD": self.tool("ld"),
            "OBJCOPY": self.tool("objcopy"),
            "PAHOLE": self.pahole,
            "RUSTC": self.rustc,
            "BINDGEN": self.bindgen,
            "HOSTCC": self.hostcc,
            "HOSTCXX": self.hostcxx,
            "CC_VERSION_TEXT": self.cc_version_text(),
            "KERNELVERSION": f"{v.version}.{v.patchlevel}.{v.sublevel}{v.extraversion}",
        }

    def fingerprint(self) -> list[str]:
        """Identity of every program Kconfig may run: resolved path, size and mtime."""
        out = []
        for name in ("cc", "ld", "objcopy", "pahole", "rustc", "bindgen", "hostcc", "hostcxx"):
            prog = self.tool(name)
            path = shutil.which(prog)
            if path:
                real = os.path.realpath(path)
                st = os.stat(real)
                out.append(f"{prog}={real}:{st.st_size}:{st.st_mtime_ns}")
            else:
                out.append(f"{prog}=absent")
        return out
