"""Property-based checks of the metric kernels (hypothesis): ranges, invariance of the ``-clip-v1``
protocols to sample order, batch independence of the per-frame kernels, and agreement with the
loop reference of the official code (tests/official_reference.py) on random masks and logits.

Kept fast (tiny frames, 25-40 examples each, a fixed hypothesis seed via ``derandomize``) so it runs
in the default suite."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import official_reference as R
from avsbench_kit.metrics import functional as Fn
from avsbench_kit.metrics.evaluator import Evaluator

pytestmark = pytest.mark.usefixtures("one_torch_thread")
FAST = settings(max_examples=30, deadline=None, derandomize=True)


@st.composite
def clips(draw, max_clips: int = 6):
    """Per-clip (logits [T,H,W], binary GT [T,H,W]); logits quantised so many sit exactly on the
    sigmoid 0.5 boundary (0.0), with empty-GT frames and empty-GT clips among them."""
    n = draw(st.integers(1, max_clips))
    t, h, w = draw(st.integers(1, 4)), draw(st.integers(2, 12)), draw(st.integers(2, 12))
    seed, scale = draw(st.integers(0, 2**31 - 1)), draw(st.sampled_from([0.5, 2.0, 8.0, 40.0]))
    density = draw(st.floats(0.0, 1.0))
    g = torch.Generator().manual_seed(seed)
    preds, gts = [], []
    for _ in range(n):
        gt = (torch.rand(t, h, w, generator=g) < density).float()
        x = torch.round((torch.randn(t, h, w, generator=g) * scale + (gt - 0.5) * scale) * 2) / 2
        preds.append(x)
        gts.append(gt)
    return preds, gts


def evaluate(protocols, preds, gts, keys=None, split="test"):
    ev = Evaluator(protocols, split)
    for i, (x, g) in enumerate(zip(preds, gts)):
        ev.update(keys[i] if keys else f"s{i:03d}", x, g)
    return ev.compute()


@FAST
@given(clips())
def test_metrics_are_fractions(data):
    preds, gts = data
    res = evaluate(["avsbench-v1", "avsbench-clip-v1"], preds, gts)
    for protocol in ("avsbench-v1", "avsbench-clip-v1"):
        for name, value in res.metrics[protocol].items():
            assert math.isnan(value) or 0.0 <= value <= 1.0, (protocol, name, value)
    ious = Fn.frame_iou(torch.cat(preds), torch.cat(gts))
    assert ious.dtype == torch.float32 and bool(((ious >= 0) & (ious <= 1)).all())


@FAST
@given(clips(), st.randoms(use_true_random=False))
def test_clip_protocols_ignore_sample_order(data, rnd):
    preds, gts = data
    order = list(range(len(preds)))
    rnd.shuffle(order)
    for protocols in (["avsbench-clip-v1"], ["refavs-clip-v1"]):
        a = evaluate(protocols, preds, gts)
        b = evaluate(protocols, [preds[i] for i in order], [gts[i] for i in order], keys=[f"s{i:03d}" for i in order])
        for name, value in a.metrics[protocols[0]].items():  # fsum of per-sample values: exact
            other = b.metrics[protocols[0]][name]
            assert value == other or (math.isnan(value) and math.isnan(other)), name
        per_a = a.samples.set_index("sample_key").sort_index()
        per_b = b.samples.set_index("sample_key").sort_index()
        assert per_a["mIoU" if "avsbench" in protocols[0] else "J"].equals(
            per_b["mIoU" if "avsbench" in protocols[0] else "J"])


@FAST
@given(clips(), st.integers(1, 5))
def test_frame_kernels_do_not_depend_on_the_batch_split(data, cut):
    """Scoring frames together or in two calls gives identical per-frame IoU and PR counts, so a
    clip's score does not depend on which clips share its evaluation batch."""
    x, g = torch.cat(data[0]), torch.cat(data[1])
    if x.shape[0] < 2:
        x, g = torch.cat([x, -x]), torch.cat([g, 1 - g])
    cut = min(cut, x.shape[0] - 1)
    whole = Fn.frame_iou(x, g)
    assert torch.equal(whole, torch.cat([Fn.frame_iou(x[:cut], g[:cut]), Fn.frame_iou(x[cut:], g[cut:])]))
    tp, fg = Fn.pr_histograms(x, g)
    tp1, fg1 = Fn.pr_histograms(x[:cut], g[:cut])
    tp2, fg2 = Fn.pr_histograms(x[cut:], g[cut:])
    assert torch.equal(tp, torch.cat([tp1, tp2])) and torch.equal(fg, torch.cat([fg1, fg2]))


@FAST
@given(clips(max_clips=9))
def test_agrees_with_the_official_loops(data):
    preds, gts = data
    res = evaluate(["avsbench-v1"], preds, gts)
    miou, f = R.avsbench_test(preds, gts, batch_size=4)
    assert res.metrics["avsbench-v1"]["mIoU"] == miou
    assert res.metrics["avsbench-v1"]["F"] == f
    for x, g in zip(preds, gts):
        assert Fn.avs_miou(x, g) == R.mask_iou(x, g).item()
        assert Fn.refavs_j(x, g) == R.refavs_mask_iou(x, g).item()


def test_histograms_after_a_call_with_the_same_pixel_total():
    """Regression (found by the batch-split property): 4 frames of 9x6 then 9 frames of 4x6 (both
    216 pixels) once shared a cached frame-offset table and scored the second call wrongly."""
    g0 = torch.Generator().manual_seed(0)
    first = torch.randn(4, 9, 6, generator=g0), (torch.rand(4, 9, 6, generator=g0) < 0.5).float()
    x, g = torch.randn(9, 4, 6, generator=g0), (torch.rand(9, 4, 6, generator=g0) < 0.5).float()
    Fn.pr_histograms(*first)
    tp, fg = Fn.pr_histograms(x, g)
    single = [Fn.pr_histograms(x[i : i + 1], g[i : i + 1]) for i in range(9)]
    assert tp.sum(1).tolist() == [24] * 9
    assert torch.equal(tp, torch.cat([s[0] for s in single])) and torch.equal(fg, torch.cat([s[1] for s in single]))
