"""Score a model's predictions on one split with the metric protocols (streaming, bounded memory).

Logits are resized (bilinear) to the protocol's resolution — the GT's own size for AVSBench — and
fed sample by sample, in manifest order, to :class:`avsbench_kit.metrics.evaluator.Evaluator`,
which replays the official batch composition. Optionally every scored frame's logits are written
as ``<dir>/<sample_key>/<frame>.npy`` (float16), the layout ``avskit eval --pred DIR`` reads, so a
run's numbers can be re-checked independently of the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable


@dataclass
class SplitScore:
    metrics: dict[str, dict[str, float]]  # protocol -> metric -> value
    versions: dict[str, str]  # protocol -> version
    samples: Any  # per-sample DataFrame
    num_samples: int


def resolution(protocols: list[str]) -> tuple[int, int] | None:
    """The common evaluation resolution of ``protocols`` (None = each GT's own size)."""
    from avsbench_kit.metrics.protocols import PROTOCOLS

    sizes = {PROTOCOLS.get(p).resolution for p in protocols}
    if len(sizes) != 1:
        raise ValueError(f"protocols {protocols} score at different resolutions {sizes}: score them separately")
    size = sizes.pop()
    return tuple(size) if size else None


def null_split(manifest: Any, split: str, protocols: list[str]) -> bool:
    from avsbench_kit.metrics.protocols import PROTOCOLS

    if PROTOCOLS.get(protocols[0]).family != "refavs":
        return False
    return split == "test_n" or all(r["is_null"] for r in manifest.rows(split))


def _resize(x, size: tuple[int, int]):
    import torch.nn.functional as F

    if tuple(x.shape[-2:]) == tuple(size):
        return x.float()
    lead = x.shape[:-2]
    flat = x.reshape(-1, 1, *x.shape[-2:]).float()
    return F.interpolate(flat, size=size, mode="bilinear", align_corners=False).reshape(*lead, *size)


def _masks_at(masks, size: tuple[int, int]):
    import torch.nn.functional as F

    if tuple(masks.shape[-2:]) == tuple(size):
        return masks
    lead = masks.shape[:-2]
    flat = masks.reshape(-1, 1, *masks.shape[-2:]).float()
    return F.interpolate(flat, size=size, mode="nearest").reshape(*lead, *size)


def save_prediction(root: Path, key: str, frames: Any, annotated: Any) -> None:
    """float16 logits of the annotated frames, one ``.npy`` per frame (atomic writes)."""
    import numpy as np

    from avsbench_kit.atomic import atomic_path

    for k, keep in enumerate(annotated.tolist()):
        if not keep:
            continue
        target = root / key / f"{k}.npy"
        with atomic_path(target) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, frames[k].numpy().astype(np.float16))


def _cached_masks(manifest: Any, split: str, home: Any):
    """``keys -> GT [B,T,H,W]`` from the decoded-GT cache (its PNGs when there is none yet), for
    evaluation batches loaded without masks (``load_masks=False``: the loader then decodes none)."""
    import numpy as np
    import torch

    from avsbench_kit.data.datasets import DATASETS
    from avsbench_kit.data.gt_cache import GtSource

    source = GtSource(manifest, DATASETS.get(manifest.dataset).task, split, home)
    rows = {r["sample_key"]: r for r in manifest.rows(split)}
    return lambda keys: torch.from_numpy(np.stack([source.sample(rows[k]) for k in keys]))


def score(pairs: Iterable[tuple[dict, Any]], manifest: Any, split: str, protocols: list[str],
          predictions_dir: Path | None = None, home: Any = None) -> SplitScore:
    """``pairs`` yields (batch, logits [B,T,h,w]) in manifest order; returns the split's scores.
    Batches without ``masks`` are scored against the decoded-GT cache."""
    from avsbench_kit.errors import DataError
    from avsbench_kit.metrics.evaluator import Evaluator

    size = resolution(protocols)
    ev = Evaluator(protocols, split, null_split=null_split(manifest, split, protocols))
    expected = [r["sample_key"] for r in manifest.rows(split)]
    seen = 0
    gt_of = None
    for batch, logits in pairs:
        masks = batch.get("masks")
        if masks is None:
            gt_of = gt_of or _cached_masks(manifest, split, home)
            masks = gt_of(list(batch["key"]))
        target = size or tuple(masks.shape[-2:])
        logits = _resize(logits.detach().cpu(), target)
        masks = _masks_at(masks, target)
        for i, key in enumerate(batch["key"]):
            if seen >= len(expected) or expected[seen] != key:
                raise DataError(f"sample {key} of {split} arrived out of manifest order",
                                hint="evaluation batches must come unshuffled (shuffle=False)")
            seen += 1
            ann = batch["annotated"][i].bool()
            ev.update(key, logits[i], masks[i], ann)
            if predictions_dir is not None:
                save_prediction(Path(predictions_dir), key, logits[i], ann)
    if seen != len(expected):
        raise DataError(f"{split}: {seen} of {len(expected)} samples were predicted",
                        hint="the evaluation stream stopped early")
    result = ev.compute()
    samples = result.samples
    if len(samples):
        samples.insert(0, "split", split)
    return SplitScore(result.metrics, dict(result.versions), samples, result.num_samples)
