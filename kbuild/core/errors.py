"""One exception family, so tasks can turn any failure into one line and an exit code."""


class KbuildError(Exception):
    """Base error. `exit_code` follows the task contract: 1 a check failed, 2 bad input."""

    exit_code = 2


class BadInput(KbuildError):
    """The user gave something we cannot use (file, flag, fragment, tree)."""

    exit_code = 2


class MissingTool(KbuildError):
    """An external program is not installed; the message names the Debian package."""

    exit_code = 2


class CheckFailed(KbuildError):
    """A requirement, lint or verification did not hold."""

    exit_code = 1


class CommandFailed(KbuildError):
    """A subprocess exited non-zero; carries the tail of its output."""

    exit_code = 1

    def __init__(self, cmd, returncode, tail):
        self.cmd, self.returncode, self.tail = cmd, returncode, tail
        super().__init__(f"`{' '.join(cmd)}` exited {returncode}" + (f":\n{tail}" if tail else ""))
