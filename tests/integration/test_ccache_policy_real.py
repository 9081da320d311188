"""configs/ccache.toml against the real trees: every source of an arch we build that embeds a
file with `.incbin`, and every generator of such a source, is kept out of ccache."""
from __future__ import annotations

import subprocess

from kbuild.build import ccache

OTHER_ARCHES = ("alpha", "arc", "arm", "csky", "hexagon", "ia64", "loongarch", "m68k", "microblaze", "mips",
                "nios2", "openrisc", "parisc", "powerpc", "riscv", "s390", "sh", "sparc", "um", "xtensa")
# files that write `.incbin` into a source generated in the build folder, and that object's target
GENERATORS = {"arch/x86/boot/compressed/mkpiggy.c": "arch/x86/boot/compressed/piggy.o",
              "scripts/Makefile.lib": "arch/arm64/boot/dts/arm/foundation-v8.dtb.o",
              "scripts/Makefile.dtbs": "arch/arm64/boot/dts/arm/foundation-v8.dtb.o",
              "drivers/base/firmware_loader/builtin/Makefile": "drivers/base/firmware_loader/builtin/regulatory.db.gen.o"}
NOT_BUILT = ("arch/x86/um/",)   # UML's vdso: ARCH=um, never one of ours


def incbin_files(tree) -> list[str]:
    out = subprocess.run(["grep", "-rlF", "--exclude-dir=Documentation", "--exclude-dir=tools",
                          "--exclude-dir=samples", *(f"--exclude-dir={a}" for a in OTHER_ARCHES), ".incbin", "."],
                         cwd=tree.path, capture_output=True, text=True)
    assert out.returncode in (0, 1), out.stderr
    return sorted(p[2:] for p in out.stdout.split())


def test_every_incbin_source_and_generator_is_uncached(real_tree):
    pol = ccache.policy()
    files = [f for f in incbin_files(real_tree) if not f.startswith(NOT_BUILT)]
    assert "arch/x86/realmode/rmpiggy.S" in files and "kernel/configs.c" in files   # the scan sees them
    missed = []
    for f in files:
        if f in GENERATORS:
            target = GENERATORS[f]
        elif f.endswith((".S", ".c")):
            target = f.rsplit(".", 1)[0] + ".o"
        else:
            missed.append(f"{f}: neither a source nor a known generator")
            continue
        if not pol.covers(target):
            missed.append(f"{f} -> {target}")
    assert not missed, f"{real_tree.name}: add these to configs/ccache.toml: {missed}"
