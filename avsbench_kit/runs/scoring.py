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


def null_split(manifest: Any, split: str, protocols: list[str]) -> bool:
    from avsbench_kit.metrics.protocols import PROTOCOLS

    if PROTOCOLS.get(protocols[0]).family != "refavs":
        return False
    return split == "test_n" or all(r["is_null"] for r in manifest.rows(split))


def resize_logits(x, size: tuple[int, int]):
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


def binary_view(logits, masks):
    """AVSS class-agnostic view: GT > 0 is foreground; class logits ``[..., C, H, W]`` become the
    log-odds of "not background" (logsumexp over classes 1.. minus class 0)."""
    import torch

    if logits.dim() == masks.dim() + 1:
        logits = torch.logsumexp(logits[..., 1:, :, :], dim=-3) - logits[..., 0, :, :]
    return logits, (masks > 0).float()


class Scorer:
    """Scores a stream of (batch, logits) on one split — or on the union of several, in the given
    order (Ref-AVS Mix) — under ``protocols``; one evaluator per evaluation resolution.

    ``view="binary"`` scores AVSS data class-agnostically (:func:`binary_view`). Clips a reader
    padded along time carry ``num_frames``; their padded frames are dropped before scoring.
    """

    def __init__(self, manifest: Any, splits: list[str], protocols: list[str], *, view: str = "native",
                 name: str | None = None, predictions_dir: Path | None = None) -> None:
        from avsbench_kit.metrics.evaluator import Evaluator
        from avsbench_kit.metrics.protocols import PROTOCOLS

        if view not in ("native", "binary"):
            raise ValueError(f"view {view!r}")
        self.name = name or "+".join(splits)
        self.view = view
        self.predictions_dir = Path(predictions_dir) if predictions_dir is not None else None
        self.expected = [r["sample_key"] for split in splits for r in manifest.rows(split)]
        null = all(null_split(manifest, split, protocols) for split in splits)
        by_size: dict[Any, list[str]] = {}
        for p in protocols:
            res = PROTOCOLS.get(p).resolution
            by_size.setdefault(tuple(res) if res else None, []).append(p)
        from avsbench_kit.data.datasets import DATASETS

        classes = DATASETS.get(manifest.dataset).num_classes or None  # AVSS: the dataset's label set
        extra = {"num_classes": classes} if classes else {}
        self.evaluators = [(size, Evaluator(ps, self.name, null_split=null, **extra)) for size, ps in by_size.items()]
        self.seen = 0

    def feed(self, batch: dict, logits: Any) -> None:
        from avsbench_kit.errors import DataError

        logits = logits.detach().cpu()
        masks = batch["masks"]
        if self.view == "binary":
            logits, masks = binary_view(logits, masks)
        frames = batch.get("num_frames")
        prepared = {size: (resize_logits(logits, size or tuple(masks.shape[-2:])),
                           _masks_at(masks, size or tuple(masks.shape[-2:]))) for size, _ in self.evaluators}
        for i, key in enumerate(batch["key"]):
            if self.seen >= len(self.expected) or self.expected[self.seen] != key:
                raise DataError(f"sample {key} of {self.name} arrived out of manifest order",
                                hint="evaluation batches must come unshuffled (shuffle=False)")
            self.seen += 1
            n = int(frames[i]) if frames is not None else masks.shape[1]
            ann = batch["annotated"][i][:n].bool()
            for size, ev in self.evaluators:
                lg, gt = prepared[size]
                ev.update(key, lg[i][:n], gt[i][:n], ann)
            if self.predictions_dir is not None:
                first = prepared[self.evaluators[0][0]][0]
                save_prediction(self.predictions_dir, key, first[i][:n], ann)

    def result(self) -> SplitScore:
        import pandas as pd

        from avsbench_kit.errors import DataError

        if self.seen != len(self.expected):
            raise DataError(f"{self.name}: {self.seen} of {len(self.expected)} samples were predicted",
                            hint="the evaluation stream stopped early")
        metrics: dict[str, dict[str, float]] = {}
        versions: dict[str, str] = {}
        tables = []
        for _, ev in self.evaluators:
            result = ev.compute()
            metrics.update(result.metrics)
            versions.update(result.versions)
            if len(result.samples):
                tables.append(result.samples.set_index("sample_key"))
        samples = pd.DataFrame()
        if tables:
            samples = tables[0]
            for extra in tables[1:]:
                samples = samples.join(extra[[c for c in extra.columns if c not in samples.columns]])
            samples = samples.reset_index()
            samples.insert(0, "split", self.name)
            if self.view != "native":
                samples.insert(1, "view", self.view)
        return SplitScore(metrics, versions, samples, self.seen)


def score(pairs: Iterable[tuple[dict, Any]], manifest: Any, split: str, protocols: list[str],
          predictions_dir: Path | None = None, view: str = "native") -> SplitScore:
    """``pairs`` yields (batch, logits [B,T,h,w] or [B,T,C,h,w]) in manifest order; returns the
    split's scores."""
    scorer = Scorer(manifest, [split], protocols, view=view, predictions_dir=predictions_dir)
    for batch, logits in pairs:
        scorer.feed(batch, logits)
    return scorer.result()
