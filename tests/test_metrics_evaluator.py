"""Streaming evaluator vs the official test-script loops (reference), with in-memory GT."""

from __future__ import annotations

import gc
import math
import weakref

import numpy as np
import pytest
import torch

import official_reference as R
from avsbench_kit.metrics import functional as Fn
from avsbench_kit.metrics.evaluator import Evaluator


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def ulps(a: float, b: float) -> int:
    ia = int(np.array([a], dtype=np.float32).view(np.int32)[0])
    ib = int(np.array([b], dtype=np.float32).view(np.int32)[0])
    return abs(ia - ib)


def make_clips(n: int, t: int, h: int, w: int, seed: int, soft_gt: bool = False):
    g = torch.Generator().manual_seed(seed)
    preds, gts = [], []
    for i in range(n):
        low = torch.rand(t, 1, h // 4, w // 4, generator=g)
        gt = (torch.nn.functional.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)[:, 0] < 0.35).float()
        if soft_gt:
            gt = gt * torch.randint(1, 4, (t, h, w), generator=g).float() * (85 / 255)
        x = (gt - 0.5) * 4 + torch.randn(t, h, w, generator=g) * (1 + i % 3)
        preds.append(x)
        gts.append(gt)
    gts[1][:] = 0  # an object-less clip
    gts[2][0] = 0  # an object-less frame
    return preds, gts


def run(protocols, split, preds, gts, **kw):
    ev = Evaluator(protocols, split, **kw)
    for i, (x, g) in enumerate(zip(preds, gts)):
        ev.update(f"s{i:03d}", x, g)
    return ev.compute()


@pytest.mark.parametrize("n", [4, 9, 10])
def test_avsbench_v1_equals_official_test_loop(n: int) -> None:
    preds, gts = make_clips(n, 5, 24, 24, seed=n)
    res = run("avsbench-v1", "test", preds, gts)
    miou, f = R.avsbench_test(preds, gts, batch_size=4)
    assert res.metrics["avsbench-v1"]["mIoU"] == miou
    assert res.metrics["avsbench-v1"]["F"] == f
    assert res.info["avsbench-v1"]["batches"] == math.ceil(n / 4)


def test_avsbench_v1_soft_gt_within_two_ulps() -> None:
    preds, gts = make_clips(6, 5, 20, 20, seed=3, soft_gt=True)
    res = run("avsbench-v1", "test", preds, gts)
    miou, f = R.avsbench_test(preds, gts)
    assert ulps(res.metrics["avsbench-v1"]["mIoU"], miou) <= 2
    assert abs(res.metrics["avsbench-v1"]["F"] - f) <= 2 * np.spacing(np.float32(f))


def test_clip_variant_is_mean_of_per_clip_official_calls() -> None:
    preds, gts = make_clips(7, 5, 16, 16, seed=5)
    res = run(["avsbench-v1", "avsbench-clip-v1"], "test", preds, gts)
    per_j = [R.mask_iou(x, g).item() for x, g in zip(preds, gts)]
    per_f = [R.eval_fmeasure(x, g) for x, g in zip(preds, gts) if g.sum() > 0]
    assert res.metrics["avsbench-clip-v1"]["mIoU"] == pytest.approx(math.fsum(per_j) / 7, abs=0)
    assert res.metrics["avsbench-clip-v1"]["F"] == pytest.approx(math.fsum(per_f) / len(per_f), abs=0)
    assert res.info["avsbench-clip-v1"]["samples_without_F"] == 1
    table = res.samples
    assert list(table["sample_key"]) == [f"s{i:03d}" for i in range(7)]
    assert table["mIoU"].tolist() == per_j
    assert math.isnan(table.loc[1, "F"])
    assert table["batch[avsbench-v1]"].tolist() == [0, 0, 0, 0, 1, 1, 1]


