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

from .errors import CommandFailed, MissingTool

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


def run(cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None,
        log: Path | None = None, check: bool = True, package: str | None = None,
        on_line: Callable[[str], float | None] | None = None, keep_output: bool = True,
        deadline: float | None = None, die_with_parent: bool = False) -> Result:
    """Run `cmd`, capture stdout+stderr, append both to `log`, raise CommandFailed on error.

    `package` names the Debian package to suggest when the program itself is missing.
    `on_line` sees each output line as it arrives (progress bars, a VM's console); it may
    return a time.monotonic() value that moves the `deadline` earlier (stop soon).
    At the deadline the child is killed and the result says so (`timed_out`/`stopped`);
    `check` does not raise for that, the caller names the phase that hung.
    `keep_output=False` keeps only the tail in memory, for a kernel build's many lines.
    """
    full_env = None if env is None else {**os.environ, **env}
    kept: list[str] | deque[str] = [] if keep_output else deque(maxlen=TAIL_LINES * 20)
    fh = None
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        fh = open(log, "a", encoding="utf-8", buffering=1)  # line-buffered: `tail -f` works
        fh.write(f"$ {shlex.join(cmd)}" + (f"   (in {cwd})" if cwd else "") + "\n")
    start, timed_out, stopped = time.monotonic(), False, False
    try:
        try:
            proc = subprocess.Popen(cmd, cwd=cwd, env=full_env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    errors="replace", preexec_fn=_die_with_parent if die_with_parent else None)
        except FileNotFoundError:
            hint = f" (install the Debian package `{package}`)" if package else ""
            raise MissingTool(f"`{cmd[0]}` is not installed{hint}; `invoke doctor` lists everything needed") from None
        lines: queue.Queue[str | None] = queue.Queue()

        def reader() -> None:  # a thread, so waiting for a line can time out
            for raw in proc.stdout:
                lines.put(raw)
            lines.put(None)
        threading.Thread(target=reader, daemon=True).start()
        moved = False
        try:
            while True:
                try:
                    raw = lines.get(timeout=None if deadline is None else max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    stopped, timed_out = moved, not moved
                    break
                if raw is None:
                    break
                kept.append(raw)
                if fh:
                    fh.write(raw)
                sooner = on_line(raw) if on_line else None
                if sooner is not None and (deadline is None or sooner < deadline):
                    deadline, moved = sooner, True
        finally:  # normal end, deadline, or Ctrl-C: never leave the child running
            if proc.poll() is None and not (timed_out or stopped):
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        why = ", killed at the deadline" if timed_out else ", stopped early" if stopped else ""
        if fh:
            fh.write(f"[exit {proc.returncode}{why}]\n")
    finally:
        if fh:
            fh.close()
    output = "".join(kept)
    if check and proc.returncode != 0 and not (timed_out or stopped):
        tail = "\n".join(output.splitlines()[-TAIL_LINES:])
        raise CommandFailed(cmd, proc.returncode, tail)
    return Result(cmd, proc.returncode, output, timed_out, stopped, round(time.monotonic() - start, 3))
