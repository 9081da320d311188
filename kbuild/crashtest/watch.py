"""From the test VM's serial console to phases, timings and, when it failed, one clear reason.

Every line the guest's /init wants the host to act on starts with `KDUMPTEST:` (see
kbuild/initramfs.py); the kernels' own lines supply the rest: the capture kernel's banner,
panics, out-of-memory reports, kexec's messages.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Callable

from kbuild.crashtest import initramfs
from kbuild.crashtest import qemu
from kbuild.crashtest.report import Failure

MIB = 1 << 20
_MARK = re.compile(re.escape(initramfs.MARK) + r" (.*)")
# The capture kernel is dead: a panic (panic=-1 reboots, but not this early) or an early exception.
_DEAD = re.compile(r"Kernel panic - not syncing|PANIC: early exception")
# Lines in the capture kernel's console that mean it ran short of memory.
_OOM = re.compile(r"Out of memory|Failed to allocate|oom-kill|Initramfs unpacking failed|page allocation failure|"
                  r"deadlocked on memory|No working init found|Cannot allocate memory|not enough memory", re.I)
# kexec messages that mean the reservation is too small for kernel + initrd + purgatory.
_KEXEC_SPACE = re.compile(r"Cannot assign requested address|Cannot allocate memory|Could not find a free area|"
                          r"locate_hole failed|Not enough memory", re.I)


@dataclass(frozen=True)
class RunFacts:
    """What a diagnosis names besides the console: the reservation, the sizes, the collector."""

    crashkernel: str
    timeout: float
    core_collector: str
    failure_action: str
    kernel_bytes: int
    initrd_bytes: int


class ConsoleWatch:
    """Follows the serial console: the guest's markers, phase boundaries, when to stop waiting."""

    def __init__(self, grace: float, host_fire: Callable[[str], str] | None = None):
        self.grace = grace
        self.host_fire = host_fire           # fires a host-side trigger (the NMI); returns what it did
        self.fired: str | None = None
        self.host_error: str | None = None
        self.online: int | None = None
        self.phase = "boot"
        self.at: dict[str, float] = {}       # marker -> seconds since QEMU started
        self.banners: list[int] = []         # line numbers of "Linux version" (1st production, 2nd capture)
        self.kexec_output: list[str] = []
        self.crash_bytes: int | None = None
        self.kexec_rc: int | None = None
        self.loaded: bool | None = None
        self.fail: str | None = None
        self.dump_bytes: int | None = None
        self.dead: str | None = None
        self.count = 0
        self._in_kexec = False

    def __call__(self, line: qemu.ConsoleLine) -> float | None:
        self.count += 1
        if line.text.startswith("Linux version "):
            self.banners.append(self.count - 1)
            if len(self.banners) == 2:
                self.at["capture_kernel"] = line.t
                self.phase = "capture_boot"
        if self.phase in ("capture_boot", "dump") and _DEAD.search(line.text):
            self.dead = self.dead or line.text.strip()  # an early panic hangs instead of rebooting: stop waiting
            return time.monotonic() + self.grace
        m = _MARK.search(line.text)
        if not m:
            if self._in_kexec and not line.text.startswith("EXT4-fs"):
                self.kexec_output.append(line.text.strip())
            return None
        words = m.group(1)
        kv = dict(re.findall(r"(\w+)=(\S+)", words))
        if words.startswith("production init"):
            self.at["production"], self.phase = line.t, "kexec_load"
        elif words.startswith("crashkernel bytes="):
            self.crash_bytes = int(kv.get("bytes", "0") or 0)
        elif words.startswith("kexec-load start"):
            self._in_kexec = True
        elif words.startswith("kexec-load rc="):
            self._in_kexec = False
            self.kexec_rc, self.loaded = int(kv["rc"]), kv.get("loaded") == "1"
            self.at["kexec_loaded"], self.phase = line.t, "crash"
        elif words.startswith("cpus online="):
            self.online = int(kv.get("online", "0") or 0)
        elif words.startswith("crashing"):
            self.at["crashing"] = line.t
            if "host" in kv and self.host_fire:
                try:
                    self.fired = self.host_fire(kv["host"])
                except OSError as e:
                    self.host_error = f"the host could not fire the {kv['host']} trigger: {e}"
                    return time.monotonic()
        elif words.startswith("capture init"):
            self.at["capture_init"], self.phase = line.t, "dump"
        elif words.startswith("dump complete"):
            self.at["dump_complete"], self.phase = line.t, "shutdown"
            self.dump_bytes = int(kv.get("bytes", "0"))
        elif words.startswith("FAIL"):
            self.fail = words[4:].strip()
            return time.monotonic() + self.grace
        return None

    def timings(self, vm: qemu.VmRun) -> dict[str, float]:
        """Contiguous phases from host arrival times, so they add up to the VM's wall time."""
        bounds = [("boot", 0.0, self.at.get("production")),
                  ("kexec_load", self.at.get("production"), self.at.get("kexec_loaded")),
                  ("crash", self.at.get("kexec_loaded"), self.at.get("capture_kernel")),
                  ("capture_boot", self.at.get("capture_kernel"), self.at.get("capture_init")),
                  ("dump", self.at.get("capture_init"), self.at.get("dump_complete")),
                  ("shutdown", self.at.get("dump_complete"), vm.duration if "dump_complete" in self.at else None)]
        return {name: round(end - start, 3) for name, start, end in bounds
                if start is not None and end is not None}


