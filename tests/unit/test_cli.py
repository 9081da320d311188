import errno

import pytest
from invoke.exceptions import Exit

from kbuild.core.cli import guarded
from kbuild.core.errors import BadInput, CheckFailed


def raising(exc):
    @guarded
    def task():
        raise exc
    return task


@pytest.mark.parametrize("exc, code, message", [
    (BadInput("x.config:1: bad"), 2, "error: x.config:1: bad"),
    (CheckFailed("requirement crash-dump: no"), 1, "error: requirement crash-dump: no"),
    (OSError(errno.ENOSPC, "No space left on device", "dist/x.deb"), 2,
     "error: No space left on device (dist/x.deb); free some space and rerun; nothing half-written was kept"),
    (KeyboardInterrupt(), 130, "interrupted: stopped before completion; no partial output was kept"),
])
def test_errors_become_one_line_and_an_exit_code(exc, code, message):
    with pytest.raises(Exit) as info:
        raising(exc)()
    assert info.value.code == code and info.value.message == message
    assert "\n" not in info.value.message
