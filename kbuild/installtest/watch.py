"""From the guest's serial console to events, phases and, when it failed, one reason.

The test's agent prints MARK lines (guest.py); the rest comes from the kernels (banners,
panics, out-of-memory reports) and from kdump-tools itself, whose output systemd copies to
the console (StandardOutput=journal+console).
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from kbuild.crashtest.qemu import ConsoleLine
from kbuild.installtest.guest import MARK

PHASES = ("rootfs", "install", "first_boot", "kdump_ready", "crash", "capture", "second_boot", "verify", "purge")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_MARK = re.compile(re.escape(MARK) + r" (\S+) ?(.*)")
_DEAD = re.compile(r"Kernel panic - not syncing|PANIC: early exception")
_OOM = re.compile(r"Out of memory|oom-kill|deadlocked on memory|Initramfs unpacking failed|"
                  r"page allocation failure|Cannot allocate memory", re.I)
_RUNNING = re.compile(r"running makedumpfile (?!--dump-dmesg)(.*?) (/proc/vmcore)\b")


def clean(text: str) -> str:
    return _ANSI.sub("", text).strip()


@dataclass
class Watch:
    """Follows the console of one VM run; `at` holds the host time of each event."""

    capture_timeout: float
    hang_grace: float | None                   # no panic= on the capture line: a capture panic is a hang;
                                               # stop this long after it (None: panic= reboots, keep waiting)
    at: dict[str, float] = field(default_factory=dict)
    banners: list[float] = field(default_factory=list)
    banner_lines: list[int] = field(default_factory=list)
    marks: dict[str, str] = field(default_factory=dict)
    makedumpfile: str | None = None            # arguments kdump-tools ran makedumpfile with
    capture_panic: str | None = None
    oom: str | None = None
    count: int = 0

    def __call__(self, line: ConsoleLine) -> float | None:
        self.count += 1
        text = clean(line.text)
        if text.startswith("[") and "Linux version " in text[:40] or text.startswith("Linux version "):
            self.banners.append(line.t)
            self.banner_lines.append(self.count - 1)
            name = {2: "capture_kernel", 3: "second_boot"}.get(len(self.banners))
            if name:
                self.at.setdefault(name, line.t)
            if len(self.banners) == 2:      # from here a hang is a lost dump: bound the wait
                return time.monotonic() + self.capture_timeout
        m = _MARK.search(text)
        if m:
            word, rest = m.group(1), m.group(2)
            self.marks[word] = rest
            self.at.setdefault(word.lower(), line.t)
            if word in ("NOT-READY",):
                return time.monotonic() + 30
            if word == "CRASH":
                return time.monotonic() + self.capture_timeout
            return None
        if "kdump-tools: Generating /var/lib/kdump/initrd.img" in text:
            self.at.setdefault("initrd_build", line.t)
        elif "loaded kdump kernel" in text:
            self.at.setdefault("kdump_loaded", line.t)
        elif (m := _RUNNING.search(text)) and self.makedumpfile is None:
            self.makedumpfile = m.group(1).strip()
        elif "saved vmcore in" in text:
            self.at.setdefault("vmcore_saved", line.t)
        elif len(self.banners) == 2:
            if _OOM.search(text):
                self.oom = self.oom or text
            if _DEAD.search(text):
                self.capture_panic = self.capture_panic or text
                return None if self.hang_grace is None else time.monotonic() + self.hang_grace
            if "Restarting system" in text or "Rebooting in" in text:
                self.at.setdefault("capture_reboot", line.t)
        return None

    @property
    def dumped(self) -> bool:
        return "DUMP-PRESENT" in self.marks

    def timings(self, end: float) -> dict[str, float]:
        """VM phases from host arrival times; they add up to the VM's wall time."""
        a = self.at
        marks = [("first_boot", 0.0, a.get("booted")),
                 ("kdump_ready", a.get("booted"), a.get("ready")),
                 ("crash", a.get("ready"), a.get("capture_kernel")),
                 ("capture", a.get("capture_kernel"), a.get("second_boot")),
                 ("second_boot", a.get("second_boot"), end if ("dump-present" in a or "no-dump" in a) else None)]
        return {n: round(e - s, 3) for n, s, e in marks if s is not None and e is not None}


def diagnose(w: Watch, returncode: int | None, timed_out: bool, timeout: float,
             stopped: bool = False) -> tuple[str, tuple[str, str] | None]:
    """(outcome, (phase, one-line reason) or None). Outcomes: dump saved; capture failed,
    machine rebooted; capture failed, machine hung; or where the run stopped."""
    if w.dumped:
        return "dump saved", None
    where = (f"timed out after {timeout:g}s" if timed_out else "stopped waiting" if stopped
             else f"QEMU exited {returncode}")
    evidence = w.oom or w.capture_panic
    if "NOT-READY" in w.marks:
        return "kdump not ready", ("kdump_ready", f"kdump-config never said ready: {w.marks['NOT-READY']}")
    if "booted" not in w.at:
        return "no boot", ("first_boot", f"the guest never started the test's unit ({where})")
    if "ready" not in w.at:
        return "kdump not ready", ("kdump_ready", f"kdump-config status never said ready ({where})")
    if "capture_kernel" not in w.at:
        return "no capture kernel", ("crash", f"the kernel crashed but no capture kernel started ({where})")
    if "NO-DUMP" in w.marks:
        return "capture failed, machine rebooted", (
            "capture", "capture failed, machine rebooted" + (f" (capture kernel: {evidence})" if evidence else ""))
    if "second_boot" in w.at:
        return "rebooted, no report", ("second_boot", f"the machine rebooted after the capture but the "
                                                      f"agent never reported ({where})")
    if w.capture_panic:
        return "capture failed, machine hung", (
            "capture", f"capture failed, machine hung: {w.capture_panic}, and no reboot followed "
                       f"({where}{f' {w.hang_grace:g}s after it' if stopped and w.hang_grace else ''}); "
                       "the capture command line needs panic=")
    return "capture failed, machine hung", (
        "capture", f"the capture kernel hung ({where})" + (f": {evidence}" if evidence else ""))
