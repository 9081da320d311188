"""The capture initramfs: deterministic bytes, the right files, a settings file the guest's sh reads back."""
import gzip
import subprocess

import pytest

from kbuild.crashtest import initramfs
from kbuild.core.errors import BadInput

pytestmark = pytest.mark.host_tools   # runs programs `make setup` installs (make unit does)

CONF = initramfs.CaptureConfig("-s", "irqpoll nr_cpus=1 reset_devices console=ttyS0", "/var/crash",
                               "makedumpfile -c --message-level 1 -d 31", "reboot")


def newc_entries(raw: bytes):
    """(name, mode, mtime, size) of each entry of a newc archive, in archive order."""
    out, pos = [], 0
    while True:
        assert raw[pos:pos + 6] == b"070701"
        f = [int(raw[pos + 6 + 8 * i: pos + 14 + 8 * i], 16) for i in range(13)]
        namesize, size = f[11], f[6]
        name = raw[pos + 110: pos + 110 + namesize - 1].decode()
        pos = (pos + 110 + namesize + 3) // 4 * 4
        pos = (pos + size + 3) // 4 * 4
        if name == "TRAILER!!!":
            return out
        out.append((name, f[1], f[5], size))


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    return initramfs.build(tmp_path_factory.mktemp("i") / "initrd.img", CONF, mtime=1700000000)


def test_same_settings_give_identical_bytes(image, tmp_path):
    again = initramfs.build(tmp_path / "again.img", CONF, mtime=1700000000)
    assert again.sha256 == image.sha256 and again.path.read_bytes() == image.path.read_bytes()
    other = initramfs.build(tmp_path / "other.img", CONF, mtime=1700000001)
    assert other.sha256 != image.sha256


def test_archive_is_sorted_with_fixed_mtimes_and_carries_the_tools(image):
    entries = newc_entries(gzip.decompress(image.path.read_bytes()))
    names = [e[0] for e in entries]
    assert names == sorted(names)
    assert {e[2] for e in entries} == {1700000000}
    for needed in ("init", "bin/busybox", "bin/sh", "usr/sbin/kexec", "usr/bin/makedumpfile",
                   "lib64/ld-linux-x86-64.so.2", "etc/crashtest.conf", "dev/console"):
        assert needed in names, needed
    assert any(n.endswith("/libz.so.1") for n in names)  # makedumpfile's -c (zlib)
    assert image.entries == len(entries)


def test_cpio_tool_reads_the_archive(image, tmp_path):
    listing = subprocess.run(["cpio", "-it"], input=gzip.decompress(image.path.read_bytes()),
                             capture_output=True, check=True).stdout.decode().split()
    assert "init" in listing and "usr/bin/makedumpfile" in listing


def test_settings_file_survives_shell_quoting(tmp_path):
    tricky = initramfs.CaptureConfig("-c", "a 'b' \"c\" $HOME", "/var/crash dir", "cp --sparse=always", "halt",
                                     ("kernel/fs/ext4/ext4.ko",))
    conf = tmp_path / "c.conf"
    conf.write_text(tricky.render())
    out = subprocess.run(["sh", "-c", f'. {conf}; printf "%s|%s|%s|%s" "$CAPTURE_CMDLINE" "$DUMP_PATH" '
                          '"$CORE_COLLECTOR" "$MODULES"'], capture_output=True, text=True, check=True).stdout
    assert out == "a 'b' \"c\" $HOME|/var/crash dir|cp --sparse=always|kernel/fs/ext4/ext4.ko"


@pytest.mark.parametrize("shell", [["sh", "-n"], ["busybox", "sh", "-n"]])
def test_init_script_parses(shell, tmp_path):
    script = tmp_path / "init"
    script.write_text(initramfs.INIT)
    subprocess.run([*shell, str(script)], check=True)


def test_modules_come_after_their_dependencies(tmp_path):
    dep = tmp_path / "modules.dep"
    dep.write_text("kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko kernel/fs/mbcache.ko\n"
                   "kernel/fs/jbd2/jbd2.ko: kernel/lib/crc16.ko\n"
                   "kernel/fs/mbcache.ko:\nkernel/lib/crc16.ko:\n"
                   "kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko\n"
                   "kernel/drivers/virtio/virtio.ko:\n")
    order = initramfs.resolve_modules(dep, ["virtio_blk", "ext4"])
    assert order == ["kernel/drivers/virtio/virtio.ko", "kernel/drivers/block/virtio_blk.ko",
                     "kernel/lib/crc16.ko", "kernel/fs/jbd2/jbd2.ko", "kernel/fs/mbcache.ko", "kernel/fs/ext4/ext4.ko"]


def test_missing_or_compressed_module_is_refused(tmp_path):
    dep = tmp_path / "modules.dep"
    dep.write_text("kernel/fs/ext4/ext4.ko.zst:\n")
    with pytest.raises(BadInput, match="no module virtio_blk.ko"):
        initramfs.resolve_modules(dep, ["virtio_blk"])
    with pytest.raises(BadInput, match="compressed module"):
        initramfs.resolve_modules(dep, ["ext4"])


def test_shared_libraries_of_a_real_program():
    libs = initramfs.shared_libraries(initramfs.host_program("makedumpfile"))
    assert initramfs.LOADER in libs and any(lib.endswith("/libc.so.6") for lib in libs)
    assert initramfs.shared_libraries(initramfs.host_program("busybox")) == []  # busybox-static
