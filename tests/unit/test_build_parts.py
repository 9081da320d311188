"""Pure pieces of the build stage: setup-header parsing, progress, release fragment, manifest."""
import json
import struct

import pytest

from kbuild.build import stage as build
from kbuild.core import manifest
from kbuild.build import verify
from kbuild.core.errors import BadInput, CheckFailed
from kbuild.core.settings import BuildSettings, ConfigureSettings
from kbuild.core.source import KernelVersion
from tests.conftest import make_tree

pytestmark = pytest.mark.host_tools   # runs programs `make setup` installs (make unit does)


def fake_bzimage(path, version_text: str, ptr=0x3000):
    data = bytearray(0x4000)
    data[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", data, 0x20E, ptr - 0x200)
    data[ptr:ptr + len(version_text) + 1] = version_text.encode() + b"\0"
    path.write_bytes(bytes(data))
    return path


def test_setup_header_version_is_read(tmp_path):
    img = fake_bzimage(tmp_path / "bzImage", "6.1.192-kdump (kbuild@kdump-pipeline) #1 SMP")
    assert verify.bzimage_version(img).startswith("6.1.192-kdump (kbuild@")
    assert verify.check_bzimage_release(img, "6.1.192-kdump")
    with pytest.raises(CheckFailed, match=r"setup header says '6.1.192-kdump', expected release '6.1.192-3.kdump'"):
        verify.check_bzimage_release(img, "6.1.192-3.kdump")


def test_not_a_bzimage(tmp_path):
    (tmp_path / "x").write_bytes(b"\0" * 0x1000)
    with pytest.raises(CheckFailed, match="no x86 boot setup header"):
        verify.bzimage_version(tmp_path / "x")


def test_release_fragment_turns_off_localversion_suffixes(tmp_path):
    p = build.write_release_fragment(tmp_path)
    assert p.read_text() == 'CONFIG_LOCALVERSION=""\n# CONFIG_LOCALVERSION_AUTO is not set\n'
    mtime = p.stat().st_mtime_ns
    build.write_release_fragment(tmp_path)
    assert p.stat().st_mtime_ns == mtime  # unchanged content is not rewritten


def test_environment_is_reproducible_and_from_the_tree(tmp_path, monkeypatch):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    tree = make_tree(tmp_path / "t", 'config A\n\tbool "a"\n')
    import os
    os.utime(tree.path / "Makefile", (1_700_000_000, 1_700_000_000))
    env = build.build_env(tree, ccache=False)
    assert env["SOURCE_DATE_EPOCH"] == "1700000000"
    assert env["KBUILD_BUILD_TIMESTAMP"] == "Tue, 14 Nov 2023 22:13:20 GMT"
    assert env["KBUILD_BUILD_USER"] == "kbuild" and env["KBUILD_BUILD_HOST"] == "kdump-pipeline"
    assert env["CCACHE_DISABLE"] == "1" and "PATH" not in env


def test_make_command_carries_release_and_prefix_maps(tmp_path):
    from kbuild.build.release import compose
    from kbuild.core.toolchain import Toolchain
    tree = make_tree(tmp_path / "t", 'config A\n\tbool "a"\n', version=(6, 1, 192))
    rel = compose(KernelVersion(6, 1, 192), "kdump", 3)
    cmd = build.make_cmd(tree, tmp_path / "b", Toolchain(), rel, "bzImage", jobs=2)
    assert "LOCALVERSION=-3.kdump" in cmd and "-j2" in cmd and cmd[-1] == "bzImage"
    assert f"KCFLAGS=-ffile-prefix-map={tree.path}=. -ffile-prefix-map={tmp_path / 'b'}=. " \
        f"{build.PREFIX_MAP_MARKER} {build.NO_COLUMNS}" in cmd


def test_ccache_runs_in_depend_mode_and_keeps_the_folder_out_of_the_hash(tmp_path, monkeypatch):
    tree = make_tree(tmp_path / "t", 'config A\n\tbool "a"\n', version=(6, 1, 192))
    env = build.build_env(tree, ccache=True)
    if "CCACHE_DISABLE" in env:
        pytest.fail("ccache is not installed; `make setup` installs it")
    assert env["CCACHE_DEPEND"] == "1" and env["CCACHE_NOHASHDIR"] == "1" and env["CCACHE_BASEDIR"] == "/"
    assert env["CCACHE_INODECACHE"] == "1"
    # only the maps we always pass (each maps to ".") leave the hash, never other options
    assert all(o.endswith("prefix-map=*") for o in env["CCACHE_IGNOREOPTIONS"].split())
    assert "CCACHE_DEPEND" not in build.build_env(tree, ccache=False)


def test_progress_shows_no_eta_it_cannot_know(tmp_path, monkeypatch):
    from kbuild.build import progress
    monkeypatch.setenv("KBUILD_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "b"
    folder.mkdir()
    assert progress.expected_work(folder, "cfg") == (None, 0.0, "first build of this configuration")
    progress.record_objects("cfg", 863, 21.04)
    assert progress.expected_work(folder, "cfg") == (863, 21.0, "")
    progress.counts_file().write_text('{"cfg": 700}')     # a count recorded before the tail was
    assert progress.expected_work(folder, "cfg") == (700, 0.0, "")
    (folder / "init").mkdir()
    (folder / "init" / "main.o").write_bytes(b"")
    assert progress.expected_work(folder, "cfg") == (None, 0.0, "incremental build, make decides what to redo")


def test_eta_follows_the_recent_rate_and_adds_the_tail(monkeypatch, capsys):
    """Slow first objects must not inflate the estimate once the build runs faster."""
    from kbuild.build import progress
    clock = [1000.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    p = progress.Progress(expected=600, tail=30.0)
    p.tty = False
    for i in range(400):          # 100 objects at 1/s, then 300 at 4/s (75 s, past the window)
        clock[0] += 1.0 if i < 100 else 0.25
        p.line("  CC      kernel/x.o\n")
    assert p.rate(clock[0]) == pytest.approx(4.0, rel=0.05)     # not the 2.3/s since the start
    p._last = -1e9
    clock[0] += 0.25
    p.line("  CC      kernel/y.o\n")
    eta = capsys.readouterr().err.strip().splitlines()[-1].rsplit("ETA ", 1)[1]
    assert eta == "1m19s"         # 199 objects at 4/s, plus the 30 s tail


def test_progress_counts_compile_steps(capsys):
    p = build.Progress(expected=4)
    p._last = -1e9
    for line in ["  CC      kernel/a.o\n", "  LD      vmlinux\n", "  AS      arch/b.o\n", "  CC [M]  drivers/c.o\n"]:
        p.line(line)
    assert p.done == 3


def test_first_errors_picks_compiler_errors():
    tail = "  CC a.o\nfoo.c:3:1: error: expected ';'\nmake[2]: *** [x] Error 1\n  CC b.o\n"
    assert build.first_errors(tail).splitlines() == ["foo.c:3:1: error: expected ';'", "make[2]: *** [x] Error 1"]


def test_unsafe_release_is_refused_unless_allowed(tmp_path):
    tree = make_tree(tmp_path / "t", 'config A\n\tbool "a"\n', version=(6, 1, 192))
    cs = ConfigureSettings.from_flags()
    with pytest.raises(CheckFailed, match="unsafe"):
        build.plan_release(BuildSettings.from_flags(cs, localversion="kdumpxen"), tree)
    rel, findings = build.plan_release(BuildSettings.from_flags(cs, localversion="kdumpxen",
                                                                allow_unsafe_release=True), tree)
    assert rel.release == "6.1.192-kdumpxen" and rel.localversion == "-kdumpxen"
    assert any("xen" in str(f) for f in findings)


def test_bad_jobs_and_build_number():
    cs = ConfigureSettings.from_flags()
    with pytest.raises(BadInput, match="--jobs 0"):
        BuildSettings.from_flags(cs, jobs=0)
    with pytest.raises(BadInput, match="--build-number 'x'"):
        BuildSettings.from_flags(cs, build_number="x")


def test_manifest_roundtrip_discard_and_integrity(tmp_path, fake_manifest):
    path = fake_manifest(tmp_path)
    m = manifest.Manifest.read(path)
    assert (m.release.release, m.build_id, m.epoch, m.arch) == ("6.1.192-kdump", "ab" * 20, 1794824260, "x86_64")
    assert m.intact() and m.artifact("vmlinux").path == tmp_path / "art" / "vmlinux"
    m.verify()
    (tmp_path / "art" / "vmlinux").write_bytes(b"changed")
    assert not m.intact()
    with pytest.raises(BadInput, match="vmlinux changed or vanished"):
        m.verify(("vmlinux",))
    with pytest.raises(BadInput, match="lists no bzImage-ish artifact"):
        m.artifact("bzImage-ish")
    manifest.discard(path)
    with pytest.raises(BadInput, match="no manifest; run `invoke build-kernel` first"):
        manifest.Manifest.read(path)
    path.write_text(json.dumps({"schema": manifest.SCHEMA, "status": "building"}))
    with pytest.raises(BadInput, match="not a successful"):
        manifest.Manifest.read(path)


def test_manifest_update_keeps_the_record(tmp_path, fake_manifest):
    m = manifest.Manifest.read(fake_manifest(tmp_path))
    again = m.updated(crashkernel={"minimum": "32M"})
    assert again.record["crashkernel"] == {"minimum": "32M"} and again.record["artifacts"] == m.record["artifacts"]
    assert [p.name for p in again.path.parent.iterdir()] == ["manifest.json"]


@pytest.mark.parametrize("module, folders", [("build.stage", ("core", "configure", "build")),
                                             ("configure.stage", ("core", "configure"))])
def test_code_hash_covers_every_module_a_stage_imports(module, folders):
    """The no-op shortcuts hash whole layers; every module the stage imports must lie in one."""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", f"import sys, kbuild.{module}; print(' '.join(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True, cwd=build.Path(build.__file__).parents[2])
    imported = {m.split(".")[1] for m in out.stdout.split() if m.startswith("kbuild.") and m.count(".") >= 1}
    assert imported and imported <= set(folders), imported - set(folders)


def test_a_config_kbuild_rewrote_in_its_own_words_goes_back_to_ours(tmp_path):
    """Same values, other header (syncconfig in a reused folder): the shipped text stays ours."""
    ours = "#\n# Linux 6.1.192 Kernel Configuration, written by kbuild (kconfiglib)\n#\nCONFIG_A=y\nCONFIG_B=\"x\"\n"
    config = tmp_path / ".config"
    config.write_text("#\n# Automatically generated file; DO NOT EDIT.\n#\nCONFIG_B=\"x\"\nCONFIG_A=y\n")
    build.keep_configured(config, ours)
    assert config.read_text() == ours
    config.write_text("CONFIG_A=m\nCONFIG_B=\"x\"\n")
    with pytest.raises(CheckFailed, match="Kbuild changed configuration values"):
        build.keep_configured(config, ours)
