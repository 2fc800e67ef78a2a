"""The manifest: one row per evaluation sample, every path relative to the dataset root.

AVSBench (S4/MS3/AVSS) samples are clips; Ref-AVS samples are expressions (metadata rows).
The fingerprint hashes the canonical row content, the sha256 of each metadata file and the
relative paths of every media file, so it is independent of the machine and of the absolute
root, but changes when a file is added or removed, a CSV row or split changes, or the rows do.

Encoded file sizes are deliberately *not* part of it: re-encoding identical pixels (another
zlib level or PNG encoder version, e.g. after an OpenCV upgrade regenerates SynthAVS) changes
every size and would make the regression gate refuse its goldens although the data a model sees
is the same. Decoded content is what matters, and only ``checksum=True`` looks at content: the
per-file sha256 of every referenced file is then part of the rows, so any byte edit (pixels,
samples, or a re-encode) changes the fingerprint — the strict mode for archiving a release.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import pandas as pd

from avsbench_kit import __version__
from avsbench_kit.atomic import atomic_path, remove_stale_temps, write_json
from avsbench_kit.errors import DataError, NotPreparedError
from avsbench_kit.hashing import sha256_file, sha256_obj, short

SCHEMA_VERSION = 1

#: column -> (kind, meaning). Kinds: str, int, bool, list[str], list[bool].
COLUMNS: dict[str, tuple[str, str]] = {
    "sample_key": ("str", "unique key, no dots (WebDataset splits keys at the first dot)"),
    "split": ("str", "official split name"),
    "clip": ("str", "clip / media folder name"),
    "subset": ("str", "AVSS subset (v1s/v1m/v2); empty elsewhere"),
    "category": ("str", "S4 category, AVSS sounding-object text, Ref-AVS object token; may be empty"),
    "text": ("str", "Ref-AVS referring expression; empty elsewhere"),
    "is_null": ("bool", "Ref-AVS null expression (empty GT)"),
    "fid": ("int", "Ref-AVS mask track id; -1 elsewhere"),
    "row": ("int", "0-based row of the official metadata file this sample came from"),
    "num_frames": ("int", "frames of the clip"),
    "frames": ("list[str]", "frame image paths, in time order"),
    "masks": ("list[str]", "GT mask path per frame; empty string where no GT file is read"),
    "annotated": ("list[bool]", "frames whose GT the official code reads for this split"),
    "audio": ("str", "WAV path; empty if absent"),
    "log_mel": ("str", "AVSBench audio_log_mel pickle path; empty if absent"),
    "checksums": ("list[str]", "sha256 of frames, then masks, then audio (only with --checksum)"),
}

_DEFAULTS: dict[str, Any] = {
    "subset": "",
    "category": "",
    "text": "",
    "is_null": False,
    "fid": -1,
    "audio": "",
    "log_mel": "",
    "checksums": [],
}


def check_key(key: str) -> str:
    if not key or "." in key or "/" in key:
        raise ValueError(f"sample key {key!r} must be non-empty and contain no '.' or '/'")
    return key


def normalise_row(row: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults, check the schema, coerce types (builders pass plain dicts)."""
    out = {**_DEFAULTS, **row}
    missing = [c for c in COLUMNS if c not in out]
    if missing:
        raise ValueError(f"manifest row lacks columns {missing}: {row}")
    extra = [c for c in out if c not in COLUMNS]
    if extra:
        raise ValueError(f"manifest row has unknown columns {extra}")
    check_key(out["sample_key"])
    out["fid"] = int(out["fid"])
    out["row"] = int(out["row"])
    out["num_frames"] = int(out["num_frames"])
    out["is_null"] = bool(out["is_null"])
    out["frames"] = [str(p) for p in out["frames"]]
    out["masks"] = [str(p) for p in out["masks"]]
    out["annotated"] = [bool(a) for a in out["annotated"]]
    out["checksums"] = [str(c) for c in out["checksums"]]
    n = out["num_frames"]
    if not (len(out["frames"]) == len(out["masks"]) == len(out["annotated"]) == n):
        raise ValueError(f"sample {out['sample_key']}: frames/masks/annotated must have {n} entries")
    return {c: out[c] for c in COLUMNS}


def referenced_files(row: dict[str, Any]) -> list[str]:
    """Every file a row points at, in checksum order (frames, masks, audio, log-mel)."""
    files = list(row["frames"]) + [m for m in row["masks"] if m]
    files += [p for p in (row["audio"], row["log_mel"]) if p]
    return files


def tree_listing(root: Path, subdirs: Iterable[str], suffixes: tuple[str, ...]) -> list[str]:
    """Sorted relative paths of every media file below ``root/subdir`` (no sizes: see the module
    docstring).

    Plain ``os.scandir`` on strings: a real release has ~10^5 files and Path objects per file
    cost more than the listing itself.
    """
    listing: list[str] = []
    stack = [(os.path.join(root, sub), sub) for sub in subdirs]
    while stack:
        full_dir, rel_dir = stack.pop()
        try:
            entries = list(os.scandir(full_dir))
        except FileNotFoundError:
            continue
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}"
            if entry.is_dir(follow_symlinks=True):
                stack.append((entry.path, rel))
            elif entry.name.lower().endswith(suffixes):
                listing.append(rel)
    listing.sort()
    return listing


@dataclass
class Exclusion:
    """A sample left out by ``--skip-bad`` (or a problem that stops the prepare)."""

    sample_key: str
    path: str
    reason: str


@dataclass
class ManifestBuild:
    """What a dataset builder returns: rows plus what was skipped and why."""

    rows: list[dict[str, Any]]
    problems: list[Exclusion] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    media_dirs: list[str] = field(default_factory=list)
    metadata_files: list[str] = field(default_factory=list)
    media_suffixes: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".wav", ".pkl")


