"""Training/evaluation batches from a manifest joined with feature caches by sample key.

Contract (shared with the baselines and the trainer)::

    {"key": [sample keys], "category": [str], "is_null": bool [B], "num_frames": int64 [B],
     "masks": float32 [B, T, H, W], "annotated": bool [B, T], "features": {name: tensor, ...},
     "frames": float32 [B, T, 3, H, W] (optional)}

Per-frame encoders give ``[B, T, ...]``; text encoders ``[B, L, D]`` plus ``name_mask`` ``[B, L]``
(and ``name_pooled`` ``[B, D]`` when the encoder has one); ``sam2_image`` a dict
``{level: float32 [B, T, C, h, w]}`` (float16 on disk). ``is_null``: the manifest's flag (Ref-AVS
null expressions, whose GT is empty); ``category``: the manifest's category (Ref-AVS: the target's,
read from its uid; "null" for null expressions); ``num_frames``: each clip's real length. Clips of
different lengths in one batch (AVSS v1s/v1m 5 frames next to v2 10) are zero-padded in time to the
longest: masks (class 0 for AVSS), frames, ``annotated`` (False, so padded steps are never
trained or scored) and every per-frame feature (a field whose shape starts with "T").
Per-sample fields (text tokens, pooled vectors) are not time-padded.

Every cache is checked before use: its index must name this manifest's fingerprint and the
requested encoder's fingerprint, and every shard's bytes are hashed when they are read. A missing
cache raises :class:`NotPreparedError` whose hint is the exact extract command.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from avsbench_kit.errors import ConfigError, DataError, NotPreparedError
from avsbench_kit.features.base import Encoder, FeatureRequest, build_encoder
from avsbench_kit.features.cache import FeatureCache, cache_root, extract_command, find_caches, unit_key
from avsbench_kit.hashing import short


class CacheView:
    """One request's cache restricted to one split: key -> shard, and a small LRU of decoded shards."""

    def __init__(self, manifest: Any, split: str, request: FeatureRequest, root: Path,
                 home: str | Path | None, cache: str | Path | None, capacity: int = 8,
                 encoder: Encoder | None = None) -> None:
        from avsbench_kit.features.extract import open_cache

        self.label = request.label
        self.encoder: Encoder = encoder or build_encoder(request.encoder, request.overrides)
        self.cache: FeatureCache = open_cache(manifest, self.encoder, root)
        command = extract_command(request.encoder, manifest.dataset, split, request.overrides,
                                  _s(home), _s(cache))
        if not self.cache.exists():
            raise missing_cache_error(manifest, self.encoder, split, root, command)
        index = self.cache.index()
        for what, expected in (("manifest_fingerprint", manifest.fingerprint),
                               ("encoder_fingerprint", self.encoder.fingerprint())):
            if index.get(what) != expected:
                raise DataError(
                    f"feature cache {self.cache.path} was made from {what.split('_')[0]} "
                    f"{short(str(index.get(what)))}, not {short(expected)}: refusing to mix them",
                    hint=f"move it away and re-extract: {command}",
                )
        info = index["splits"].get(split)
        if info is None or not info["complete"]:
            done = f"{info['complete_shards']}/{len(info['shards'])} shards" if info else "no shards"
            raise NotPreparedError(
                f"feature cache {self.cache.path} is incomplete for split {split!r} ({done}); "
                "the extract command in the hint resumes it",
                hint=command,
            )
        self.key_by = index["key_by"]
        self.fields: dict[str, dict[str, Any]] = index["fields"]
        self.shard_of: dict[str, str] = {}
        self.sha: dict[str, str] = {}
        size = units = 0
        for entry in index["shards"]:
            if entry["split"] != split:
                continue
            self.sha[entry["name"]] = entry["sha256"]
            size += entry["bytes"]
            units += entry["count"]
            for key in entry["keys"]:
                self.shard_of[key] = entry["name"]
        self.bytes_per_unit = size / max(units, 1)
        self.bytes_per_shard = size / max(len(self.sha), 1)
        self.capacity = capacity
        self._lru: OrderedDict[str, dict[str, dict[str, Any]]] = OrderedDict()

    def key(self, row: dict[str, Any]) -> str:
        return unit_key(row["clip"] if self.key_by == "clip" else row["sample_key"])

    def shard(self, row: dict[str, Any]) -> str:
        key = self.key(row)
        try:
            return self.shard_of[key]
        except KeyError:
            raise DataError(f"feature cache {self.cache.path} has no entry for {key!r} (sample {row['sample_key']})",
                            hint="the cache does not match this manifest: re-extract it") from None

    def get(self, row: dict[str, Any]) -> dict[str, Any]:
        name = self.shard(row)
        if name in self._lru:
            self._lru.move_to_end(name)
        else:
            self._lru[name] = self.cache.read_shard(name, self.sha[name])
            while len(self._lru) > self.capacity:
                self._lru.popitem(last=False)
        return self._lru[name][self.key(row)]


