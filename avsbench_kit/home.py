"""Where prepared artefacts live: ``$AVSKIT_HOME`` or a per-user cache directory."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "AVSKIT_HOME"


def data_home(override: str | Path | None = None) -> Path:
    """The data home: explicit override > ``$AVSKIT_HOME`` > the user cache dir."""
    if override:
        return Path(override).expanduser().resolve()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser().resolve()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("avsbench-kit")).resolve()


def prepared_dir(dataset: str, home: str | Path | None = None) -> Path:
    """Directory holding a dataset's manifest (``manifest.parquet`` + ``manifest.json``)."""
    return data_home(home) / "prepared" / dataset


def raw_dir(dataset: str, home: str | Path | None = None) -> Path:
    """Where ``avskit prepare <dataset>`` looks for the official release when no --root is given."""
    return data_home(home) / "raw" / dataset


def synth_dir(size: str = "small", seed: int = 0, home: str | Path | None = None) -> Path:
    """The default SynthAVS location for a size and seed."""
    return data_home(home) / "synth" / f"{size}-seed{seed}"
