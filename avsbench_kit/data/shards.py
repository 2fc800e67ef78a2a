"""Deterministic WebDataset shards of the raw sample files (`avskit prepare ... --shards`).

Layout: ``<home>/shards/<dataset>/<fingerprint_short>/<split>-000000.tar`` plus ``index.json``
(per-shard sample count, byte size and sha256; manifest fingerprint; toolkit version).

Why deterministic: the same manifest and files must give byte-identical tars, so a shard's
sha256 identifies its content and two machines can compare exports. Hence: samples in manifest
order, the members of a sample sorted by name, fixed mtime/uid/gid/uname/mode, no compression.

A sample is the untouched file bytes, under the sample key (no dots: WebDataset splits at the
first dot): ``<key>.frame_<k>.<ext>`` (k = 0-based frame index), ``<key>.mask_<k>.<ext>`` (only
frames with a GT file), ``<key>.audio.wav``, ``<key>.log_mel.pkl`` and ``<key>.meta.json`` (the
manifest row). Every shard is written to a temporary name and renamed; ``index.json`` is
written last, so an index only ever names complete shards.
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from avsbench_kit import __version__
from avsbench_kit.atomic import atomic_path, write_json
from avsbench_kit.data.manifest import Manifest
from avsbench_kit.data.masks import check_rel
from avsbench_kit.errors import DataError
from avsbench_kit.hashing import canonical_json, sha256_file
from avsbench_kit.home import data_home

FORMAT = "avsbench-kit/raw-shards"
FORMAT_VERSION = 1
SHARD_MTIME = 0
_VERIFY_HINT = "re-export the shards with `avskit prepare <dataset> --shards` (the source tree is untouched)"


def shard_dir(dataset: str, fingerprint_short: str, home: str | Path | None = None) -> Path:
    return data_home(home) / "shards" / dataset / fingerprint_short


def _task_or_empty(dataset: str) -> str:
    from avsbench_kit.data.datasets import DATASETS

    return DATASETS.get(dataset).task if dataset in DATASETS else ""


def _suffix(rel: str) -> str:
    """File extension without the dot, lower-cased (``png``, ``jpg``, ``wav``...)."""
    return PurePosixPath(rel).suffix.lower().lstrip(".")


def sample_members(row: dict[str, Any]) -> dict[str, str]:
    """Member name (without the key) -> manifest-relative source path, for one row."""
    members: dict[str, str] = {}
    for k, rel in enumerate(row["frames"]):
        members[f"frame_{k}.{_suffix(rel)}"] = rel
    for k, rel in enumerate(row["masks"]):
        if rel:
            members[f"mask_{k}.{_suffix(rel)}"] = rel
    if row["audio"]:
        members[f"audio.{_suffix(row['audio'])}"] = row["audio"]
    if row["log_mel"]:
        members[f"log_mel.{_suffix(row['log_mel'])}"] = row["log_mel"]
    return members


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = SHARD_MTIME
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


def _read_source(root: Path, rel: str, key: str) -> bytes:
    check_rel(rel, f"sample {key}")
    try:
        return (root / rel).read_bytes()
    except OSError as exc:
        raise DataError(
            f"cannot read {root / rel} (sample {key}): {exc.strerror or exc}",
            hint="the tree changed since `avskit prepare`: restore the file or re-run prepare",
        ) from exc


def _write_shard(path: Path, rows: list[dict[str, Any]], root: Path, advance) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh, tarfile.open(fileobj=fh, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for row in rows:
                key = row["sample_key"]
                payload = {name: _read_source(root, rel, key) for name, rel in sample_members(row).items()}
                payload["meta.json"] = canonical_json(row).encode("utf-8")
                for name in sorted(payload):
                    data = payload[name]
                    tar.addfile(_tarinfo(f"{key}.{name}", len(data)), io.BytesIO(data))
                advance()


def export_shards(
    manifest: Manifest,
    home: str | Path | None = None,
    samples_per_shard: int = 256,
    *,
    progress: bool = True,
) -> Path:
    """Write every split of ``manifest`` as raw-sample shards; return the ``index.json`` path."""
    if samples_per_shard < 1:
        raise ValueError("samples_per_shard must be >= 1")
    out = shard_dir(manifest.dataset, manifest.meta["fingerprint_short"], home)
    out.mkdir(parents=True, exist_ok=True)
    root = manifest.root
    splits = sorted(manifest.df["split"].unique()) if len(manifest.df) else []
    jobs: list[tuple[str, str, list[dict[str, Any]]]] = []
    for split in splits:
        rows = manifest.rows(split)
        for i, start in enumerate(range(0, len(rows), samples_per_shard)):
            jobs.append((split, f"{split}-{i:06d}.tar", rows[start : start + samples_per_shard]))

    total = sum(len(rows) for _, _, rows in jobs)
    bar = None
    if progress and total:
        from avsbench_kit.progress import make_progress

        bar = make_progress()
    index_splits: dict[str, dict[str, Any]] = {s: {"num_samples": 0, "shards": []} for s in splits}

    def run(advance) -> None:
        for split, name, rows in jobs:
            _write_shard(out / name, rows, root, advance)
            entry = {
                "file": name,
                "num_samples": len(rows),
                "bytes": (out / name).stat().st_size,
                "sha256": sha256_file(out / name),
                "first_key": rows[0]["sample_key"],
            }
            index_splits[split]["shards"].append(entry)
            index_splits[split]["num_samples"] += len(rows)

    if bar is None:
        run(lambda: None)
    else:
        with bar:
            task = bar.add_task(f"shards {manifest.dataset}", total=total, rate="")

            def advance() -> None:
                bar.update(task, advance=1)
                speed = bar.tasks[task].speed
                bar.update(task, rate=f"{speed:,.1f} samples/s" if speed else "")

            run(advance)

    index = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "dataset": manifest.dataset,
        "task": _task_or_empty(manifest.dataset),
        "fingerprint": manifest.fingerprint,
        "fingerprint_short": manifest.meta["fingerprint_short"],
        "toolkit_version": __version__,
        "samples_per_shard": samples_per_shard,
        "num_samples": total,
        "splits": index_splits,
    }
    index_path = out / "index.json"
    write_json(index_path, index)
    listed = {entry["file"] for s in index_splits.values() for entry in s["shards"]}
    for stale in out.glob("*.tar"):  # left over from an export with another samples_per_shard
        if stale.name not in listed:
            stale.unlink(missing_ok=True)
    return index_path


# ---- reading ----------------------------------------------------------------------------------
def load_index(index_path: str | Path) -> dict[str, Any]:
    index_path = Path(index_path)
    try:
        index = json.loads(index_path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read shard index {index_path}: {exc}", hint=_VERIFY_HINT) from exc
    if index.get("format") != FORMAT:
        raise DataError(f"{index_path} is not an avsbench-kit shard index", hint=_VERIFY_HINT)
    return index


def _split_entries(index: dict[str, Any], split: str, index_path: Path) -> list[dict[str, Any]]:
    splits = index["splits"]
    if split not in splits:
        raise DataError(
            f"shard index {index_path} has no split {split!r}", hint="splits: " + ", ".join(sorted(splits))
        )
    return splits[split]["shards"]


_BLOCK = 512
_ZERO_BLOCK = bytes(_BLOCK)


class _TarFormatError(Exception):
    pass


def _octal(field: bytes) -> int:
    if field[:1] and field[0] & 0x80:  # GNU base-256 for big numbers
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip(b" ")
    return int(text, 8) if text else 0


def _pax_path(data: bytes) -> str | None:
    """The ``path`` record of a pax extended header (``"<len> key=value\\n"`` records)."""
    pos, path = 0, None
    while pos < len(data):
        space = data.index(b" ", pos)
        length = int(data[pos:space])
        key, _, value = data[space + 1 : pos + length - 1].partition(b"=")
        if key == b"path":
            path = value.decode("utf-8")
        pos += length
    return path


def _iter_members(fh) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of each regular file in a tar stream.

    A small reader for the ustar/pax tars this module writes (and WebDataset's), ~6x faster than
    ``tarfile`` on small members because headers are parsed without per-field Python objects.
    Strict: header checksums are verified, and a missing end-of-archive marker counts as truncation.
    """
    pending: str | None = None
    while True:
        header = fh.read(_BLOCK)
        if header == _ZERO_BLOCK:
            return
        if len(header) < _BLOCK:
            raise _TarFormatError("unexpected end of file (no end-of-archive marker)")
        stored = _octal(header[148:156])
        if stored != sum(header[:148]) + 256 + sum(header[156:]):
            raise _TarFormatError("bad header checksum")
        size = _octal(header[124:136])
        kind = header[156:157]
        data = fh.read(size)
        pad = (-size) % _BLOCK
        if len(data) < size or len(fh.read(pad)) < pad:
            raise _TarFormatError("unexpected end of file inside a member")
        if kind == b"x":
            pending = _pax_path(data) or pending
        elif kind == b"L":
            pending = data.split(b"\0", 1)[0].decode("utf-8")
        elif kind in (b"0", b"\0", b"7"):
            if pending is not None:
                name = pending
            else:
                name = header[:100].split(b"\0", 1)[0].decode("utf-8")
                prefix = header[345:500].split(b"\0", 1)[0].decode("utf-8") if header[257:262] == b"ustar" else ""
                name = f"{prefix}/{name}" if prefix else name
            pending = None
            yield name, data
        else:  # directories, links, global pax headers: not part of a sample
            pending = None if kind != b"g" else pending


