"""Decoded ground truth, cached once per prepared dataset, so evaluation stops paying PNG decoding.

Layout (beside the manifest, keyed by its fingerprint, so a re-prepared dataset never reads an
old cache)::

    <data home>/prepared/<dataset>/gt-cache/<manifest-fp12>/
        cache.json              format, version, codec, full manifest fingerprint, one record per
                                complete split (samples, frames, sample-key digest, file sizes, sha256)
        <split>.data.npy        uint8: every frame's compressed payload, back to back
        <split>.index.npy       int64 [frames, 5]: offset, length, kind, height, width
        <split>.samples.npy     int64 [samples + 1]: first frame of each sample (manifest order)

Codec (measured in docs/metrics.md, "Ground-truth cache"): a binary mask is bit-packed
(``np.packbits``) then deflated; AVSS class maps and MS3 grey levels are uint8 then deflated.
Deflate over packed bits was smaller than COCO RLE (``pycocotools``) and as fast to decode, with no
extra dependency. Decoding returns exactly what :func:`avsbench_kit.data.masks.stack_gt` returns
(binary masks as bool, MS3 grey levels as ``index / 255`` float32, AVSS as int64 class maps); the
writer checks that round trip on every frame.

A split counts only once ``cache.json`` lists it (its files are renamed into place first).
Opening a split re-hashes its files: a missing, truncated or edited file, a header for another
fingerprint, format or codec, or sample keys that differ from the manifest make the split
*unusable* (with the reason), and the caller rebuilds it from the PNGs — never reads it.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from avsbench_kit.atomic import atomic_path, remove_stale_temps, write_json
from avsbench_kit.hashing import sha256_file, sha256_obj, short

FORMAT = "avsbench-kit/gt-cache"
FORMAT_VERSION = 1
CODEC = "packbits+deflate6 | u8+deflate6"
_LEVEL = 6  # deflate level: encoded once, decoded on every evaluation (level 1: 30 % larger, no faster)
BITS, GREY, LABELS = 0, 1, 2  # frame kinds: binary mask, MS3 grey index (value / 255), AVSS class map
_FILES = ("data", "index", "samples")


def cache_dir(dataset: str, fingerprint: str, home: str | Path | None = None) -> Path:
    from avsbench_kit.home import prepared_dir

    return prepared_dir(dataset, home) / "gt-cache" / short(fingerprint)


# ---- frames ------------------------------------------------------------------------------------
def encode_frame(mask: np.ndarray, task: str) -> tuple[int, bytes]:
    """(kind, payload) of one decoded GT frame; raises ValueError if it would not round-trip."""
    if task == "avss":
        if mask.size and (mask.min() < 0 or mask.max() > 255):
            raise ValueError("AVSS class indices outside 0..255")
        kind, raw = LABELS, mask.astype(np.uint8).tobytes()
    elif np.count_nonzero(mask == 1) == np.count_nonzero(mask):  # {0, 1}
        kind, raw = BITS, np.packbits(mask != 0).tobytes()
    else:  # MS3 grey levels: index / 255 in float32, stored as the index
        kind, raw = GREY, np.rint(mask.astype(np.float64) * 255).astype(np.uint8).tobytes()
    payload = zlib.compress(raw, _LEVEL)
    back = decode_frame(kind, payload, mask.shape)
    if not np.array_equal(back, mask) or (kind == GREY and back.dtype != mask.dtype):
        raise ValueError(f"frame of kind {kind} does not round-trip through the cache codec")
    return kind, payload


def encode_sample(gt: np.ndarray, task: str) -> list[tuple[int, bytes, tuple[int, int]]]:
    """The encoded frames of one sample's GT ``[T, H, W]`` (pure: runs in worker threads)."""
    out = []
    for frame in gt:
        kind, payload = encode_frame(np.asarray(frame), task)
        out.append((kind, payload, tuple(frame.shape)))
    return out


def decode_frame(kind: int, payload: Any, shape: tuple[int, int]) -> np.ndarray:
    raw = np.frombuffer(zlib.decompress(payload), dtype=np.uint8)
    h, w = shape
    if kind == BITS:
        return np.unpackbits(raw, count=h * w).reshape(h, w).view(bool)
    if kind == GREY:
        return raw.reshape(h, w).astype(np.float32) / np.float32(255.0)
    return raw.reshape(h, w).astype(np.int64)


def _stack(frames: list[np.ndarray], task: str) -> np.ndarray:
    """One sample's frames as one array with the PNG path's values: bool when every frame is
    binary, float32 when a frame has grey levels (binary frames as 0/1), int64 for AVSS."""
    if task == "avss" or all(f.dtype == bool for f in frames):
        return np.stack(frames)
    return np.stack([f.astype(np.float32) for f in frames])


