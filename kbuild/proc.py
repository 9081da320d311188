"""The one way we run a subprocess: logged, with its output captured, one error type."""
from __future__ import annotations

import os
import shlex
import subprocess
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
        log: Path | None = None, check: bool = True, package: str | None = None) -> Result:
    """Run `cmd`, capture stdout+stderr, append both to `log`, raise CommandFailed on error.

    `package` names the Debian package to suggest when the program itself is missing.
    """
    full_env = None if env is None else {**os.environ, **env}
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=full_env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, errors="replace")
    except FileNotFoundError:
        hint = f" (install the Debian package `{package}`)" if package else ""
        raise MissingTool(f"`{cmd[0]}` is not installed{hint}; `invoke doctor` lists everything needed") from None
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(f"$ {shlex.join(cmd)}" + (f"   (in {cwd})" if cwd else "") + "\n")
            fh.write(proc.stdout)
            fh.write(f"[exit {proc.returncode}]\n")
    if check and proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-TAIL_LINES:])
        raise CommandFailed(cmd, proc.returncode, tail)
    return Result(cmd, proc.returncode, proc.stdout)
