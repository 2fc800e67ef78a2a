"""Where the tests find the project's ``shared`` folder (spec constants, published results, real
metadata), and what happens when it is absent.

Why: a test that silently skips in CI because a folder was not checked out looks exactly like a
test that passed. With the environment variable ``CI`` set (CI services set it; ``.ci/run`` does
too) a missing shared file **fails** the test, naming the path; on a developer machine it is a skip
that says which file is missing. ``AVSKIT_SHARED`` overrides the location (default: ``../shared``
beside the repository, e.g. for a git worktree elsewhere).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AVSKIT_SHARED") or REPO.parent / "shared")


def in_ci() -> bool:
    """True when ``CI`` is set to anything but an empty string, ``0`` or ``false``."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def shared_file(rel: str) -> Path:
    """``SHARED/rel``; a failure in CI (a skip elsewhere) with the path when it is not a file."""
    path = SHARED / rel
    if not path.is_file():
        why = f"shared file {path} is missing (set AVSKIT_SHARED or check the shared folder out beside the repo)"
        if in_ci():
            pytest.fail(f"CI requires it: {why}", pytrace=False)
        pytest.skip(why)
    return path
