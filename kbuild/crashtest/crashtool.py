"""Open the dump with Debian's `crash`, the tool most kernel teams use, and judge what it shows.

`crash -s vmlinux vmcore -i cmds` runs sys, bt, bt -a and log, each redirected to its own
file (crash's own `echo` separators come out of order with redirected stdout). Where the
installed crash predates the kernel (configs/crashtest.toml [crash_tool] newest_kernel), the
result is a named skip that records what crash said; it never counts as a pass. The same
holds for a dump of another architecture (arm64 on this x86_64 host) when crash cannot
open it: Debian builds crash for the host's architecture only.
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kbuild.core.proc import run
from kbuild.crashtest.report import Check

COMMANDS = {"sys": "sys", "bt": "bt", "bt-a": "bt -a", "log": "log"}


@dataclass(frozen=True)
class CrashExpect:
    """What crash must show for one run."""

    release: str
    cpus: int
    crashed_cpu: int | None     # None: any CPU (the NMI trigger)
    panic: str                  # text of the sys PANIC line
    bt: str                     # a frame of the crashing task's bt
    stop: str                   # the frame every other CPU's bt -a shows (crash_nmi_callback)
    nonce: str


@dataclass
class CrashToolResult:
    status: str                 # pass | fail | skip
    version: str
    reason: str = ""
    seconds: float = 0.0
    checks: list[Check] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _vkey(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text))


def installed_version() -> str:
    """`crash --version`'s first line, e.g. `crash 8.0.2`."""
    out = run(["crash", "--version"], check=False).output
    m = re.search(r"crash (\d+\.\d+\.\d+\S*)", out)
    return m.group(1) if m else "unknown"


def predates(version: str, release: str, newest_kernel: dict[str, str]) -> str:
    """Why this crash cannot read this kernel, or "" if it is expected to."""
    newest = newest_kernel.get(version)
    kernel = _vkey(release)[:2]
    if newest and kernel > _vkey(newest):
        return (f"crash {version} predates Linux {kernel[0]}.{kernel[1]} (it reads kernels up to {newest}; "
                f"Debian's crash package is older than this kernel)")
    return ""


def run_crash(vmlinux: Path, vmcore: Path, out: Path, log: Path | None, timeout: float) -> tuple[dict[str, str], str]:
    """Run the four commands; returns {name: output} and crash's own stdout+stderr."""
    out.mkdir(parents=True, exist_ok=True)
    script = out / "commands"
    files = {name: out / f"{name}.txt" for name in COMMANDS}
    for f in files.values():
        f.unlink(missing_ok=True)
    script.write_text("".join(f"{cmd} > {files[name]}\n" for name, cmd in COMMANDS.items()) + "quit\n")
    done = run(["crash", "-s", str(vmlinux), str(vmcore), "-i", str(script)], log=log, check=False,
               deadline=time.monotonic() + timeout)
    said = done.output + (f"\n(killed after {timeout:g}s)" if done.timed_out else "")
    return {name: f.read_text(errors="replace") if f.exists() else "" for name, f in files.items()}, said


def _stanzas(bt_all: str) -> dict[int, str]:
    """`bt -a` output split per CPU (each stanza starts with `PID: ... CPU: n`)."""
    parts = re.split(r"(?m)^(?=PID: )", bt_all)
    out = {}
    for part in parts:
        m = re.match(r"PID:.*?CPU: (\d+)", part)
        if m:
            out[int(m.group(1))] = part
    return out