def _s(value: str | Path | None) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class ReadPerturbation:
    """Cached rows read in another arrangement (the input probes of :mod:`avsbench_kit.probes`).

    Why here: a permutation of cached features needs no encoder work, so the reader applies it while
    joining the caches. ``sources[modality][i]`` is the split row whose cache entry feeds row ``i``
    (another clip's audio); ``orders[part][i]`` is the frame order of row ``i`` (None = unchanged)
    for ``part`` in "audio"/"image"/"text" (per-frame fields of that modality's caches; "image"
    also moves raw frames) and "target" (GT masks and the annotated flags). A source clip of
    another length is fitted to the clip's frame count by wrapping around.
    """

    sources: dict[str, list[int]] = field(default_factory=dict)
    orders: dict[str, list[Any]] = field(default_factory=dict)

    def source(self, modality: str, i: int) -> int:
        rows = self.sources.get(modality)
        return i if rows is None else int(rows[i])

    def order(self, part: str, i: int) -> Any:
        rows = self.orders.get(part)
        return None if rows is None else rows[i]


def _in_time(array: np.ndarray, order: Any, length: int | None = None) -> np.ndarray:
    """``array`` [T', ...] fitted to ``length`` frames (wrapping around; None = as is), then put in
    ``order`` (None = unchanged)."""
    if length is not None and length != array.shape[0]:
        array = array[np.arange(length) % max(array.shape[0], 1)]
    if order is None:
        return array
    order = np.asarray(order, dtype=np.int64)
    if order.shape != (array.shape[0],):
        raise DataError(f"a frame order of {order.shape[0]} frames cannot rearrange {array.shape[0]} frames",
                        hint="frame orders are built from the manifest's annotated flags: rebuild the probe plan")
    return array[order]


def missing_cache_error(manifest: Any, enc: Encoder, split: str, root: Path, command: str) -> NotPreparedError:
    """NotPreparedError naming caches of the same encoder that exist but cannot be used."""
    others = []
    for fc in find_caches(Path(root)):
        try:
            h = fc.header
        except DataError:
            continue
        if h.get("dataset") != manifest.dataset or h.get("encoder") != enc.registry_name:
            continue
        if h["manifest_fingerprint"] != manifest.fingerprint:
            others.append(f"{fc.path.name} was made from another manifest ({short(h['manifest_fingerprint'])}, "
                          f"this one is {short(manifest.fingerprint)})")
        else:
            others.append(f"{fc.path.name} was made with another encoder version or preprocessing")
    note = ("; not used: " + "; ".join(others[:3])) if others else ""
    return NotPreparedError(
        f"no {enc.registry_name} feature cache for {manifest.dataset} (manifest {short(manifest.fingerprint)}, "
        f"encoder {short(enc.fingerprint())}){note}",
        hint=command,
    )


def _stack(arrays: list[np.ndarray], what: str) -> np.ndarray:
    """Stack equal shapes; zero-pad the leading axis (e.g. tokens) when only it differs."""
    if all(a.shape == arrays[0].shape for a in arrays):
        return np.stack(arrays)
    return _pad_time(arrays, max(a.shape[0] if a.ndim else 0 for a in arrays), what)


