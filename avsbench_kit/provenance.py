"""What produced a number: toolkit version, git SHA, library versions, hardware."""

from __future__ import annotations

import platform
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from avsbench_kit import __version__

_LIBRARIES = ("torch", "torchvision", "sam2", "transformers", "numpy", "webdataset")


@lru_cache(maxsize=1)
def git_sha() -> str:
    """The SHA of the checkout the toolkit runs from ("unknown" outside git), "+dirty" if modified."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here, capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def library_versions() -> dict[str, str]:
    out = {}
    for name in _LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def environment_info() -> dict[str, str]:
    """A flat dict for `avskit version` and for run records."""
    info = {
        "avsbench-kit": __version__,
        "git": git_sha(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "machine": platform.machine(),
    }
    info.update(library_versions())
    return info
