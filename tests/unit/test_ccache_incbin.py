"""ccache in depend mode is blind to `.incbin`: configs/ccache.toml keeps such objects out of the
cache, a build with an unlisted one is refused, and so is a bzImage whose payload is not the
kernel built beside it. Real ccache, gcc and make throughout."""
import os
import struct
import subprocess

import pytest

from kbuild.build import ccache, verify
from kbuild.core.errors import CheckFailed

pytestmark = pytest.mark.host_tools


MAKEFILE = """\
%.o: %.S
\tgcc -Wp,-MMD,$*.d -c -o $@ $<
%.o: %.c
\tgcc -Wp,-MMD,$*.d -c -o $@ $<
"""


def ccache_env(tmp_path) -> dict[str, str]:
    """Our ccache settings, a cache of the test's own, and gcc through Debian's ccache links."""
    return {**os.environ, "CCACHE_DIR": str(tmp_path / "cache"), "PATH": f"{ccache.MASQUERADE}:{os.environ['PATH']}",
            **ccache.SETTINGS}


def rodata(obj) -> bytes:
    """The embedded blob: the object's .rodata section."""
    return subprocess.run(["objcopy", "-O", "binary", "-j", ".rodata", str(obj), "/dev/stdout"],
                          capture_output=True, check=True).stdout


def build_twice(tmp_path, name: str, source: str, make_args: list[str], first_args: list[str] | None = None,
                ) -> tuple[bytes, bytes]:
    """make `name`.o with ccache (our settings) embedding AAAA, then BBBB; the two .rodata contents.
    `first_args` replaces `make_args` for the first build (to plant what an older build stored)."""
    (tmp_path / name).write_text(source)
    (tmp_path / "Makefile").write_text(MAKEFILE)
    obj = name.rsplit(".", 1)[0] + ".o"
    env = ccache_env(tmp_path)
    out = []
    for blob, args in ((b"AAAA", make_args if first_args is None else first_args), (b"BBBB", make_args)):
        (tmp_path / "blob").write_bytes(blob)
        (tmp_path / obj).unlink(missing_ok=True)
        subprocess.run(["make", "-s", "-C", str(tmp_path), *args, obj], env=env, check=True)
        out.append(rodata(tmp_path / obj))
    return out[0], out[1]


PIGGY = '.section .rodata\n.incbin "blob"\n'
C_INCBIN = 'asm(".section .rodata\\n.incbin \\"blob\\"\\n");\n'
POLICY = ccache.Policy((ccache.Uncached("p.o", "blob"), ccache.Uncached("%.gen.o", "blob")))


def test_plain_ccache_in_depend_mode_serves_the_stale_object(tmp_path):
    """The hazard itself, so the tests below prove the policy and not a fixed ccache."""
    assert build_twice(tmp_path, "p.S", PIGGY, []) == (b"AAAA", b"AAAA")


def test_a_stored_depend_mode_entry_is_served_in_direct_mode_too(tmp_path):
    """Why the listed objects bypass ccache instead of merely leaving depend mode: a cache that
    an older build filled (CI's, a user's) answers the direct-mode lookup with the stale object."""
    (tmp_path / "p.S").write_text(PIGGY)
    env = ccache_env(tmp_path)
    direct = {k: v for k, v in env.items() if k != "CCACHE_DEPEND"}
    got = []
    for blob, e in ((b"AAAA", env), (b"BBBB", direct)):
        (tmp_path / "blob").write_bytes(blob)
        subprocess.run(["gcc", "-Wp,-MMD,p.d", "-c", "-o", "p.o", "p.S"], cwd=tmp_path, env=e, check=True)
        got.append(rodata(tmp_path / "p.o"))
    assert got == [b"AAAA", b"AAAA"]


@pytest.mark.parametrize("name, source", [("p.S", PIGGY), ("fw.gen.c", C_INCBIN)])
def test_listed_targets_bypass_the_cache_even_when_it_holds_a_stale_entry(tmp_path, name, source):
    # the first build plants the entry an unprotected build would have stored
    assert build_twice(tmp_path, name, source, POLICY.make_args(), first_args=[]) == (b"AAAA", b"BBBB")