def judge(outputs: dict[str, str], want: CrashExpect) -> list[Check]:
    """One check per command: sys, bt, bt -a, log."""
    sys_ = outputs.get("sys", "")
    fields = dict(re.findall(r"(?m)^\s*([A-Z ]+): (.*)$", sys_))
    release, cpus, panic = fields.get("RELEASE", "absent"), fields.get("CPUS", "absent"), fields.get("PANIC", "absent")
    checks = [Check("crash-sys", release.strip() == want.release and cpus.strip() == str(want.cpus)
                    and want.panic in panic,
                    f"RELEASE {want.release}, CPUS {want.cpus}, PANIC containing {want.panic!r}",
                    f"RELEASE {release.strip()}, CPUS {cpus.strip()}, PANIC {panic.strip()}")]
    bt = outputs.get("bt", "")
    m = re.search(r"CPU: (\d+)", bt)
    bt_cpu = int(m.group(1)) if m else None
    cpu_ok = want.crashed_cpu is None or bt_cpu == want.crashed_cpu
    frames = re.findall(r"#\d+ \[\w+\] (\S+)|\[exception RIP: ([^\]+]+)", bt)
    shown = [a or b for a, b in frames]
    checks.append(Check("crash-bt", want.bt in bt and cpu_ok,
                        f"{want.bt!r} in bt of the task on CPU "
                        f"{'any' if want.crashed_cpu is None else want.crashed_cpu}",
                        f"CPU {bt_cpu}: " + (" <- ".join(shown[:10]) or "no frames")))
    stanzas = _stanzas(outputs.get("bt-a", ""))
    crashed = want.crashed_cpu if want.crashed_cpu is not None else bt_cpu
    unstopped = [c for c, text in stanzas.items() if c != crashed and want.stop not in text]
    checks.append(Check("crash-bt-a", sorted(stanzas) == list(range(want.cpus)) and not unstopped,
                        f"one stack per CPU 0-{want.cpus - 1}, each but CPU {crashed} in {want.stop}",
                        f"stacks for CPUs {sorted(stanzas)}"
                        + (f"; not in {want.stop}: CPU {', '.join(map(str, unstopped))}" if unstopped else "")))
    line = f"crash-test nonce {want.nonce}"
    checks.append(Check("crash-log", line in outputs.get("log", ""), f"{line!r} in log",
                        "present" if line in outputs.get("log", "") else
                        f"absent ({len(outputs.get('log', '').splitlines())} lines)"))
    return checks


def _said(said: str) -> str:
    """crash's own complaint: its first `crash:` line, else its first line."""
    lines = [ln.strip() for ln in said.splitlines() if ln.strip() and not ln.startswith("$ ")]
    return next((ln for ln in lines if ln.startswith("crash:")), lines[0] if lines else "")


def check(vmlinux: Path, vmcore: Path, want: CrashExpect, out: Path, log: Path | None,
          timeout: float, newest_kernel: dict[str, str], guest_machine: str | None = None) -> CrashToolResult:
    """Run crash on the dump; pass, fail with the checks, or a named skip where crash is too old or foreign."""
    t = time.monotonic()
    version = installed_version()
    too_old = predates(version, want.release, newest_kernel)
    host = os.uname().machine
    outputs, said = run_crash(vmlinux, vmcore, out, log, timeout)
    (out / "crash-output.txt").write_text(said)
    result = CrashToolResult("pass", version, files={n: str(out / f"{n}.txt") for n in COMMANDS})
    result.files["output"] = str(out / "crash-output.txt")
    result.seconds = round(time.monotonic() - t, 3)
    if too_old:
        first = _said(said)
        result.status = "skip"
        result.reason = too_old + (f"; it says: {first}" if first else "")
        return result
    if guest_machine and guest_machine != host and not any(outputs.values()):
        first = _said(said)
        result.status = "skip"
        result.reason = (f"crash {version} is built for {host} and cannot read this {guest_machine} dump"
                         + (f"; it says: {first}" if first else ""))
        return result
    result.checks = judge(outputs, want)
    if not all(c.ok for c in result.checks):
        result.status = "fail"
        bad = next(c for c in result.checks if not c.ok)
        result.reason = bad.line()
        if not any(outputs.values()):
            first = next((ln.strip() for ln in said.splitlines() if ln.strip()), "no output")
            result.reason = f"crash could not open the dump: {first}"
    return result
