"""The probe figures: relative drop of J with a paired bootstrap CI, negative-audio FPR, hJ.

Definitions (docs/probes.md):

* ``drop`` (``reliance`` for ``audio-shuffled``) = (J_clean - J_probe) / J_clean, J = mean over
  the split's samples of the per-sample J (the per-sample table's ``mIoU`` / ``J``: one clip's
  frames, the ``-clip-v1`` protocols' J). CI: percentile bootstrap over samples, paired (one
  resample of sample indices scores both conditions), seeded.
* ``FPR`` (negative probes) = predicted foreground pixels / scored pixels, pooled over every
  annotated frame of the split, with the protocol's own foreground rule (``logit >= j threshold``).
* ``hJ`` v1 = harmonic mean of J_clean (the positive pairs) and 1 - FPR (the negative pairs):
  ``2 J (1 - FPR) / (J + 1 - FPR)``; 0 when both are 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

COMBINED_NAME = "hJ"
COMBINED_VERSION = "1"
BOOTSTRAP = 2000
LEVEL = 0.95


@dataclass(frozen=True)
class Drop:
    value: float
    low: float
    high: float
    clean: float
    probe: float
    samples: int
    resamples: int = BOOTSTRAP
    level: float = LEVEL

    def as_dict(self) -> dict[str, float | int | list[float]]:
        return {"value": self.value, "ci": [self.low, self.high], "level": self.level,
                "resamples": self.resamples, "over": "samples", "J_clean": self.clean, "J_probe": self.probe,
                "samples": self.samples}


def paired_scores(a: Sequence[float], b: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Two per-sample score lists as aligned float arrays, pairs with a non-finite side left out."""
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or x.size == 0:
        raise ValueError(f"paired per-sample scores needed, got shapes {x.shape} and {y.shape}")
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


def bootstrap_weights(n: int, seed: int, resamples: int = BOOTSTRAP,
                      groups: Sequence[Any] | None = None) -> np.ndarray:
    """``(resamples, n)``: how often each sample is drawn in each resample, seeded. With ``groups``
    (one label per sample, e.g. its clip) whole groups are drawn — a cluster bootstrap: samples of
    one clip share its scene, so their errors are not independent and drawing them one by one
    gives too narrow an interval."""
    if groups is None:
        labels, m = np.arange(n), n
    else:
        if len(groups) != n:
            raise ValueError(f"{len(groups)} group labels for {n} samples")
        _, labels = np.unique(np.asarray(groups), return_inverse=True)
        m = int(labels.max()) + 1 if n else 0
    rng = np.random.default_rng([int(seed), 0xB007])
    draws = rng.integers(0, m, size=(int(resamples), m))
    rows = np.arange(int(resamples))[:, None] * m
    counts = np.bincount((rows + draws).ravel(), minlength=int(resamples) * m).reshape(int(resamples), m)
    return counts[:, labels].astype(np.float64)


def paired_bootstrap(a: np.ndarray, b: np.ndarray, statistic: Callable[[Any, Any], Any], seed: int,
                     resamples: int = BOOTSTRAP, level: float = LEVEL) -> tuple[float, float, float]:
    """``statistic(mean a, mean b)`` and its percentile bootstrap interval: one resample of sample
    indices scores both sides (paired), seeded. ``statistic`` must broadcast over arrays of means."""
    value = statistic(a.mean(), b.mean())
    w = bootstrap_weights(a.size, seed, resamples)
    total = w.sum(axis=1)
    boot = statistic(w @ a / total, w @ b / total)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(boot, [alpha, 1.0 - alpha])
    return float(value), float(low), float(high)


def relative_drop(clean: Sequence[float], probe: Sequence[float], seed: int,
                  resamples: int = BOOTSTRAP, level: float = LEVEL) -> Drop:
    """Relative drop of the mean of ``clean`` to the mean of ``probe`` (paired per sample)."""
    a, b = paired_scores(clean, probe)
    value, low, high = paired_bootstrap(a, b, _drop, seed, resamples, level)
    return Drop(value, low, high, float(a.mean()), float(b.mean()), int(a.size), int(resamples), float(level))


def _drop(clean, probe):
    clean = np.asarray(clean, dtype=np.float64)
    safe = np.where(clean > 0, clean, 1.0)
    return np.where(clean > 0, (clean - probe) / safe, 0.0)


def combined(j_positive: float, fpr: float) -> float:
    """``hJ`` v1: harmonic mean of positive J and 1 - FPR."""
    tn = 1.0 - float(fpr)
    j = float(j_positive)
    return 0.0 if j + tn <= 0 else 2.0 * j * tn / (j + tn)