def test_refavs_v1_j_f_and_s() -> None:
    preds, gts = make_clips(9, 10, 16, 16, seed=7)
    res = run(["refavs-v1", "refavs-clip-v1"], "test_s", preds, gts)
    ref = R.refavs_test(preds, gts)
    got = res.metrics["refavs-v1"]
    assert got["J"] == ref["J"] and got["F"] == ref["F"]
    assert got["J&F"] == (ref["J"] + ref["F"]) / 2
    assert set(res.metrics["refavs-clip-v1"]) == {"J", "F", "J&F"}
    # null split: S only, sqrt per batch then float32 mean
    zero = [torch.zeros_like(g) for g in gts]
    res_n = run(["refavs-v1", "refavs-clip-v1"], "test_n", preds, zero)
    assert res_n.metrics["refavs-v1"] == {"S": R.refavs_null_test(preds)}
    per = [R.refavs_s_batch(x).item() for x in preds]
    assert res_n.metrics["refavs-clip-v1"]["S"] == pytest.approx(math.fsum(per) / len(per), abs=0)
    assert "S" in res_n.samples.columns


def test_refavs_j_uses_sigma_0_4() -> None:
    gt = torch.zeros(1, 4, 4)
    gt[0, :2] = 1
    x = torch.where(gt > 0, -0.3, -5.0)  # sigma(-0.3) = 0.43: foreground for J, background for mIoU
    assert run("refavs-v1", "test_s", [x], [gt]).metrics["refavs-v1"]["J"] == pytest.approx(1.0, abs=1e-6)
    assert run("avsbench-v1", "test", [x], [gt]).metrics["avsbench-v1"]["mIoU"] == 0.0


def test_avss_v1_equals_official_loop_with_padding() -> None:
    g = torch.Generator().manual_seed(11)
    preds, gts, ref_preds = [], [], []
    for i in range(6):
        t = 5 if i % 2 else 10  # v1s/v1m clips (padded to 10) and v2 clips
        gt = torch.tensor([0, 3, 17, 70])[torch.randint(0, 4, (t, 12, 12), generator=g)]
        logits = torch.randn(t, 71, 12, 12, generator=g)
        logits[:, [0, 3, 17, 70, 44]] += 8.0  # class 44 appears in predictions only
        preds.append(logits)
        gts.append(gt)
        ref_preds.append(logits)
    # clip 1: also give predictions for its padded frames (as files num_frames..9 would)
    pad_logits = torch.randn(5, 71, 12, 12, generator=g)
    pad_logits[:, [0, 44]] += 8.0
    preds[1] = torch.cat([preds[1], pad_logits])
    ref_preds[1] = torch.cat([Fn.avss_class_map(ref_preds[1]), Fn.avss_class_map(pad_logits)])
    ref_preds = [p if p.dim() == 3 else Fn.avss_class_map(p) for p in ref_preds]
    res = run("avss-v1", "test", preds, gts)
    ref = R.avss_test(ref_preds, gts)
    assert res.metrics["avss-v1"] == ref
    assert res.samples["padded"].tolist() == [0, 5, 0, 5, 0, 5]
    assert res.info["avss-v1"]["classes_seen"] == 5


def test_compute_mid_stream_does_not_change_batches() -> None:
    preds, gts = make_clips(10, 5, 12, 12, seed=13)
    ev = Evaluator(["avsbench-v1"], "test")
    for i, (x, g) in enumerate(zip(preds, gts)):
        ev.update(str(i), x, g)
        if i in (2, 5):
            ev.compute()
    assert ev.compute().metrics == run("avsbench-v1", "test", preds, gts).metrics


def test_unannotated_frames_are_dropped() -> None:
    """S4 train: only frame 0 is annotated; the other frames' GT and predictions do not count."""
    preds, gts = make_clips(5, 5, 12, 12, seed=17)
    ev = Evaluator("avsbench-v1", "train")
    for i, (x, g) in enumerate(zip(preds, gts)):
        ev.update(str(i), x, g, annotated=[True, False, False, False, False])
    res = ev.compute()
    miou, f = R.avsbench_test([x[:1] for x in preds], [g[:1] for g in gts])
    assert res.metrics["avsbench-v1"] == {"mIoU": miou, "F": f}
    assert res.num_frames == 5


def test_evaluator_keeps_no_logits() -> None:
    ev = Evaluator(["avsbench-v1", "avsbench-clip-v1"], "test")
    x = torch.randn(5, 32, 32)
    ref = weakref.ref(x)
    ev.update("a", x, torch.zeros(5, 32, 32))
    del x
    gc.collect()
    assert ref() is None


