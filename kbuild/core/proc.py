"""The one way we run a subprocess: logged, with its output captured, one error type."""
from __future__ import annotations

import ctypes
import os
import queue
import shlex
import signal
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from kbuild.core.errors import CommandFailed, MissingTool

TAIL_LINES = 25


@dataclass(frozen=True)
class Result:
    cmd: list[str]
    returncode: int
    output: str
    timed_out: bool = False  # killed because the deadline passed
    stopped: bool = False    # killed early because on_line asked for it
    duration: float = 0.0


def _die_with_parent() -> None:
    """In the child: SIGKILL it if we die, so a killed test never leaves a hung VM behind."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _start(cmd: list[str], cwd, env, package, die_with_parent) -> subprocess.Popen:
    full_env = None if env is None else {**os.environ, **env}
    try:
        return subprocess.Popen(cmd, cwd=cwd, env=full_env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                errors="replace", preexec_fn=_die_with_parent if die_with_parent else None)
    except FileNotFoundError:
        from kbuild.core.tools import package_for   # the registry reads configs/ lazily
        package = package or package_for(cmd[0])
        hint = f" (install the Debian package `{package}`)" if package else ""
        raise MissingTool(f"`{cmd[0]}` is not installed{hint}; `invoke doctor` lists everything needed") from None


def _lines(proc: subprocess.Popen) -> queue.Queue:
    """The child's output lines, read by a thread so that waiting for one can time out."""
    lines: queue.Queue[str | None] = queue.Queue()

    def reader() -> None:
        for raw in proc.stdout:
            lines.put(raw)
        lines.put(None)
    threading.Thread(target=reader, daemon=True).start()
    return lines


def _pump(lines: queue.Queue, sink: Callable[[str], None], on_line, deadline: float | None) -> tuple[bool, bool]:
    """Feed lines to `sink` and `on_line` until the output ends or the deadline passes.
    Returns (timed_out, stopped): `on_line` may move the deadline earlier, which is a stop."""
    moved = False
    while True:
        try:
            raw = lines.get(timeout=None if deadline is None else max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return not moved, moved
        if raw is None:
            return False, False
        sink(raw)
        sooner = on_line(raw) if on_line else None
        if sooner is not None and (deadline is None or sooner < deadline):
            deadline, moved = sooner, True


def _reap(proc: subprocess.Popen, killed: bool) -> None:
    """Never leave the child running: after a normal end, a deadline or Ctrl-C."""
    if proc.poll() is None and not killed:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def run(cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None,
        log: Path | None = None, check: bool = True, package: str | None = None,
        on_line: Callable[[str], float | None] | None = None, keep_output: bool = True,
        deadline: float | None = None, die_with_parent: bool = False) -> Result:
    """Run `cmd`, capture stdout+stderr, append both to `log`, raise CommandFailed on error.

    `package` names the Debian package to suggest when the program itself is missing
    (default: the one configs/tools.toml registers for it).
    `on_line` sees each output line as it arrives (progress bars, a VM's console); it may
    return a time.monotonic() value that moves the `deadline` earlier (stop soon).
    At the deadline the child is killed and the result says so (`timed_out`/`stopped`);
    `check` does not raise for that, the caller names the phase that hung.
    `keep_output=False` keeps only the tail in memory, for a kernel build's many lines.
    """
    kept: list[str] | deque[str] = [] if keep_output else deque(maxlen=TAIL_LINES * 20)
    fh = None
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        fh = open(log, "a", encoding="utf-8", buffering=1)  # line-buffered: `tail -f` works
        fh.write(f"$ {shlex.join(cmd)}" + (f"   (in {cwd})" if cwd else "") + "\n")

    def sink(raw: str) -> None:
        kept.append(raw)
        if fh:
            fh.write(raw)
    start, timed_out, stopped = time.monotonic(), False, False
    try:
        proc = _start(cmd, cwd, env, package, die_with_parent)
        try:
            timed_out, stopped = _pump(_lines(proc), sink, on_line, deadline)
        finally:
            _reap(proc, timed_out or stopped)
        why = ", killed at the deadline" if timed_out else ", stopped early" if stopped else ""
        if fh:
            fh.write(f"[exit {proc.returncode}{why}]\n")
    finally:
        if fh:
            fh.close()
    output = "".join(kept)
    if check and proc.returncode != 0 and not (timed_out or stopped):
        raise CommandFailed(cmd, proc.returncode, "\n".join(output.splitlines()[-TAIL_LINES:]))
    return Result(cmd, proc.returncode, output, timed_out, stopped, round(time.monotonic() - start, 3))
