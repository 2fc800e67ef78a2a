"""Training/evaluation batches from a manifest joined with feature caches by sample key.

Contract (shared with the baselines and the trainer)::

    {"key": [sample keys], "is_null": bool [B], "num_frames": int64 [B], "masks": float32 [B, T, H, W],
     "annotated": bool [B, T], "features": {name: tensor, ...}, "frames": float32 [B, T, 3, H, W] (optional)}

Per-frame encoders give ``[B, T, ...]``; text encoders ``[B, L, D]`` plus ``name_mask`` ``[B, L]``
(and ``name_pooled`` ``[B, D]`` when the encoder has one); ``sam2_image`` a dict
``{level: float32 [B, T, C, h, w]}`` (float16 on disk). ``is_null``: the manifest's flag (Ref-AVS
null expressions, whose GT is empty); ``num_frames``: each clip's real length. Clips of different
lengths in one batch (AVSS v1s/v1m 5 frames next to v2 10) are zero-padded in time to the
longest: masks (class 0 for AVSS), frames, ``annotated`` (False, so padded steps are never
trained or scored) and every per-frame feature (a field whose shape starts with "T").
Per-sample fields (text tokens, pooled vectors) are not time-padded.

Every cache is checked before use: its index must name this manifest's fingerprint and the
requested encoder's fingerprint, and every shard's bytes are hashed when they are read. A missing
cache raises :class:`NotPreparedError` whose hint is the exact extract command.
"""

from __future__ import annotations

from collections import OrderedDict
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
                 home: str | Path | None, cache: str | Path | None, capacity: int = 8) -> None:
        from avsbench_kit.features.extract import open_cache

        self.label = request.label
        self.encoder: Encoder = build_encoder(request.encoder, request.overrides)
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
) -> Iterator[dict[str, Any]]:
    """Batches of one split (see the module docstring for the dict).

    ``shuffle=False``: every sample exactly once, in manifest order (evaluation). ``shuffle=True``:
    a seeded shuffle (by ``seed`` and ``epoch``); ``resampled=True`` repeats forever with a new
    shuffle per epoch. All caches are opened and checked before the first batch.
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
    views = [CacheView(manifest, split, r, root, home, cache) for r in requests]
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
            batch = _batch([rows[i] for i in idx], idx, views, dataset, with_frames, with_masks, torch)
            yield _pinned(batch) if pin_memory else batch
        if not (shuffle and resampled):
            return
        current += 1


def _batch(rows: list[dict[str, Any]], idx: list[int], views: list[CacheView], dataset: Any,
           with_frames: bool, with_masks: bool, torch: Any) -> dict[str, Any]:
    batch: dict[str, Any] = {"key": [r["sample_key"] for r in rows],
                             "is_null": torch.tensor([bool(r["is_null"]) for r in rows], dtype=torch.bool),
                             "num_frames": torch.tensor([int(r["num_frames"]) for r in rows], dtype=torch.int64)}
    entries = {view.label: [view.get(r) for r in rows] for view in views}
    per_frame = {(view.label, name) for view in views for name, spec in view.fields.items()
                 if list(spec["shape"])[:1] == ["T"]}
    # the batch's time axis: the longest clip, or a longer per-frame feature (e.g. VGGish padded to
    # 10 examples as official AVSS does), so masks, frames and features always line up
    length = max([int(r["num_frames"]) for r in rows]
                 + [np.shape(e[name])[0] for label, name in per_frame for e in entries[label]])
    annotated = [np.asarray(r["annotated"], dtype=bool) for r in rows]
    if dataset is not None:
        items = [dataset[i] for i in idx]
        if with_masks:
            batch["masks"] = _tensor(_pad_time([np.asarray(it["masks"], dtype=np.float32) for it in items], length,
                                               "masks"))
        if with_frames:
            batch["frames"] = _tensor(_pad_time([np.asarray(it["frames"], dtype=np.float32) for it in items], length,
                                                "frames"))
    batch["annotated"] = torch.from_numpy(_pad_time(annotated, length, "annotated"))
    features: dict[str, Any] = {}
    for view in views:
        for name, spec in view.fields.items():
            arrays, what = [e[name] for e in entries[view.label]], f"{view.label}.{name}"
            stacked = _pad_time(arrays, length, what) if (view.label, name) in per_frame else _stack(arrays, what)
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