def _pad_time(arrays: list[np.ndarray], length: int, what: str) -> np.ndarray:
    """Stack per-frame arrays ``[T_i, ...]`` into ``[B, length, ...]``, zeros after each T_i."""
    first = arrays[0].shape
    if any(a.ndim != len(first) or a.shape[1:] != first[1:] for a in arrays):
        raise DataError(f"{what}: shapes {sorted({a.shape for a in arrays})} cannot be batched",
                        hint="resize frames with image_size=N, or use batch_size=1")
    out = np.zeros((len(arrays), length) + first[1:], dtype=arrays[0].dtype)
    for i, a in enumerate(arrays):
        out[i, : a.shape[0]] = a
    return out


def _tensor(array: np.ndarray) -> Any:
    import torch

    t = torch.from_numpy(np.ascontiguousarray(array))
    return t.float() if t.dtype in (torch.float16, torch.bfloat16, torch.float64) else t


def train_order(n: int, views: list[CacheView], rows: list[dict[str, Any]], seed: int, epoch: int,
                window: int) -> list[int]:
    """A seeded shuffle that reads shards locally: shuffle the order of the biggest cache's shards,
    then shuffle samples within windows of ``window`` consecutive shards."""
    rng = np.random.default_rng([int(seed), int(epoch)])
    if not views:
        return rng.permutation(n).tolist()
    primary = max(views, key=lambda v: v.bytes_per_unit)
    groups: OrderedDict[str, list[int]] = OrderedDict()
    for i, row in enumerate(rows):
        groups.setdefault(primary.shard(row), []).append(i)
    names = list(groups)
    order: list[int] = []
    shuffled = [names[j] for j in rng.permutation(len(names))]
    for start in range(0, len(shuffled), window):
        chunk = [i for name in shuffled[start:start + window] for i in groups[name]]
        order.extend(chunk[j] for j in rng.permutation(len(chunk)))
    return order