def _iter_tar(path: Path) -> Iterator[dict[str, Any]]:
    """Group consecutive members by key (the name up to the first dot), WebDataset-style."""
    current: dict[str, Any] | None = None
    try:
        with open(path, "rb") as fh:
            for name, data in _iter_members(fh):
                dot = name.find(".", name.rfind("/") + 1)  # WebDataset: key = path up to the first dot
                key, ext = (name[:dot], name[dot + 1 :]) if dot >= 0 else (name, "")
                if current is None or current["__key__"] != key:
                    if current is not None:
                        yield current
                    current = {"__key__": key, "__shard__": path.name}
                current[ext] = data
    except (_TarFormatError, ValueError, UnicodeDecodeError, OSError) as exc:
        raise DataError(f"shard {path} is corrupt or truncated: {exc}", hint=_VERIFY_HINT) from exc
    if current is not None:
        yield current


def read_shards(index_path: str | Path, split: str, *, verify: bool = False) -> Iterator[dict[str, Any]]:
    """Iterate the raw samples of ``split``: ``{"__key__", "__shard__", "meta.json", "frame_0.png", ...}``.

    Values are the stored bytes. ``verify=True`` checks each shard's sha256 before reading it.
    A shard that is missing, truncated or holds fewer samples than its index says raises
    :class:`DataError` naming the shard.
    """
    index_path = Path(index_path)
    index = load_index(index_path)
    for entry in _split_entries(index, split, index_path):
        path = index_path.parent / entry["file"]
        if not path.is_file():
            raise DataError(f"shard {path} is missing", hint=_VERIFY_HINT)
        if verify:
            problem = _check_file(path, entry, hash_it=True)
            if problem:
                raise DataError(f"shard {path}: {problem}", hint=_VERIFY_HINT)
        count = 0
        for sample in _iter_tar(path):
            count += 1
            yield sample
        if count != entry["num_samples"]:
            raise DataError(
                f"shard {path} holds {count} samples, its index says {entry['num_samples']} (truncated?)",
                hint=_VERIFY_HINT,
            )


