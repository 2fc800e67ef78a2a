"""Typed user errors.

The CLI turns every :class:`AvsKitError` into one line (message), one hint line and a non-zero
exit code; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class AvsKitError(Exception):
    """A problem the user can fix: bad input, bad layout, bad override."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:  # one line, the hint on its own line in the CLI
        return self.message


class ConfigError(AvsKitError):
    """An unknown key, a value of the wrong type, an unknown preset."""


class RegistryError(AvsKitError):
    """An unknown dataset, encoder, baseline or protocol name."""


class DataError(AvsKitError):
    """A dataset on disk does not match its official layout (missing/corrupt files, bad CSV rows)."""

    exit_code = 3


class NotPreparedError(AvsKitError):
    """A dataset was asked for before `avskit prepare` wrote its manifest."""

    exit_code = 4