def feature_batches(
    manifest: Any,
    split: str,
    requests: list[FeatureRequest],
    *,
    batch_size: int,
    shuffle: bool,
    seed: int,
    home: str | Path | None = None,
    with_frames: bool = False,
    with_masks: bool = True,
    cache: str | Path | None = None,
    image_size: int | None = None,
    resampled: bool = False,
    epoch: int = 0,
    drop_last: bool = False,
    shuffle_window: int = 4,
    pin_memory: bool = False,
    perturbation: ReadPerturbation | None = None,
    encoders: dict[str, Encoder] | None = None,
) -> Iterator[dict[str, Any]]:
    """Batches of one split (see the module docstring for the dict).

    ``shuffle=False``: every sample exactly once, in manifest order (evaluation). ``shuffle=True``:
    a seeded shuffle (by ``seed`` and ``epoch``); ``resampled=True`` repeats forever with a new
    shuffle per epoch. All caches are opened and checked before the first batch. ``encoders``
    replaces the encoder of a request label (a perturbed encoder: its own fingerprint, its own
    cache); ``perturbation`` rearranges cached rows (see :class:`ReadPerturbation`).
    """
    import torch

    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size} must be >= 1")
    labels = [r.label for r in requests]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"two feature requests for the same encoder: {labels}",
                          hint="a batch holds one cache per encoder name")
    rows = manifest.rows(split)
    root = cache_root(home, cache)
    views = [CacheView(manifest, split, r, root, home, cache, encoder=(encoders or {}).get(r.label))
             for r in requests]
    for view in views:  # decoded shards kept in memory: at most ~2 GB per cache, never fewer than a window
        view.capacity = max(shuffle_window + 1, min(8, int(2e9 // max(view.bytes_per_shard, 1.0))))
    dataset = None
    if with_frames or with_masks:
        from avsbench_kit.data.loaders import AVSDataset

        dataset = AVSDataset(manifest, split, load_frames=with_frames, load_masks=with_masks, audio=None,
                             image_size=image_size)
    current = epoch
    while True:
        order = train_order(len(rows), views, rows, seed, current, shuffle_window) if shuffle else list(range(len(rows)))
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            if drop_last and len(idx) < batch_size:
                break
            batch = _batch(rows, idx, views, dataset, with_frames, with_masks, torch, perturbation)
            yield _pinned(batch) if pin_memory else batch
        if not (shuffle and resampled):
            return
        current += 1


def _batch(split_rows: list[dict[str, Any]], idx: list[int], views: list[CacheView], dataset: Any,
           with_frames: bool, with_masks: bool, torch: Any,
           perturbation: ReadPerturbation | None = None) -> dict[str, Any]:
    rows = [split_rows[i] for i in idx]
    pert = perturbation or ReadPerturbation()
    sizes = [len(r["annotated"]) for r in rows]

    def timed(part: str, arrays: list[Any], sources: list[int] | None = None) -> list[Any]:
        if perturbation is None:
            return arrays
        sources = sources or idx
        return [_in_time(np.asarray(a), pert.order(part, i), n if s != i else None)
                for a, i, s, n in zip(arrays, idx, sources, sizes)]

    batch: dict[str, Any] = {"key": [r["sample_key"] for r in rows], "category": [str(r["category"]) for r in rows],
                             "is_null": torch.tensor([bool(r["is_null"]) for r in rows], dtype=torch.bool),
                             "num_frames": torch.tensor([int(r["num_frames"]) for r in rows], dtype=torch.int64)}
    sources = {view.label: [pert.source(view.encoder.modality, i) for i in idx] for view in views}
    entries = {view.label: [view.get(split_rows[s]) for s in sources[view.label]] for view in views}
    per_frame = {(view.label, name) for view in views for name, spec in view.fields.items()
                 if list(spec["shape"])[:1] == ["T"]}
    arrays = {(view.label, name): [e[name] for e in entries[view.label]] for view in views for name in view.fields}
    for view in views:  # probes: another clip's rows (fitted to this clip's length), frames reordered
        for name in view.fields:
            if (view.label, name) in per_frame:
                arrays[view.label, name] = timed(view.encoder.modality, arrays[view.label, name], sources[view.label])
    # the batch's time axis: the longest clip, or a longer per-frame feature (e.g. VGGish padded to
    # 10 examples as official AVSS does), so masks, frames and features always line up
    length = max([int(r["num_frames"]) for r in rows]
                 + [np.shape(a)[0] for key in per_frame for a in arrays[key]])
    annotated = timed("target", [np.asarray(r["annotated"], dtype=bool) for r in rows])
    if dataset is not None:
        items = [dataset[i] for i in idx]
        if with_masks:
            masks = timed("target", [np.asarray(it["masks"], dtype=np.float32) for it in items])
            batch["masks"] = _tensor(_pad_time(masks, length, "masks"))
        if with_frames:
            frames = timed("image", [np.asarray(it["frames"], dtype=np.float32) for it in items])
            batch["frames"] = _tensor(_pad_time(frames, length, "frames"))
    batch["annotated"] = torch.from_numpy(_pad_time(annotated, length, "annotated"))
    features: dict[str, Any] = {}
    for view in views:
        for name, spec in view.fields.items():
            what = f"{view.label}.{name}"
            key = (view.label, name)
            stacked = _pad_time(arrays[key], length, what) if key in per_frame else _stack(arrays[key], what)
            tensor = _tensor(stacked)
            role = spec["role"]
            if role == "primary":
                features[view.label] = tensor
            elif role == "level":
                features.setdefault(view.label, {})[name] = tensor
            else:
                features[f"{view.label}_{role}"] = tensor
    batch["features"] = features
    return batch


def _pinned(value: Any) -> Any:
    """Page-locked copies of a batch's tensors, so host-to-GPU copies can be non-blocking."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.pin_memory()
    if isinstance(value, dict):
        return {k: _pinned(v) for k, v in value.items()}
    return value


def ensure_caches(manifest: Any, requests: list[FeatureRequest], home: str | Path | None = None, *,
                  cache: str | Path | None = None, progress: bool = True) -> list[Any]:
    """Build (or resume, or repair) every requested cache over all splits; returns the summaries."""
    from avsbench_kit.features.extract import extract

    return [extract(manifest, r.encoder, r.overrides, home=home, cache=cache, progress=progress) for r in requests]