def diagnose(watch: ConsoleWatch, vm: qemu.VmRun, facts: RunFacts) -> Failure | None:
    """Name the phase that failed and why, from the console alone; None if the guest says it dumped."""
    capture_lines = [ln.text for ln in vm.lines[watch.banners[1]:]] if len(watch.banners) > 1 else []
    oom = next((ln for ln in capture_lines if _OOM.search(ln)), None) or watch.dead
    ck = facts.crashkernel
    raise_hint = f"raise crashkernel (now {ck})"
    if watch.loaded is False:
        said = "; ".join(watch.kexec_output[-3:]) or f"no message, exit {watch.kexec_rc}"
        msg = f"the capture kernel was not loaded: kexec said: {said}"
        if watch.crash_bytes == 0:
            reserve = next((ln.text.strip() for ln in vm.lines if "crashkernel" in ln.text.lower()
                            and "command line" not in ln.text.lower()), "")
            msg += f"; crashkernel={ck} reserved no memory" + (f" ({reserve})" if reserve else "")
        elif _KEXEC_SPACE.search(said):
            msg += (f"; the crashkernel={ck} reservation is likely too small for bzImage "
                    f"({facts.kernel_bytes / MIB:.1f} MiB) plus initrd ({facts.initrd_bytes / MIB:.1f} MiB)")
        return Failure("kexec_load", msg)
    m = re.match(r"collector exited (\d+)", watch.fail or "")
    if m:
        msg = (f"the collector failed: `{facts.core_collector}` exited {m.group(1)}; "
               f"failure_action {facts.failure_action} ran")
        if oom:
            msg += f"; the capture kernel ran out of memory ({oom.strip()}); {raise_hint}"
        return Failure("dump", msg)
    if watch.host_error:
        return Failure(watch.phase, watch.host_error)
    if watch.fail:
        return Failure(watch.phase, f"the guest reported: {watch.fail}")
    if "dump_complete" in watch.at:
        return None
    where = (f"timed out after {facts.timeout:g}s" if vm.timed_out else "QEMU stopped: the kernel was dead"
             if vm.stopped else f"QEMU exited {vm.returncode}")
    phase = watch.phase
    if phase == "boot":
        return Failure("boot", f"the production kernel never reached /init ({where})")
    if phase == "kexec_load":
        return Failure("kexec_load", f"loading the capture kernel did not finish ({where})")
    if phase == "crash":
        if "crashing" not in watch.at:
            return Failure("crash", f"the guest never triggered the crash ({where})")
        return Failure("crash", f"the production kernel crashed but the capture kernel never started ({where}); "
                                f"{raise_hint} or check the kexec load")
    evidence = f" ({oom.strip()})" if oom else ""
    stage = "before its /init" if phase == "capture_boot" else "during the dump"
    return Failure(phase, f"no dump: the capture kernel ran out of memory or hung {stage}{evidence} "
                          f"({where}); {raise_hint}")
