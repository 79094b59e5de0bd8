"""Errors that reach the user as one sentence and a hint, never a traceback."""

from __future__ import annotations

# Exit codes, documented in the README.
EXIT_OK = 0
EXIT_FAILED = 1  # the lab or a check failed
EXIT_USAGE = 2  # bad input: unknown host, malformed lab file, bad flag
EXIT_MISSING = 3  # a tool or provider this machine lacks
EXIT_BUSY = 4  # another labctl command holds the lab


class LabError(Exception):
    """A failure explained to the user: what failed, and what to do about it."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, hint: str | None = None, exit_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(LabError):
    exit_code = EXIT_USAGE


class MissingToolError(LabError):
    exit_code = EXIT_MISSING


class LabBusyError(LabError):
    exit_code = EXIT_BUSY


class HostUnreachable(LabError):
    """A host that does not answer SSH."""


class SessionLost(HostUnreachable):
    """A host that answered SSH, then refused a session or dropped the connection under a
    command: a command that only reads may be run again."""
