"""Boot the image as GRUB would, with QEMU: kernel and initrd from its /boot, GRUB's command line.

One QEMU run covers every boot: the first (kdump-tools loads, the agent crashes the kernel),
the capture boot (kdump-tools saves the dump and reboots) and the second boot (the agent
reports and powers off). So, unlike the crash test, no -no-reboot: a guest reboot is a reset
of the same machine, and the run ends when the guest powers off.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from kbuild.crashtest import qemu
from kbuild.installtest.watch import Watch


@dataclass(frozen=True)
class Machine:
    kernel: Path
    initrd: Path
    cmdline: str
    disk: Path
    memory: str
    smp: int
    accel: str

    def command(self) -> list[str]:
        return [qemu.QEMU, "-accel", self.accel, "-machine", "pc", "-m", self.memory, "-smp", str(self.smp),
                "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio",
                "-kernel", str(self.kernel), "-initrd", str(self.initrd), "-append", self.cmdline,
                "-drive", f"file={self.disk},format=raw,if=none,id=root,cache=unsafe",
                "-device", "virtio-blk-pci,drive=root"]

    def hardware(self) -> dict:
        """What the guest's initrds may depend on (MODULES=dep sees the disk controller)."""
        return {"machine": "pc", "disk": "virtio-blk-pci", "smp": self.smp}


def boot(m: Machine, watch: Watch, timeout: float, log: Path) -> qemu.VmRun:
    return qemu.stream(m.command(), deadline=time.monotonic() + timeout, log=log, on_line=watch)
