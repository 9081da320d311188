"""ccache in depend mode is blind to `.incbin`: the wrappers keep such objects out of the cache,
and the build refuses a bzImage whose payload is not the kernel built beside it."""
import os
import struct
import subprocess

import pytest

from kbuild.build import ccache, verify
from kbuild.core.errors import CheckFailed

pytestmark = pytest.mark.host_tools


def compile_twice(tmp_path, path_head: str, name: str, source: str) -> tuple[bytes, bytes]:
    """Compile `source` with the embedded blob AAAA, then BBBB; return the two .rodata contents."""
    (tmp_path / name).write_text(source)
    env = {**os.environ, "CCACHE_DIR": str(tmp_path / "cache"), "PATH": f"{path_head}:{os.environ['PATH']}",
           **ccache.SETTINGS}
    out = []
    for blob in (b"AAAA", b"BBBB"):
        (tmp_path / "blob").write_bytes(blob)
        subprocess.run(["gcc", "-Wp,-MMD,p.d", "-c", "-o", "p.o", name], cwd=tmp_path, env=env, check=True)
        out.append(subprocess.run(["objcopy", "-O", "binary", "-j", ".rodata", "p.o", "/dev/stdout"],
                                  cwd=tmp_path, capture_output=True, check=True).stdout)
    return out[0], out[1]


PIGGY = '.section .rodata\n.incbin "blob"\n'


def test_plain_ccache_in_depend_mode_serves_the_stale_object(tmp_path):
    """The hazard itself, so the test below proves the wrapper and not a fixed ccache."""
    first, second = compile_twice(tmp_path, ccache.MASQUERADE, "p.S", PIGGY)
    assert (first, second) == (b"AAAA", b"AAAA")


@pytest.mark.parametrize("name, source", [("p.S", PIGGY), ("c.c", 'asm(".section .rodata\\n.incbin \\"blob\\"\\n");\n')])
def test_wrappers_compile_incbin_sources_uncached(tmp_path, monkeypatch, name, source):
    monkeypatch.setenv("KBUILD_CACHE_DIR", str(tmp_path / "kc"))
    folder = ccache.wrappers()
    assert folder and (folder / "gcc").is_file() and "ccache" in (folder / "gcc").read_text()
    assert compile_twice(tmp_path, str(folder), name, source) == (b"AAAA", b"BBBB")


def test_wrappers_still_cache_ordinary_sources(tmp_path, monkeypatch):
    monkeypatch.setenv("KBUILD_CACHE_DIR", str(tmp_path / "kc"))
    folder = ccache.wrappers()
    (tmp_path / "m.c").write_text("int answer(void) { return 42; }\n")
    env = {**os.environ, "CCACHE_DIR": str(tmp_path / "cache"), "PATH": f"{folder}:{os.environ['PATH']}",
           **ccache.SETTINGS}
    for _ in range(2):
        subprocess.run(["gcc", "-Wp,-MMD,m.d", "-c", "-o", "m.o", "m.c"], cwd=tmp_path, env=env, check=True)
    stats = subprocess.run(["ccache", "--print-stats"], env=env, capture_output=True, text=True).stdout
    assert "direct_cache_hit\t1" in stats


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
