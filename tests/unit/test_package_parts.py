"""Pure pieces of the packaging stage: manifest lookup and verification, staging, rendering.

The real dpkg-deb/rpmbuild/lintian/rpmlint runs are in tests/integration/test_package_real.py.
"""
import json
import os
import stat
import time

import pytest

from kbuild.core import fs, tools
from kbuild.core.errors import BadInput, MissingTool
from kbuild.core.manifest import Manifest
from kbuild.package import deb, layout, render, rpm
from kbuild.package import stage as P
from kbuild.package.payload import Payload
from kbuild.package.tree import PackageTree

EPOCH = 1794824260


@pytest.fixture
def fake_build(fake_manifest):
    return fake_manifest


def test_payload_reads_a_verified_manifest(tmp_path, fake_build):
    p = Payload.from_manifest(Manifest.read(fake_build(tmp_path)))
    assert (p.release, p.deb_version, p.rpm_version, p.rpm_release) == \
        ("6.1.192-kdump", "6.1.192-kdump", "6.1.192", "kdump")
    assert (p.deb_arch, p.rpm_arch, p.epoch, p.build_id) == ("amd64", "x86_64", EPOCH, "ab" * 20)
    assert [m for m, _ in p.modules] == ["kernel/drivers/block/loop.ko", "modules.dep"]
    assert p.dist == tmp_path / "dist" / "6.1.192-kdump"


def test_payload_refuses_a_changed_artifact(tmp_path, fake_build):
    path = fake_build(tmp_path)
    (tmp_path / "art" / "vmlinux").write_bytes(b"\x7fELF rebuilt")
    with pytest.raises(BadInput, match="vmlinux: vmlinux changed or vanished since .* rebuild in progress"):
        Payload.from_manifest(Manifest.read(path))


@pytest.mark.parametrize("fields, message", [
    ({"deb_version": None}, "manifest lacks or mangles .*deb_version=None"),
    ({"release": "6.1.192-$(reboot)"}, "unsafe in paths and scripts"),
    ({"rpm_version": None}, "manifest lacks or mangles"),
])
def test_payload_refuses_unusable_release(tmp_path, fields, message, fake_build):
    with pytest.raises(BadInput, match=message):
        Payload.from_manifest(Manifest.read(fake_build(tmp_path, **fields)))


def test_payload_refuses_other_arch_and_failed_builds(tmp_path, fake_build):
    path = fake_build(tmp_path)
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "toolchain": {"arch": "riscv64"}}))
    with pytest.raises(BadInput, match="architecture 'riscv64' is not packaged"):
        Payload.from_manifest(Manifest.read(path))
    path.write_text(json.dumps({**data, "status": "failed"}))
    with pytest.raises(BadInput, match="not a successful schema-1 build manifest"):
        Manifest.read(path)


def test_find_manifest_takes_the_newest_or_the_build_dirs(tmp_path, fake_build):
    old = fake_build(tmp_path / "a", "6.1.192-1.kdump")
    new = fake_build(tmp_path / "b", "6.1.192-2.kdump")
    dist = tmp_path / "dist"
    dist.mkdir()
    for m in (old, new):
        (dist / m.parent.name).symlink_to(m.parent)
    os.utime(old, (time.time() - 100, time.time() - 100))
    assert Manifest.find(dist=dist).path == dist / "6.1.192-2.kdump" / "manifest.json"
    assert Manifest.find(build_dir=tmp_path / "a" / "build", dist=dist).path == \
        dist / "6.1.192-1.kdump" / "manifest.json"
    assert Manifest.find(release="6.1.192-1.kdump", dist=dist).path == dist / "6.1.192-1.kdump" / "manifest.json"
    with pytest.raises(BadInput, match="no build manifest built in .*elsewhere"):
        Manifest.find(build_dir=tmp_path / "elsewhere", dist=dist)
    with pytest.raises(BadInput, match="run `invoke build-kernel` first"):
        Manifest.find(dist=tmp_path / "empty")


def test_find_manifest_honours_kbuild_dist_dir(tmp_path, monkeypatch, fake_build):
    m = fake_build(tmp_path)
    monkeypatch.setenv("KBUILD_DIST_DIR", str(tmp_path / "dist"))
    assert Manifest.find().path == m


@pytest.mark.parametrize("text, expected", [
    (None, {"deb", "rpm"}), ("deb,rpm", {"deb", "rpm"}), ("rpm", {"rpm"}), (" deb ", {"deb"})])
def test_formats(text, expected):
    assert P.parse_formats(text) == expected


