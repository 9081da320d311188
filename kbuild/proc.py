"""The one way we run a subprocess: logged, with its output captured, one error type."""
from __future__ import annotations

import os
import shlex
import subprocess
from collections import deque
from typing import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import CommandFailed, MissingTool

TAIL_LINES = 25


@dataclass(frozen=True)
class Result:
    cmd: list[str]
    returncode: int
    output: str


def run(cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None,
        log: Path | None = None, check: bool = True, package: str | None = None,
        on_line: Callable[[str], None] | None = None, keep_output: bool = True) -> Result:
    """Run `cmd`, capture stdout+stderr, append both to `log`, raise CommandFailed on error.

    `package` names the Debian package to suggest when the program itself is missing.
    `on_line` sees each output line as it arrives (progress bars); `keep_output=False`
    keeps only the tail in memory, for a kernel build's hundred thousand lines.
    """
    full_env = None if env is None else {**os.environ, **env}
    fh = None
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        fh = open(log, "a", encoding="utf-8", buffering=1)  # line-buffered: `tail -f` works
        fh.write(f"$ {shlex.join(cmd)}" + (f"   (in {cwd})" if cwd else "") + "\n")
        fh.flush()
    kept: list[str] | deque[str] = [] if keep_output else deque(maxlen=TAIL_LINES * 20)
    try:
        try:
            proc = subprocess.Popen(cmd, cwd=cwd, env=full_env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, errors="replace")
        except FileNotFoundError:
            hint = f" (install the Debian package `{package}`)" if package else ""
            raise MissingTool(f"`{cmd[0]}` is not installed{hint}; `invoke doctor` lists everything needed") from None
        try:
            for line in proc.stdout:
                kept.append(line)
                if fh:
                    fh.write(line)
                if on_line:
                    on_line(line)
            proc.wait()
        except BaseException:  # Ctrl-C: stop the child before unwinding
            proc.kill()
            proc.wait()
            raise
        if fh:
            fh.write(f"[exit {proc.returncode}]\n")
    finally:
        if fh:
            fh.close()
    output = "".join(kept)
    if check and proc.returncode != 0:
        tail = "\n".join(output.splitlines()[-TAIL_LINES:])
        raise CommandFailed(cmd, proc.returncode, tail)
    return Result(cmd, proc.returncode, output)
