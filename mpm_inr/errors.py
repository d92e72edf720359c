"""User-facing errors: one line, no traceback, names the fix.

Entry points catch `UserError` and print `error: <message>` before exiting non-zero, so anything a user can
cause (bad option, bad value, missing or corrupt data) should raise a subclass of it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable


class UserError(Exception):
    """An error caused by the user's input; printed as one line without a traceback."""

    exit_code: int = 2

    def __str__(self) -> str:  # keep it to one line whatever the caller passed
        return " ".join(super().__str__().split())


class ConfigError(UserError):
    """A config value is out of range or inconsistent."""


class DatasetError(UserError):
    """A dataset is missing, corrupt, partial or inconsistent with its meta.json."""


class StudyError(UserError):
    """A study directory cannot be used (locked by another agent, unreadable journal, ...)."""


def exit_code_of(command: Callable[[], object]) -> int:
    """Run a command-line tool's action: 0 when it finishes; a UserError becomes one `error: ...` line on stderr and
    its exit code (no traceback: the message already names the fix)."""
    try:
        command()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    return 0
