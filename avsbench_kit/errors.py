"""Typed user errors.

The CLI turns every :class:`AvsKitError` into one line (message), one hint line and a non-zero
exit code; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from typing import Callable


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


class StorageError(AvsKitError):
    """The data home cannot be written: disk full, quota, read-only file system, no permission."""

    exit_code = 7


#: errno values that mean "the storage refused the write" (not a bug in the toolkit)
_STORAGE_ERRNOS = {"ENOSPC": "the disk is full", "EDQUOT": "the disk quota is exceeded",
                   "EROFS": "the file system is read-only", "EACCES": "permission denied",
                   "EPERM": "operation not permitted"}


def storage_error(exc: OSError) -> "StorageError | None":
    """A one-line :class:`StorageError` for a write the storage refused, else None (a real bug).

    Why it is safe to say "nothing was lost": every write goes to a temp file renamed into place,
    so a refused write leaves the previous files as they were and re-running resumes."""
    import errno as _errno

    name = _errno.errorcode.get(exc.errno or 0, "")
    if name not in _STORAGE_ERRNOS:
        return None
    where = exc.filename or "the data home"
    where = f"{where} -> {exc.filename2}" if getattr(exc, "filename2", None) else where
    verb = "access" if name in ("EACCES", "EPERM") else "write"  # a refused read is not a write
    return StorageError(f"cannot {verb} {where}: {_STORAGE_ERRNOS[name]} ({name}); the data written before is kept",
                        hint="free space or make the folder writable (or pick another: --home DIR / $AVSKIT_HOME), "
                             "then re-run the same command: it resumes")


def run_script(main: "Callable[[], object]") -> int:
    """Exit code of a ``python -m …`` analysis script: a user error is one line + hint and code 2,
    as in ``avskit``, not a traceback."""
    import sys

    try:
        main()
    except AvsKitError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code
    return 0