# ---- the cache directory -------------------------------------------------------------------------
@dataclass
class SplitData:
    """One verified split, memory-mapped: only the frames of the samples read are paged in."""

    data: np.ndarray
    index: np.ndarray
    samples: np.ndarray
    task: str

    def __len__(self) -> int:
        return len(self.samples) - 1

    def sample(self, i: int) -> np.ndarray:
        """GT ``[T, H, W]`` of the split's i-th sample (manifest order)."""
        frames = []
        for off, length, kind, h, w in self.index[self.samples[i]:self.samples[i + 1]].tolist():
            frames.append(decode_frame(kind, self.data[off:off + length], (h, w)))
        return _stack(frames, self.task)

    def group(self, positions: Sequence[int]) -> list[np.ndarray]:
        """GT of several samples (split positions), equal to ``[sample(i) for i in positions]``.

        When every frame is a bit-packed mask of one size (whole bytes per frame), the payloads
        are inflated back to back and unpacked by one ``np.unpackbits`` into one bool array, of
        which the samples are adjacent views (per-frame unpacking and the per-sample ``np.stack``
        were a third of the cache path's GT cost; a table gather into a reused buffer measured
        3x slower than ``np.unpackbits``)."""
        spans = [(int(self.samples[i]), int(self.samples[i + 1])) for i in positions]
        rows = np.concatenate([self.index[a:b] for a, b in spans]) if spans else self.index[:0]
        if not len(rows):
            return [self.sample(i) for i in positions]
        h, w = int(rows[0, 3]), int(rows[0, 4])
        if not ((rows[:, 2] == BITS).all() and (rows[:, 3] == h).all() and (rows[:, 4] == w).all()
                and (h * w) % 8 == 0):
            return [self.sample(i) for i in positions]
        raw = b"".join([zlib.decompress(self.data[off:off + length]) for off, length in rows[:, :2].tolist()])
        if len(raw) != len(rows) * (h * w // 8):
            raise ValueError("a bit-packed GT frame inflates to the wrong size")
        flat = np.unpackbits(np.frombuffer(raw, dtype=np.uint8)).view(bool).reshape(len(rows), h, w)
        out, start = [], 0
        for a, b in spans:
            out.append(flat[start:start + b - a])
            start += b - a
        return out


def pack(samples: Iterable[list[tuple[int, bytes, tuple[int, int]]]]) -> dict[str, np.ndarray]:
    """The ``data`` / ``index`` / ``samples`` arrays of a split from its samples' encoded frames."""
    payloads: list[bytes] = []
    index: list[tuple[int, int, int, int, int]] = []
    starts = [0]
    offset = 0
    for frames in samples:
        for kind, payload, shape in frames:
            index.append((offset, len(payload), kind, *shape))
            payloads.append(payload)
            offset += len(payload)
        starts.append(len(index))
    return {"data": np.frombuffer(b"".join(payloads), dtype=np.uint8),
            "index": np.asarray(index, dtype=np.int64).reshape(-1, 5),
            "samples": np.asarray(starts, dtype=np.int64)}


class GtCache:
    """The GT cache of one prepared manifest (see the module docstring)."""

    def __init__(self, manifest: Any, task: str, home: str | Path | None = None) -> None:
        self.manifest = manifest
        self.task = task
        self.path = cache_dir(manifest.dataset, manifest.fingerprint, home)

    @property
    def header_path(self) -> Path:
        return self.path / "cache.json"

    def _header(self) -> tuple[Optional[dict[str, Any]], Optional[str]]:
        if not self.header_path.is_file():
            return None, None
        try:
            header = json.loads(self.header_path.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            return None, f"unreadable {self.header_path.name} ({exc})"
        expected = {"format": FORMAT, "format_version": FORMAT_VERSION, "codec": CODEC,
                    "manifest_fingerprint": self.manifest.fingerprint, "task": self.task}
        for key, value in expected.items():
            if header.get(key) != value:
                return None, f"{key} is {header.get(key)!r}, expected {value!r}"
        return header, None

    def file(self, split: str, name: str) -> Path:
        return self.path / f"{split}.{name}.npy"

    def _keys_digest(self, split: str) -> str:
        return sha256_obj([r["sample_key"] for r in self.manifest.rows(split)])

    def status(self, split: str) -> tuple[str, str]:
        """(``ok`` | ``absent`` | ``invalid``, reason) for one split, re-hashing its files."""
        header, problem = self._header()
        if problem:
            return "invalid", problem
        record = (header or {}).get("splits", {}).get(split)
        if record is None:
            return "absent", f"no GT cache for {split} in {self.path}"
        if record.get("keys_sha256") != self._keys_digest(split):
            return "invalid", "its sample keys differ from the manifest"
        for name in _FILES:
            path, want = self.file(split, name), record["files"].get(name, {})
            if not path.is_file():
                return "invalid", f"{path.name} is missing"
            if path.stat().st_size != want.get("bytes"):
                return "invalid", f"{path.name} has {path.stat().st_size} bytes, expected {want.get('bytes')}"
            if sha256_file(path) != want.get("sha256"):
                return "invalid", f"{path.name} does not match its sha256"
        return "ok", ""

    def open(self, split: str) -> SplitData:
        """The split's data; call :meth:`status` first (this trusts the files)."""
        arrays = {name: np.load(self.file(split, name), mmap_mode="r", allow_pickle=False) for name in _FILES}
        # a plain ndarray view of the mapping: slicing an np.memmap runs a Python __array_finalize__
        # per slice (one per frame decoded)
        return SplitData(arrays["data"].view(np.ndarray), np.asarray(arrays["index"]), np.asarray(arrays["samples"]),
                         self.task)

    def write(self, split: str, samples: Iterable[list[tuple[int, bytes, tuple[int, int]]]]) -> dict[str, Any]:
        """Record the split from its samples' encoded frames (:func:`encode_sample`, manifest order).

        The compressed payloads of one split are held in memory until written (about 1.3 kB per
        256x256 binary frame: ~50 MB for Ref-AVS test_s + test_u)."""
        rows = self.manifest.rows(split)
        arrays = pack(samples)
        if len(arrays["samples"]) - 1 != len(rows):
            raise ValueError(f"{len(arrays['samples']) - 1} GT samples for the {len(rows)} rows of {split}")
        self.path.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(self.path)  # what a killed writer left
        files = {}
        for name, array in arrays.items():
            with atomic_path(self.file(split, name)) as tmp:
                with open(tmp, "wb") as f:
                    np.lib.format.write_array(f, array, allow_pickle=False)
            path = self.file(split, name)
            files[name] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
        record = {"samples": len(rows), "frames": len(arrays["index"]), "keys_sha256": self._keys_digest(split), "files": files}
        header, problem = self._header()
        if header is None:
            header = {"format": FORMAT, "format_version": FORMAT_VERSION, "codec": CODEC, "task": self.task,
                      "dataset": self.manifest.dataset, "manifest_fingerprint": self.manifest.fingerprint, "splits": {}}
        header["splits"][split] = record
        write_json(self.header_path, header)
        self._drop_stale_siblings()
        return record

    def _drop_stale_siblings(self) -> None:
        """Remove caches of earlier fingerprints of this dataset (they can never be read again)."""
        import shutil

        for other in self.path.parent.iterdir():
            if other.is_dir() and other != self.path:
                shutil.rmtree(other, ignore_errors=True)

    def size_bytes(self, split: Optional[str] = None) -> int:
        pattern = f"{split}.*.npy" if split else "*.npy"
        return sum(p.stat().st_size for p in self.path.glob(pattern))


def build(manifest: Any, task: str, splits: Optional[Iterable[str]] = None, home: str | Path | None = None,
          progress: bool = False) -> dict[str, dict[str, Any]]:
    """Decode every GT PNG of ``splits`` (default: all) once and write the cache; returns the records."""
    from avsbench_kit.data.masks import sample_gt
    from avsbench_kit.progress import track

    cache = GtCache(manifest, task, home)
    out = {}
    for split in splits or list(dict.fromkeys(manifest.df["split"].tolist())):
        rows = manifest.rows(split)
        encoded = (encode_sample(sample_gt(r, manifest.root, task)[0], task)
                   for r in track(rows, f"GT cache {manifest.dataset} {split}", enabled=progress))
        out[split] = cache.write(split, encoded)
    return out


class GtSource:
    """Where one split's GT comes from: the verified cache, else the PNGs (``note`` says which and
    why). ``mode``: ``auto`` (cache if valid), ``rebuild`` (ignore it, rewrite it), ``off``."""

    MODES = ("auto", "rebuild", "off")

    def __init__(self, manifest: Any, task: str, split: str, home: str | Path | None = None, mode: str = "auto") -> None:
        self.manifest, self.task, self.split = manifest, task, split
        self.cache = GtCache(manifest, task, home) if mode != "off" else None
        self.data: Optional[SplitData] = None
        self.note = ""
        self.state = "off"
        if self.cache is not None:
            self.state, why = self.cache.status(split) if mode == "auto" else ("invalid", "--gt-cache rebuild")
            if self.state == "ok":
                self.data = self.cache.open(split)
                self.position = {r["sample_key"]: i for i, r in enumerate(manifest.rows(split))}
            elif self.state == "invalid":
                self.note = f"GT cache for {split} not used: {why}"

    @property
    def kind(self) -> str:
        return "cache" if self.data is not None else "png"

    @property
    def writes(self) -> bool:
        """True when this pass should (re)write the cache from the PNGs it decodes."""
        return self.cache is not None and self.data is None

    def sample(self, row: dict[str, Any]) -> np.ndarray:
        """The GT ``[T, H, W]`` of a manifest row of this split."""
        if self.data is not None:
            return self.data.sample(self.position[row["sample_key"]])
        from avsbench_kit.data.masks import sample_gt

        return sample_gt(row, self.manifest.root, self.task)[0]

    def samples(self, rows: Sequence[dict[str, Any]]) -> list[np.ndarray]:
        """``[sample(r) for r in rows]``; from the cache, in one decode (:meth:`SplitData.group`)."""
        if self.data is not None:
            return self.data.group([self.position[r["sample_key"]] for r in rows])
        return [self.sample(r) for r in rows]