@pytest.mark.parametrize("text", ["zip", "deb,tar", ","])
def test_bad_formats(text):
    with pytest.raises(BadInput, match="choose from deb, rpm"):
        P.parse_formats(text)


def test_missing_tools_are_named_with_their_packages(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingTool) as e:
        tools.require("package")
    assert "run: apt-get install binutils dash dpkg grub-common lintian rpm rpmlint sed shellcheck " \
        in str(e.value)


def test_package_tree_pins_modes_and_mtimes_whatever_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        s = PackageTree(tmp_path / "pkg")
        s.text("/etc/x.conf", "x\n")
        s.text("/usr/bin/tool", "#!/bin/sh\n", 0o755)
        s.symlink("/usr/bin/alias", "tool")
        s.dir("/var/lib/empty")
        s.seal(EPOCH)
    finally:
        os.umask(old)
    for p in [s.root, *s.root.rglob("*")]:
        st = os.lstat(p)
        assert st.st_mtime == EPOCH, p
        if stat.S_ISDIR(st.st_mode):
            assert stat.S_IMODE(st.st_mode) == 0o755, p
    assert stat.S_IMODE((s.root / "etc/x.conf").stat().st_mode) == 0o644
    assert stat.S_IMODE((s.root / "usr/bin/tool").stat().st_mode) == 0o755


def test_render_refuses_missing_variables():
    with pytest.raises(BadInput, match=r"packaging/boot/bls.conf.j2: 'e' is undefined"):
        render.render("boot/bls.conf.j2")


def test_deb_description_fits_debian_rules():
    text = render.deb_description("word " * 40 + "\n\n* first item " + "x " * 50 + "\n* second\n\nend")
    lines = text.rstrip("\n").split("\n")
    assert all(ln.startswith(" ") and len(ln) <= 80 for ln in lines)
    assert lines.count(" .") == 2
    bullets = [ln for ln in lines if ln.startswith("  * ")]
    assert len(bullets) == 2
    first = lines.index(bullets[0])
    assert lines[first + 1].startswith("    x")                    # hanging indent, verbatim


def test_publish_replaces_in_one_rename(tmp_path):
    (tmp_path / "src").write_bytes(b"new")
    (tmp_path / "dist").mkdir()
    (tmp_path / "dist" / "pkg.deb").write_bytes(b"old")
    fs.publish_file(tmp_path / "src", tmp_path / "dist" / "pkg.deb")
    assert (tmp_path / "dist" / "pkg.deb").read_bytes() == b"new"
    assert os.listdir(tmp_path / "dist") == ["pkg.deb"]


def test_installed_size_counts_like_dpkg(tmp_path):
    s = PackageTree(tmp_path / "p")
    s.text("/a", "x" * 1025)          # 2 KiB
    s.text("/b/c", "")                # 0 KiB, plus 1 for the folder b
    s.symlink("/d", "a")              # 1
    assert deb._installed_size(s.root) == 4


def test_rpm_scriptlet_header_and_percent_escape():
    assert rpm._HEADER.match("posttrans scriptlet (using /bin/sh):").groups() == ("posttrans", "/bin/sh")
    assert rpm._HEADER.match("triggerin scriptlet (using /bin/sh) -- kdump-utils, kexec-tools").group(1) \
        == "triggerin"
    assert rpm._HEADER.match("  posttrans scriptlet (using /bin/sh):") is None
    ctx = {"names": rpm.NAMES, "helper": "/usr/libexec/100%/kdump-conf"}
    body = rpm.scriptlet("config.triggerin", ctx)      # rpmbuild would expand a single %
    assert body.splitlines()[-1] == "/usr/libexec/100%%/kdump-conf apply" and not body.endswith("\n")


def test_build_id_link_is_where_gdb_looks():
    assert layout.build_id_link("d208f5d3ff") == "/usr/lib/debug/.build-id/d2/08f5d3ff.debug"


def test_leftovers_of_a_killed_run_are_removed_but_not_a_live_runs(tmp_path):
    dead = 2 ** 22 + 12345          # above the largest pid_max Linux allows: no such process
    (tmp_path / f".pkg.deb.{dead}.tmp").write_bytes(b"half")
    (tmp_path / f".boot.{dead}.old").mkdir()
    (tmp_path / f".pkg.rpm.{os.getpid()}.tmp").write_bytes(b"in progress")
    (tmp_path / "pkg.deb").write_bytes(b"whole")
    fs.remove_leftovers(tmp_path)
    assert sorted(os.listdir(tmp_path)) == [f".pkg.rpm.{os.getpid()}.tmp", "pkg.deb"]