@dataclass
class Manifest:
    dataset: str
    df: pd.DataFrame
    meta: dict[str, Any]
    _records: Optional[tuple[pd.DataFrame, list[dict[str, Any]]]] = field(default=None, repr=False, compare=False)

    @property
    def fingerprint(self) -> str:
        return self.meta["fingerprint"]

    @property
    def root(self) -> Path:
        return Path(self.meta["root"])

    def split(self, split: str) -> pd.DataFrame:
        splits = sorted(self.df["split"].unique())
        if split not in splits:
            raise DataError(
                f"dataset {self.dataset!r} has no split {split!r}", hint="splits: " + ", ".join(splits)
            )
        return self.df[self.df["split"] == split].reset_index(drop=True)

    def split_counts(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self.df["split"].value_counts(sort=False).items()}

    def rows(self, split: str | None = None) -> list[dict[str, Any]]:
        """Plain-python rows (of one split), in manifest order; fresh copies on every call.

        The DataFrame -> records conversion runs once per ``df`` (it cost ~0.1 s per 4k rows, and
        loading + one evaluation asked for it four times)."""
        if self._records is None or self._records[0] is not self.df:
            self._records = (self.df, [_plain(r) for r in self.df.to_dict("records")])
        records = self._records[1]
        if split is not None:
            if split not in self.split_counts():
                self.split(split)  # raises the DataError that names the splits
            records = [r for r in records if r["split"] == split]
        return [{k: list(v) if isinstance(v, list) else v for k, v in r.items()} for r in records]

    # ---- persistence -------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        """Write ``manifest.parquet``, ``exclusions.parquet`` and ``manifest.json`` atomically.

        The JSON is written last: a manifest directory is valid only once it names the
        fingerprint of the parquet beside it.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(directory)  # what a killed prepare was writing
        with atomic_path(directory / "manifest.parquet") as tmp:
            self.df.to_parquet(tmp, index=False)
        excl = pd.DataFrame(self.meta.get("exclusions", []), columns=["sample_key", "path", "reason"])
        with atomic_path(directory / "exclusions.parquet") as tmp:
            excl.to_parquet(tmp, index=False)
        write_json(directory / "manifest.json", self.meta)

    @classmethod
    def load(cls, directory: str | Path, dataset: str | None = None) -> "Manifest":
        directory = Path(directory)
        meta_path = directory / "manifest.json"
        name = dataset or directory.name
        if not meta_path.exists():
            raise NotPreparedError(
                f"dataset {name!r} is not prepared (no {meta_path})",
                hint=f"run `avskit prepare {name}` first",
            )
        import json

        meta = json.loads(meta_path.read_text("utf-8"))
        df = pd.read_parquet(directory / "manifest.parquet")
        manifest = cls(meta["dataset"], df, meta)
        actual = fingerprint_rows(manifest.rows(), meta.get("tree_digest", ""))
        if actual != meta["fingerprint"]:
            raise DataError(
                f"{directory / 'manifest.parquet'} does not match the fingerprint in manifest.json",
                hint=f"re-run `avskit prepare {name}`",
            )
        return manifest


def _plain(record: dict[str, Any]) -> dict[str, Any]:
    """Parquet gives numpy arrays/scalars back; fingerprints need plain python values."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if hasattr(value, "tolist"):
            value = value.tolist()
        out[key] = value
    return out


def fingerprint_rows(rows: list[dict[str, Any]], tree_digest: str) -> str:
    return sha256_obj({"schema": SCHEMA_VERSION, "rows": rows, "tree": tree_digest})


def build_manifest(
    dataset: str,
    root: Path,
    build: ManifestBuild,
    *,
    skip_bad: bool = False,
    checksum: bool = False,
) -> Manifest:
    """Validate a builder's output and turn it into a fingerprinted :class:`Manifest`.

    Without ``skip_bad`` any problem stops here with the first offending files named; with it,
    the offending samples are dropped and listed in the exclusion table.
    """
    problems = build.problems
    if problems and not skip_bad:
        first = "; ".join(f"{p.path}: {p.reason}" for p in problems[:3])
        raise DataError(
            f"{len(problems)} problem(s) in {root}: {first}",
            hint="fix the files, or pass --skip-bad to prepare without those samples "
            "(they are listed in the manifest's exclusion table)",
        )
    bad_keys = {p.sample_key for p in problems}
    rows = [normalise_row(r) for r in build.rows if r["sample_key"] not in bad_keys]
    keys = [r["sample_key"] for r in rows]
    if len(set(keys)) != len(keys):
        dupes = sorted({k for k in keys if keys.count(k) > 1})[:5]
        raise DataError(f"duplicate sample keys in {dataset}: {dupes}", hint="this is a loader bug: report it")
    if checksum:
        for r in rows:
            r["checksums"] = [sha256_file(root / p) for p in referenced_files(r)]
    listing = tree_listing(root, build.media_dirs, build.media_suffixes)
    metadata = {m: sha256_file(root / m) for m in build.metadata_files if (root / m).exists()}
    tree_digest = sha256_obj({"files": listing, "metadata": metadata})
    fp = fingerprint_rows(rows, tree_digest)
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    counts = {str(k): int(v) for k, v in df["split"].value_counts(sort=False).items()} if rows else {}
    meta = {
        "schema_version": SCHEMA_VERSION,
        "dataset": dataset,
        "root": str(root),
        "fingerprint": fp,
        "fingerprint_short": short(fp),
        "tree_digest": tree_digest,
        "checksum": checksum,
        "num_samples": len(rows),
        "split_counts": counts,
        "exclusions": [vars(p) for p in problems] if skip_bad else [],
        "notes": list(build.notes),
        "toolkit_version": __version__,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    return Manifest(dataset, df, meta)