def test_mixed_families_rejected() -> None:
    with pytest.raises(ValueError):
        Evaluator(["avsbench-v1", "refavs-v1"], "test")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_protocols_share_one_pass_over_the_pixels(monkeypatch, dtype) -> None:
    """Official + clip protocols in one evaluator: one histogram pass per sample feeds both, and
    each protocol's numbers and per-sample rows equal those of an evaluator running it alone."""
    preds, gts = make_clips(7, 10, 32, 32, seed=5)
    preds = [p.to(dtype) for p in preds]
    both = run(["refavs-v1", "refavs-clip-v1"], "test_s", preds, gts)
    calls = []
    kernel = Fn.frame_histograms
    monkeypatch.setattr(Fn, "frame_histograms", lambda *a, **k: calls.append(1) or kernel(*a, **k))
    again = run(["refavs-v1", "refavs-clip-v1"], "test_s", preds, gts)
    assert len(calls) == len(preds) and again.metrics == both.metrics
    for name in ("refavs-v1", "refavs-clip-v1"):
        alone = run(name, "test_s", preds, gts)
        assert alone.metrics[name] == both.metrics[name]
        cols = [c for c in alone.samples.columns if not c.startswith("batch[")]
        assert alone.samples[cols].equals(both.samples[cols])
    official = R.refavs_test([p.float() for p in preds], gts)
    assert both.metrics["refavs-v1"]["J"] == official["J"] and both.metrics["refavs-v1"]["F"] == official["F"]


def _same_stats(a, b) -> None:
    for name in ("iou", "curves", "positive", "fg", "raw_curves"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert x.dtype == y.dtype and torch.equal(x, y), name
    assert a.pixels == b.pixels
    assert a.clip.keys() == b.clip.keys()
    for k in a.clip:  # NaN (no F, S off) must match NaN
        assert a.clip[k] == b.clip[k] or (math.isnan(a.clip[k]) and math.isnan(b.clip[k])), k


@pytest.mark.parametrize("protocols,split,half", [
    (["refavs-v1", "refavs-clip-v1"], "test_s", True),
    (["refavs-v1", "refavs-clip-v1"], "test_n", True),  # S needs the foreground counts
    (["avsbench-v1", "avsbench-clip-v1"], "test", False),
    ("avsbench-av2t-v1", "test", True),  # F on raw logits
])
def test_group_stats_equal_per_sample_stats(protocols, split, half: bool) -> None:
    """One kernel pass over the concatenated frames of several samples gives exactly each sample's
    own statistics (the driver scores a group of samples this way)."""
    preds, gts = make_clips(5, 6, 24, 20, seed=3)
    lengths = [6, 2, 6, 1, 4]  # samples with fewer scored frames (unannotated frames dropped)
    preds = [p[:n].half() if half else p[:n] for p, n in zip(preds, lengths)]
    gts = [g[:n].bool() for g, n in zip(gts, lengths)]
    ev = Evaluator(protocols, split)
    grouped = ev.group_stats(torch.cat(preds), torch.cat(gts), lengths, check_finite=True)
    assert len(grouped) == len(lengths)
    for st, p, g in zip(grouped, preds, gts):
        _same_stats(st, ev.sample_stats(p, g, check_finite=True))


def test_group_stats_soft_gt_non_finite_and_bad_lengths() -> None:
    preds, gts = make_clips(3, 4, 16, 16, seed=5)
    ev = Evaluator(["avsbench-v1"], "test")
    soft = [g.clone() for g in gts]
    soft[2][1, 0, 0] = 0.5
    assert ev.group_stats(torch.cat(preds), torch.cat(soft), [4, 4, 4]) is None  # scored sample by sample
    with pytest.raises(ValueError, match="do not split"):
        ev.group_stats(torch.cat(preds), torch.cat(gts), [4, 4, 3])
    with pytest.raises(ValueError, match="do not split"):
        ev.group_stats(torch.cat(preds), torch.cat(gts), [4, 0, 8])
    bad = torch.cat(preds).half()
    bad[9, 3, 3] = float("inf")
    with pytest.raises(Fn.NonFiniteLogits):
        ev.group_stats(bad, torch.cat(gts), [4, 4, 4], check_finite=True)
    with pytest.raises(ValueError, match="binary families"):
        Evaluator(["avss-v1"], "test").group_stats(torch.cat(preds), torch.cat(gts), [4, 4, 4])