def sample_row(sample: dict[str, Any]) -> dict[str, Any]:
    """The manifest row stored in a shard sample's ``meta.json``."""
    return json.loads(sample["meta.json"].decode("utf-8"))


def sample_files(sample: dict[str, Any]) -> dict[str, bytes]:
    """Manifest-relative path -> bytes: a shard sample mapped back to the folder-tree files."""
    row = sample_row(sample)
    return {rel: sample[name] for name, rel in sample_members(row).items()}


def iter_decoded(index_path: str | Path, split: str, task: str | None = None, *, verify: bool = False,
                 **options: Any) -> Iterator[dict[str, Any]]:
    """Shard samples decoded exactly like :class:`~avsbench_kit.data.loaders.AVSDataset` items.

    ``options`` are those of ``AVSDataset`` (load_frames, load_masks, audio, image_size).
    """
    from avsbench_kit.data.loaders import decode_row, task_of

    index_path = Path(index_path)
    if task is None:
        index = load_index(index_path)
        task = index.get("task") or task_of(index["dataset"])
    for sample in read_shards(index_path, split, verify=verify):
        files = sample_files(sample)
        prefix = f"{index_path.parent / sample['__shard__']}:{sample['__key__']}/"

        def read(rel: str, files: dict[str, bytes] = files, prefix: str = prefix) -> bytes:
            if rel not in files:
                raise DataError(f"{prefix}{rel} is not in the shard", hint=_VERIFY_HINT)
            return files[rel]

        yield decode_row(sample_row(sample), task, read, source=prefix, **options)


# ---- verification -----------------------------------------------------------------------------
@dataclass(frozen=True)
class ShardProblem:
    shard: str
    reason: str

    def __str__(self) -> str:
        return f"{self.shard}: {self.reason}"


def _check_file(path: Path, entry: dict[str, Any], hash_it: bool) -> str:
    """Empty if ``path`` matches its index entry, else why not."""
    size = path.stat().st_size
    if size != entry["bytes"]:
        kind = "truncated" if size < entry["bytes"] else "has extra bytes"
        return f"{kind}: {size} bytes, the index says {entry['bytes']}"
    if hash_it and sha256_file(path) != entry["sha256"]:
        return "corrupt: sha256 differs from the index"
    return ""


def verify_shards(index_path: str | Path, *, deep: bool = True) -> list[ShardProblem]:
    """Every shard listed in ``index_path`` that is missing, truncated or corrupt (empty = all good).

    Checks size and sha256 and, with ``deep``, that the tar parses and holds the indexed count.
    """
    index_path = Path(index_path)
    index = load_index(index_path)
    problems: list[ShardProblem] = []
    for split in sorted(index["splits"]):
        for entry in index["splits"][split]["shards"]:
            path = index_path.parent / entry["file"]
            if not path.is_file():
                problems.append(ShardProblem(str(path), "missing"))
                continue
            reason = _check_file(path, entry, hash_it=True)
            if not reason and deep:
                try:
                    count = sum(1 for _ in _iter_tar(path))
                    if count != entry["num_samples"]:
                        reason = f"holds {count} samples, the index says {entry['num_samples']}"
                except DataError as exc:
                    reason = exc.message
            if reason:
                problems.append(ShardProblem(str(path), reason))
    return problems