def test_the_shipped_policy_reaches_kbuild_sub_makes(tmp_path):
    """Kbuild compiles in sub-makes (`make -f scripts/Makefile.build obj=DIR DIR/x.o`): the
    --eval lines must travel there in MAKEFLAGS, for exactly the listed targets."""
    (tmp_path / "Makefile").write_text("all:\n\t$(MAKE) -s -f sub.mk arch/x86/boot/compressed/piggy.o kernel/fork.o\n")
    (tmp_path / "sub.mk").write_text("%.o:\n\t@echo \"$@ $${CCACHE_DISABLE:-cached}\"\n")
    out = subprocess.run(["make", "-s", "-C", str(tmp_path), *ccache.policy().make_args()],
                         capture_output=True, text=True, check=True).stdout.split("\n")
    assert "arch/x86/boot/compressed/piggy.o 1" in out and "kernel/fork.o cached" in out


def test_ordinary_sources_still_hit_the_cache(tmp_path):
    (tmp_path / "m.c").write_text("int answer(void) { return 42; }\n")
    (tmp_path / "Makefile").write_text(MAKEFILE)
    env = ccache_env(tmp_path)
    for _ in range(2):
        (tmp_path / "m.o").unlink(missing_ok=True)
        subprocess.run(["make", "-s", "-C", str(tmp_path), *POLICY.make_args(), "m.o"], env=env, check=True)
    stats = subprocess.run(["ccache", "--print-stats"], env=env, capture_output=True, text=True).stdout
    assert "direct_cache_hit\t1" in stats


def write_cmd(build, obj: str, src: str, text: str) -> None:
    path = build / src
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    d, base = os.path.split(obj)
    (build / d / f".{base}.cmd").write_text(f"cmd_{obj} := gcc -c -o {obj} {src}\n\nsource_{obj} := {src}\n\ndeps_{obj} := \\\n")


def test_a_build_with_an_unlisted_incbin_object_is_refused(tmp_path):
    write_cmd(tmp_path, "arch/x/p.o", "arch/x/p.S", PIGGY)   # POLICY lists p.o only at the top
    write_cmd(tmp_path, "kernel/fork.o", "kernel/fork.c", "int x;\n")
    with pytest.raises(CheckFailed, match=r"arch/x/p.o: its source arch/x/p.S embeds .*configs/ccache.toml"):
        ccache.check_uncached(tmp_path, POLICY)
    listed = ccache.Policy(POLICY.uncached + (ccache.Uncached("arch/x/p.o", "blob"),))
    assert ccache.check_uncached(tmp_path, listed) == 1


def test_the_shipped_policy_is_valid_and_covers_piggy():
    pol = ccache.policy()
    assert pol.covers("arch/x86/boot/compressed/piggy.o") and pol.covers("arch/arm64/boot/dts/x/y.dtb.o")
    assert pol.covers("drivers/base/firmware_loader/builtin/intel/ibt.sfi.gen.o")
    assert not pol.covers("kernel/fork.o") and not pol.covers("arch/x86/boot/compressed/misc.o")


def fake_bzimage(payload: bytes) -> bytes:
    setup_sects = 1
    head = bytearray((setup_sects + 1) * 512)
    head[0x1F1] = setup_sects
    head[0x202:0x206] = b"HdrS"
    struct.pack_into("<II", head, 0x248, 16, len(payload))
    return bytes(head) + b"\0" * 16 + payload + b"tail"


def test_bzimage_payload_must_be_the_kernel_built_beside_it(tmp_path):
    comp = tmp_path / "compressed"
    comp.mkdir()
    (comp / "vmlinux.bin.gz").write_bytes(b"kernel-of-this-build")
    good, stale = tmp_path / "good", tmp_path / "stale"
    good.write_bytes(fake_bzimage(b"kernel-of-this-build"))
    stale.write_bytes(fake_bzimage(b"kernel-of-that-build"))
    verify.check_bzimage_payload(good, comp)
    with pytest.raises(CheckFailed, match="stale piggy.o"):
        verify.check_bzimage_payload(stale, comp)
