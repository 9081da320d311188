"""Run the test VM: pick an accelerator, build the QEMU command, stream the serial console.

KVM is used only when a short trial boot proves it works: on some hosts /dev/kvm exists
but guests hang in the decompressor or QEMU aborts on an MSR, so its presence proves
nothing. `-no-reboot` plus `panic=-1` makes any reboot or panic end QEMU; a deadline
catches hangs. Another architecture's guest (arm64 on this x86_64 host) always runs under
TCG: KVM only runs guests of the host's own architecture.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from kbuild.core import arch as archmod
from kbuild.core.proc import run

QEMU = archmod.get().qemu.binary   # the host's (install-test boots x86_64 only)


@dataclass(frozen=True)
class VmSpec:
    """One VM boot: what QEMU needs, nothing about what the guest does."""

    kernel: Path
    initrd: Path
    cmdline: str
    disk: Path
    memory: str = "1G"
    accel: str = "tcg"
    cpus: int = 2
    qmp: Path | None = None   # a QMP socket, for the host's crash paths (inject-nmi)
    arch: archmod.Arch = field(default_factory=archmod.get)   # binary, machine, CPU model, disk device

    def command(self) -> list[str]:
        # multi-threaded TCG: one host thread per vCPU, so the vCPUs really run concurrently
        accel = "tcg,thread=multi" if self.accel == "tcg" else self.accel
        qmp = ["-qmp", f"unix:{self.qmp},server=on,wait=off"] if self.qmp else []
        q = self.arch.qemu
        # -cpu for another architecture's guest (virt has no usable default); a native guest keeps
        # QEMU's default model, the one every x86_64 measurement used
        cpu = [] if self.arch.host == os.uname().machine else ["-cpu", q.cpu]
        return [q.binary, "-accel", accel, "-machine", q.machine, *cpu, "-m", self.memory, "-smp", str(self.cpus),
                *qmp, "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio",
                "-no-reboot", "-kernel", str(self.kernel), "-initrd", str(self.initrd),
                "-append", self.cmdline,
                "-drive", f"file={self.disk},format=raw,if=none,id=dump,cache=unsafe",
                "-device", f"{self.arch.crash.disk},drive=dump"]


def qmp_command(sock: Path, command: str, timeout: float = 10.0) -> dict:
    """One QMP command on a running VM (greeting, qmp_capabilities, command); returns QMP's reply.

    QMP is a JSON socket, not a program: there is no subprocess to log, so the exchange is
    returned for the report instead.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(sock))
        stream = s.makefile("rw", encoding="utf-8")

        def reply() -> dict:
            while True:   # skip asynchronous events
                msg = json.loads(stream.readline() or "{}")
                if "event" not in msg:
                    return msg
        reply()   # greeting
        for cmd in ("qmp_capabilities", command):
            stream.write(json.dumps({"execute": cmd}) + "\n")
            stream.flush()
            answer = reply()
            if "return" not in answer:
                raise OSError(f"QMP {cmd}: {answer.get('error', answer)}")
        return answer


@dataclass
class ConsoleLine:
    t: float  # seconds since QEMU was started
    text: str


@dataclass
class VmRun:
    lines: list[ConsoleLine] = field(default_factory=list)
    returncode: int | None = None
    timed_out: bool = False   # the deadline passed: QEMU was killed
    stopped: bool = False     # killed early because on_line asked (a reported failure, a proven probe)
    duration: float = 0.0

    def tail(self, n: int = 15) -> str:
        return "\n".join(line.text for line in self.lines[-n:])


def stream(cmd: list[str], *, deadline: float, log: Path,
           on_line: Callable[[ConsoleLine], float | None]) -> VmRun:
    """Run QEMU until it exits or `deadline` (time.monotonic()) passes, console lines timestamped.

    `on_line` sees every line; returning a number moves the deadline earlier (a guest that
    reported a failure gets a grace period, not the full timeout).
    """
    log.unlink(missing_ok=True)  # one console log per run
    result = VmRun()
    start = time.monotonic()

    def timestamped(raw: str) -> float | None:
        line = ConsoleLine(round(time.monotonic() - start, 3), raw.rstrip("\r\n").replace("\r", " "))
        result.lines.append(line)
        return on_line(line)
    done = run(cmd, log=log, check=False, on_line=timestamped, keep_output=False,
               deadline=deadline, die_with_parent=True)
    result.returncode, result.timed_out, result.stopped = done.returncode, done.timed_out, done.stopped
    result.duration = done.duration
    return result


_kvm_verdict: dict[str, tuple[bool, str]] = {}


def kvm_works(kernel: Path, seconds: float, log: Path) -> tuple[bool, str]:
    """Boot `kernel` under KVM with no root for up to `seconds`; True if it printed its banner."""
    key = hashlib.sha256(kernel.read_bytes()).hexdigest()  # once per kernel and process
    if key in _kvm_verdict:
        return _kvm_verdict[key]
    if not os.path.exists("/dev/kvm"):
        verdict = (False, "no /dev/kvm")
    elif not os.access("/dev/kvm", os.R_OK | os.W_OK):
        verdict = (False, "/dev/kvm is not accessible")
    else:
        cmd = [QEMU, "-accel", "kvm", "-machine", "pc", "-m", "128M", "-nodefaults", "-no-user-config",
               "-display", "none", "-serial", "stdio", "-no-reboot", "-kernel", str(kernel),
               "-append", "console=ttyS0 panic=-1 root=/dev/none"]
        seen = []

        def banner(line: ConsoleLine) -> float | None:
            if line.text.startswith("Linux version"):
                seen.append(line.t)
                return time.monotonic()  # proven; stop now
            return None
        trial = stream(cmd, deadline=time.monotonic() + seconds, log=log, on_line=banner)
        if seen:
            verdict = (True, f"a KVM trial boot printed its banner after {seen[0]:.1f}s")
        elif trial.timed_out:
            verdict = (False, f"a KVM trial boot printed nothing in {seconds:g}s")
        else:
            verdict = (False, f"a KVM trial boot failed (QEMU exited {trial.returncode}: "
                              f"{trial.tail(1)[:160] or 'no output'})")
    _kvm_verdict[key] = verdict
    return verdict


def choose_accel(requested: str, kernel: Path, seconds: float, log: Path,
                 guest: archmod.Arch | None = None) -> tuple[str, str]:
    """(accel, why) for `auto`, `kvm` or `tcg`; a guest of another architecture gets TCG."""
    if requested == "tcg":
        return "tcg", "requested"
    host = os.uname().machine
    if guest is not None and guest.host != host:
        return "tcg", f"a {guest.host} guest on a {host} host: KVM runs only the host's own architecture"
    ok, why = kvm_works(kernel, seconds, log)
    if requested == "kvm" or ok:
        return "kvm", why
    return "tcg", why
