"""Stage 5, `invoke install-test`: our DEB set and Debian's own kdump-tools in a booted Debian 12 VM.

rootfs (cached mmdebstrap root) -> install (dpkg -i in a chroot, the real maintainer scripts and
hooks) -> guest (the test's systemd unit) -> cmdline (what grub-mkconfig would put on the linux
line) -> disk (mke2fs -d, no mounts) -> vm (QEMU: boot, kdump-tools loads, crash, capture by
kdump-tools, reboot, power off) -> verify (debugfs, makedumpfile -R, drgn, crash) -> report.
"""
