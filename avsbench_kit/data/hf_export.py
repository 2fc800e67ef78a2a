"""Export a manifest as a Hugging Face ``datasets.DatasetDict`` (`avskit prepare ... --hf DIR`).

One split per manifest split, the manifest columns as they are: every path stays relative to
the dataset root, so the export holds no absolute path in its rows and can be moved with the
data. The root, fingerprint and toolkit version go into each split's ``DatasetInfo.description``
(JSON), so a loaded export still says what it was made from. ``datasets`` is an optional extra.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from avsbench_kit import __version__
from avsbench_kit.data.manifest import COLUMNS, Manifest
from avsbench_kit.errors import ConfigError


def _features(datasets: Any) -> Any:
    """Explicit column types, so empty lists and empty splits keep their schema."""
    list_of = getattr(datasets, "List", None) or datasets.Sequence
    kinds = {
        "str": datasets.Value("string"),
        "int": datasets.Value("int64"),
        "bool": datasets.Value("bool"),
        "list[str]": list_of(datasets.Value("string")),
        "list[bool]": list_of(datasets.Value("bool")),
    }
    return datasets.Features({col: kinds[kind] for col, (kind, _meaning) in COLUMNS.items()})


def export_description(manifest: Manifest) -> dict[str, Any]:
    """What goes into ``DatasetInfo.description`` (as JSON)."""
    return {
        "producer": "avsbench-kit",
        "toolkit_version": __version__,
        "dataset": manifest.dataset,
        "fingerprint": manifest.fingerprint,
        "root": str(manifest.root),
        "paths": "frames, masks, audio and log_mel are relative to root",
    }


def read_description(info_description: str) -> dict[str, Any]:
    """Parse the JSON written by :func:`export_hf` back (``{}`` if it is not ours)."""
    try:
        out = json.loads(info_description or "{}")
    except ValueError:
        return {}
    return out if isinstance(out, dict) else {}


def export_hf(manifest: Manifest, out_dir: str | Path) -> Path:
    """Save ``manifest`` as a ``DatasetDict`` with ``save_to_disk`` (atomically); return ``out_dir``."""
    try:
        import datasets
    except ImportError as exc:
        raise ConfigError(
            "the Hugging Face export needs the `datasets` package",
            hint="pip install avsbench-kit[hf]",
        ) from exc

    out_dir = Path(out_dir).expanduser().resolve()
    features = _features(datasets)
    description = json.dumps(export_description(manifest), sort_keys=True)
    splits = sorted(manifest.df["split"].unique()) if len(manifest.df) else []
    parts = {}
    for split in splits:
        rows = manifest.rows(split)
        columns = {col: [r[col] for r in rows] for col in COLUMNS}
        info = datasets.DatasetInfo(description=description, dataset_name=manifest.dataset, features=features)
        parts[split] = datasets.Dataset.from_dict(columns, info=info, split=split)
    ddict = datasets.DatasetDict(parts)
    from avsbench_kit.atomic import shared_mode

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    old: Path | None = None
    try:
        tmp.chmod(shared_mode(directory=True))  # mkdtemp gives 0700
        bars_on = datasets.is_progress_bar_enabled()
        datasets.disable_progress_bars()  # one "Saving the dataset" bar per split is noise in the CLI
        try:
            ddict.save_to_disk(str(tmp))
        finally:
            if bars_on:
                datasets.enable_progress_bars()
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent))
            os.rmdir(old)
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
    except BaseException:
        if old is not None and not out_dir.exists():
            os.replace(old, out_dir)  # put the previous export back
            old = None
        raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and old.exists():
            shutil.rmtree(old, ignore_errors=True)
    return out_dir
