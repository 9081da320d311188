"""Glue between invoke tasks and kbuild: one-line errors and the exit-code contract."""
from __future__ import annotations

import errno
import functools
import os
import sys
import traceback

from invoke.exceptions import Exit

from kbuild.core.errors import KbuildError


def debugging() -> bool:
    return "--debug" in sys.argv or "-d" in sys.argv or bool(os.environ.get("KBUILD_DEBUG"))


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
