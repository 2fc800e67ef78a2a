"""``avsbench-av2t-v1``: the AV2T-SAM release's evaluation (F on raw logits, one clip per call)
next to the official ``avsbench-v1``, on constructed inputs where the two must differ."""

from __future__ import annotations

import pytest
import torch

from avsbench_kit.metrics import functional as Fn
from avsbench_kit.metrics.evaluator import Evaluator
from avsbench_kit.metrics.protocols import PROTOCOLS


def released_f(pred: torch.Tensor, gt: torch.Tensor) -> float:
    """The released Eval_Fmeasure, restated loop by loop (sigmoid line commented out there)."""
    thr = torch.linspace(0, 1 - 1e-10, 255)
    total, k = torch.zeros(255), 0
    for i in range(pred.shape[0]):
        if torch.mean(gt[i]) == 0.0:
            continue
        prec, rec = torch.zeros(255), torch.zeros(255)
        for j in range(255):
            y = (pred[i] >= thr[j]).float()
            tp = (y * gt[i]).sum()
            prec[j], rec[j] = tp / (y.sum() + 1e-20), tp / (gt[i].sum() + 1e-20)
        f = 1.3 * prec * rec / (0.3 * prec + rec)
        f[f != f] = 0
        total, k = total + f, k + 1
    return (total / k).max().item() if k else 0.0


def test_raw_f_matches_the_release_and_differs_from_sigmoid_f() -> None:
    g = torch.Generator().manual_seed(0)
    gt = torch.zeros(3, 16, 16)
    gt[:, 4:12, 4:12] = 1.0
    gt[2] = 0.0  # an empty-GT frame: skipped by both
    # every logit in (-3, 0): the sigmoid ranks them (official F is high), raw thresholds >= 0
    # reject them all (the release's F is 0)
    neg = -torch.rand(3, 16, 16, generator=g) * 2.0 - 0.5 * (1 - gt) - 0.5
    assert Fn.avs_fscore_raw(neg, gt) == released_f(neg, gt) == 0.0
    assert Fn.avs_fscore(neg, gt) > 0.5
    # logits in [0, 1): the raw values themselves are read as probabilities
    mixed = torch.rand(3, 16, 16, generator=g) * 0.6 + 0.39 * gt
    assert Fn.avs_fscore_raw(mixed, gt) == pytest.approx(released_f(mixed, gt), abs=1e-6)
    # large positive logits: sigmoid saturates at 1.0 only beyond ~17, raw x >= 1 passes every threshold
    big = torch.where(gt > 0, 5.0, 1.5) + 0 * gt
    assert Fn.avs_fscore_raw(big, gt) == pytest.approx(released_f(big, gt), abs=1e-6)
    assert Fn.avs_fscore_raw(big, gt) < 0.6 < Fn.avs_fscore(big, gt)  # raw: every pixel foreground


def test_protocol_next_to_the_official_one_per_clip_calls_and_raw_f() -> None:
    p = PROTOCOLS.get("avsbench-av2t-v1")
    assert p.f_on_raw_logits and p.batch_size == 1 and not p.official
    gt = torch.zeros(5, 16, 16)
    gt[:, 3:9, 3:9] = 1.0
    clip_a = torch.where(gt > 0, 3.0, -3.0)  # confident and right: both protocols agree F = 1
    clip_b = torch.where(gt > 0, -0.2, -4.0)  # right ranking, all logits < 0
    ev = Evaluator(["avsbench-v1", "avsbench-av2t-v1"], "test")
    for key, pred in (("a", clip_a), ("b", clip_b)):
        ev.update(key, pred, gt)
    metrics = ev.compute().metrics
    off, av2t = metrics["avsbench-v1"], metrics["avsbench-av2t-v1"]
    assert off["mIoU"] == av2t["mIoU"] == pytest.approx(0.5)  # same mIoU rule (b predicts nothing)
    # official: one call over both clips (batch of 4), b's pixels rank right -> F = 1
    assert off["F"] == pytest.approx(1.0)
    # release: a scores 1, b scores 0 (no logit reaches threshold 0), mean over the 2 calls
    assert av2t["F"] == pytest.approx((released_f(clip_a, gt) + released_f(clip_b, gt)) / 2) == pytest.approx(0.5)
    # a clip without GT-positive frames is a call scoring F = 0, still averaged (not skipped)
    ev2 = Evaluator(["avsbench-av2t-v1"], "test")
    ev2.update("a", clip_a, gt)
    ev2.update("empty", torch.full((5, 16, 16), -5.0), torch.zeros(5, 16, 16))
    assert ev2.compute().metrics["avsbench-av2t-v1"]["F"] == pytest.approx(0.5)
