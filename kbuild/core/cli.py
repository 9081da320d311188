"""Glue between invoke tasks and kbuild: one-line errors and the exit-code contract."""
from __future__ import annotations

import errno
import functools
import inspect
import os
import sys
import traceback

from invoke.exceptions import Exit

from kbuild.core import defaults
from kbuild.core.errors import KbuildError


# invoke's own options that take a value: their value is not a task name
_CORE_VALUED = {"-f", "--config", "-c", "--collection", "-r", "--search-root", "-w", "--write-pyc",
                "--prefix", "--complete", "--print-completion-script", "-e", "--echo-format"}


def core_args(argv: list[str]) -> list[str]:
    """invoke's own options: everything before the first task name."""
    out, skip = [], False
    for arg in argv[1:]:
        if skip:
            skip = False
        elif arg.startswith("-"):
            out.append(arg)
            skip = arg in _CORE_VALUED
        else:
            break
    return out


def debugging() -> bool:
    """`invoke --debug TASK` (or -d before the task): a task's own -d flag does not count."""
    core = core_args(sys.argv)
    return "--debug" in core or "-d" in core or bool(os.environ.get("KBUILD_DEBUG"))


def configured(fn):
    """Fill each flag the user did not give from the `kbuild:` section of invoke's config files.
    An explicit flag always wins. What was filled, and from where, is in defaults.filled()."""
    params = list(inspect.signature(fn).parameters)[1:]

    @functools.wraps(fn)
    def wrapper(c, *args, **kwargs):
        resolved = defaults.resolve(c.config)
        filled = {}
        for name in params:
            if name in resolved.values and kwargs.get(name) in (None, False, []):
                value = resolved.values[name]
                kwargs[name] = list(value) if isinstance(value, tuple) else value
                filled[name] = resolved.origins[name]
        token = defaults.FILLED.set(filled)
        try:
            return fn(c, *args, **kwargs)
        finally:
            defaults.FILLED.reset(token)
    return wrapper


def guarded(fn):
    """Turn KbuildError / OSError / Ctrl-C into `error: ...` on stderr and exit 1/2/130 (traceback with --debug)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except KbuildError as e:
            if debugging():
                traceback.print_exc()
            raise Exit(f"error: {e}", code=e.exit_code) from None
        except KeyboardInterrupt:
            raise Exit("interrupted: stopped before completion; no partial output was kept", code=130) from None
        except OSError as e:  # a full disk, a read-only or vanished folder: outputs are written atomically
            if debugging():
                traceback.print_exc()
            where = f" ({e.filename})" if e.filename else ""
            hint = "; free some space and rerun" if e.errno == errno.ENOSPC else ""
            raise Exit(f"error: {e.strerror or e}{where}{hint}; nothing half-written was kept", code=2) from None
    return wrapper


def plain_config_errors() -> None:
    """invoke merges its config files after tasks.py is imported and outside any task, so a
    `kbuild:` section that is not a mapping ends in invoke's traceback; make it one line, exit 2."""
    from invoke.config import AmbiguousMergeError

    previous = sys.excepthook

    def hook(kind, value, tb):
        if not issubclass(kind, AmbiguousMergeError) or debugging():
            return previous(kind, value, tb)
        sys.stderr.write(f"error: invoke config: a `{defaults.SECTION}:` section (invoke.yaml, ~/.invoke.yaml, "
                         f"invoke -f FILE) must be a mapping of settings such as `{defaults.SECTION}: "
                         f"{{localversion: acme}}`, not a {_merged_type(value)}\n")
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(2)

    sys.excepthook = hook


def _merged_type(error: Exception) -> str:
    """The offending value's type from invoke's message ("... with <class 'list'> (...)")."""
    import re

    m = re.search(r"with <class '(\w+)'>", str(error))
    return {"list": "list", "str": "string", "int": "number", "float": "number"}.get(m[1], m[1]) if m else "plain value"
