"""The contract every baseline fulfils, so one trainer and one evaluator serve them all.

A baseline never opens dataset files: it declares the feature caches it consumes
(:meth:`Baseline.feature_requests`), receives batches from the feature reader, and returns
per-frame mask logits at ``cfg["output_size"]``. The trainer optimises
:meth:`Baseline.trainable_parameters` and nothing else.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from avsbench_kit.errors import ConfigError, DataError


def feature_request(encoder: str, overrides: tuple[str, ...] | list[str] = ()) -> Any:
    """A :class:`avsbench_kit.features.base.FeatureRequest` (imported lazily: the features
    package is heavy and owned elsewhere)."""
    from avsbench_kit.features.base import FeatureRequest

    return FeatureRequest(encoder, tuple(str(o) for o in overrides))


def as_size(value: Any, key: str = "output_size") -> tuple[int, int]:
    """``224`` or ``[224, 224]`` -> ``(224, 224)``."""
    if isinstance(value, bool):
        value = None
    if isinstance(value, int) and value > 0:
        return (value, value)
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        return (int(value[0]), int(value[1]))
    raise ConfigError(f"{key}={value!r} is not a size", hint=f"use {key}=224 or {key}=[224,224]")


def masks_at(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Ground-truth masks [..., H, W] resized with nearest neighbour (binary stays binary)."""
    if tuple(masks.shape[-2:]) == tuple(size):
        return masks.float()
    lead = masks.shape[:-2]
    flat = masks.reshape(-1, 1, *masks.shape[-2:]).float()
    return F.interpolate(flat, size=size, mode="nearest").reshape(*lead, *size)


def check_batch(batch: dict, needed: list[str]) -> None:
    """Fail with the missing encoder names (a reader/config mismatch), not a KeyError."""
    feats = batch.get("features", {})
    missing = [n for n in needed if n not in feats]
    if missing:
        raise DataError(
            f"batch {batch.get('key', [])[:2]}... lacks features {missing} (has {sorted(feats)})",
            hint="request them through the baseline's feature_requests() when building batches",
        )


class Baseline(nn.Module):
    """Base class: build from a config dict, forward a reader batch to logits [B,T,H,W]."""

    #: registry name of the method
    name: ClassVar[str] = "baseline"
    #: whether batches must carry raw ``frames`` (e.g. an image encoder run on the fly)
    needs_frames: bool = False

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        self.cfg = copy.deepcopy(cfg)
        self.output_size = as_size(cfg.get("output_size"))

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> "Baseline":
        """Build from a resolved config (a packaged preset with ``key=value`` overrides applied)."""
        return cls(cfg)

    def feature_requests(self) -> list:
        """The feature caches (``FeatureRequest``) this baseline consumes."""
        raise NotImplementedError

    def forward(self, batch: dict) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters the paper trains (everything with ``requires_grad``)."""
        return [p for p in self.parameters() if p.requires_grad]

    def parameter_counts(self) -> dict[str, int]:
        """Trainable / frozen / total parameter counts (for run records and listings)."""
        trainable = sum(p.numel() for p in self.trainable_parameters())
        total = sum(p.numel() for p in self.parameters())
        return {"trainable": trainable, "frozen": total - trainable, "total": total}
