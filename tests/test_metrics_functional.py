"""The vectorised kernels against the loop re-implementation of the official code (spec §5).

Per-threshold counts must be identical; final scalars within 2 float32 ulp (in practice they are
bit-identical on binary GT)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import official_reference as R
from avsbench_kit.metrics import constants as C
from avsbench_kit.metrics import functional as Fn


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def ulps(a: float, b: float) -> int:
    """Distance in float32 ulps between two values that are float32 numbers."""
    ia = int(np.array([a], dtype=np.float32).view(np.int32)[0])
    ib = int(np.array([b], dtype=np.float32).view(np.int32)[0])
    ia = ia if ia >= 0 else -(ia & 0x7FFFFFFF)
    ib = ib if ib >= 0 else -(ib & 0x7FFFFFFF)
    return abs(ia - ib)


def assert_close(mine: float, ref: float, max_ulps: int = 2) -> None:
    assert ulps(mine, ref) <= max_ulps, (mine, ref, ulps(mine, ref))


def reference_counts(x: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    s = R.official_sigmoid(x)
    tps, pps = [], []
    for k in range(x.shape[0]):
        tp, pp = R.frame_pr_counts(s[k], g[k].float())
        tps.append(tp)
        pps.append(pp)
    return torch.stack(tps), torch.stack(pps)


def blobs(n: int, h: int, w: int, seed: int, density: float = 0.3) -> torch.Tensor:
    """Smooth-ish random binary masks (blocky objects, like real ones)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 1, max(1, h // 8), max(1, w // 8), generator=g)
    up = torch.nn.functional.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)[:, 0]
    return (up < density).float()


def boundary_logits(n: int, h: int, w: int, seed: int) -> torch.Tensor:
    """Logits drawn from {b[i] - 1 ulp, b[i], b[i] + 1 ulp} and the sigma>0.5 / 0.4 cut-offs."""
    b = Fn.logit_boundaries()[1:].numpy()
    cuts = np.concatenate([b, [C.LOGIT_GT_HALF, C.LOGIT_GT_0_4]]).astype(np.float32)
    vals = np.concatenate([np.nextafter(cuts, np.float32(-np.inf)), cuts, np.nextafter(cuts, np.float32(np.inf))])
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.choice(vals, size=(n, h, w)).astype(np.float32))


CASES = {
    "soft": lambda n, h, w, s: torch.randn(n, h, w, generator=torch.Generator().manual_seed(s)) * 3,
    "tiny": lambda n, h, w, s: torch.randn(n, h, w, generator=torch.Generator().manual_seed(s)) * 0.01,
    "hard": lambda n, h, w, s: torch.where(blobs(n, h, w, s + 7) > 0, 1e4, -1e4),
    "saturated": lambda n, h, w, s: torch.randn(n, h, w, generator=torch.Generator().manual_seed(s)) * 40,
    "boundary": boundary_logits,
    "zeros": lambda n, h, w, s: torch.zeros(n, h, w),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("n", [1, 5, 17])
def test_counts_and_scalars_match_reference(case: str, n: int) -> None:
    h, w = 24, 20
    x = CASES[case](n, h, w, n)
    g = blobs(n, h, w, seed=100 + n)
    g[0] = 0  # an empty-GT frame
    if n > 2:
        g[1] = 1  # an all-foreground frame
        g[2] = 0
        g[2, 5, 7] = 1  # a single-pixel object
    tp, pp = Fn.pr_curve_counts(x, g)
    rtp, rpp = reference_counts(x, g)
    assert torch.equal(tp.float(), rtp) and torch.equal(pp.float(), rpp)
    assert_close(Fn.avs_fscore(x, g), R.eval_fmeasure(x, g))
    assert_close(Fn.avs_miou(x, g), R.mask_iou(x, g).item())
    assert_close(Fn.refavs_j(x, g), R.refavs_mask_iou(x, g).item())
    assert_close(Fn.refavs_s(x), R.refavs_s_batch(x).item())


@pytest.mark.parametrize("case", ["soft", "boundary", "saturated"])
def test_float16_table_path(case: str) -> None:
    """float16 logits go through the exact 65536-entry table: same counts as float32 and reference."""
    x = CASES[case](6, 20, 24, 23).half()
    g = blobs(6, 20, 24, 24)
    tp, pp = Fn.pr_curve_counts(x, g)
    rtp, rpp = reference_counts(x.float(), g)
    assert torch.equal(tp.float(), rtp) and torch.equal(pp.float(), rpp)
    assert Fn.avs_fscore(x, g) == Fn.avs_fscore(x.float(), g) == R.eval_fmeasure(x.float(), g)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_extra_decision_bits(dtype) -> None:
    """The J / S decisions folded into the histogram keys equal direct comparisons."""
    x = CASES["boundary"](4, 16, 16, 25).to(dtype)
    g = blobs(4, 16, 16, 26) > 0
    extras = (C.LOGIT_GT_0_4, C.LOGIT_GT_HALF)
    h = Fn.frame_histograms(x, g, extras)  # [N, 4, 2, 256]
    xf = x.float()
    for k, t in enumerate(extras):
        on = (torch.arange(4) >> k) & 1 > 0
        direct = (xf >= t).reshape(4, -1)
        assert torch.equal(h[:, on].sum((1, 2, 3)), direct.sum(1))
        assert torch.equal(h[:, on, 1].sum((1, 2)), (direct & g.reshape(4, -1)).sum(1))


@pytest.mark.parametrize("chunk", [64, 500, 1 << 18])
def test_float16_histograms_across_chunks(monkeypatch, chunk: int) -> None:
    """The float16 path (int16 table keys, one bincount per frame) gives the float32 path's
    histograms when a chunk holds several frames, one frame, or part of a frame."""
    x = CASES["boundary"](7, 18, 21, 31).half()
    g = blobs(7, 18, 21, 32) > 0
    cases = [(C.LOGIT_GT_0_4, C.LOGIT_GT_HALF), (C.LOGIT_GT_0_4,), ()]
    want = [Fn.frame_histograms(x.float(), g, ex) for ex in cases]  # float32 path, default chunks
    monkeypatch.setattr(Fn, "_CHUNK", chunk)
    for ex, w in zip(cases, want):
        got = Fn.frame_histograms(x, g, ex)
        assert got.shape == (7, 1 << len(ex), 2, 256) and int(got.sum()) == 7 * 18 * 21
        assert torch.equal(got, w)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_check_finite_flags_nan_and_inf(dtype) -> None:
    """check_finite=True raises on NaN / ±inf (free on the float16 table path) and changes nothing
    for finite logits; without it NaN counts in bucket 0 (passes no threshold), as officially."""
    x = CASES["soft"](3, 16, 16, 41).to(dtype)
    g = blobs(3, 16, 16, 42) > 0
    ex = (C.LOGIT_GT_0_4,)
    assert torch.equal(Fn.frame_histograms(x, g, ex, check_finite=True), Fn.frame_histograms(x, g, ex))
    for value in (float("nan"), float("inf"), float("-inf")):
        y = x.clone()
        y[2, 3, 4] = value
        with pytest.raises(Fn.NonFiniteLogits, match="NaN or ±inf"):
            Fn.frame_histograms(y, g, ex, check_finite=True)
    y = x.clone()
    y[1, 0, 0] = float("nan")
    h = Fn.frame_histograms(y, g, ex)
    moved = h - Fn.frame_histograms(x, g, ex)
    assert int(moved[1].abs().sum()) == 2 and int(moved[1, 0, int(g[1, 0, 0]), 0]) == 1


def test_batched_reference_mask_iou_equals_loop() -> None:
    x = CASES["soft"](9, 16, 16, 27)
    g = blobs(9, 16, 16, 28)
    g[0] = 0
    assert R.mask_iou_batched(x, g).item() == R.mask_iou(x, g).item()


def test_exact_equality_on_binary_gt() -> None:
    """Not just within 2 ulp: identical float32 results (same operation order)."""
    x = CASES["soft"](12, 32, 32, 3)
    g = blobs(12, 32, 32, 4)
    assert Fn.avs_fscore(x, g) == R.eval_fmeasure(x, g)
    assert Fn.avs_miou(x, g) == R.mask_iou(x, g).item()


@pytest.mark.parametrize("n", [1, 2, 3, 8, 13, 40])
def test_frame_counts_n_1_to_40(n: int) -> None:
    x = CASES["soft"](n, 16, 12, 50 + n)
    g = blobs(n, 16, 12, 60 + n)
    assert_close(Fn.avs_fscore(x, g), R.eval_fmeasure(x, g))
    assert_close(Fn.avs_miou(x, g), R.mask_iou(x, g).item())


def test_224_frames_and_chunking() -> None:
    """224x224 frames: several frames per fast-path chunk."""
    x = CASES["soft"](3, 224, 224, 9)
    g = blobs(3, 224, 224, 10)
    tp, pp = Fn.pr_curve_counts(x, g)
    rtp, rpp = reference_counts(x, g)
    assert torch.equal(tp.float(), rtp) and torch.equal(pp.float(), rpp)
    assert_close(Fn.avs_fscore(x, g), R.eval_fmeasure(x, g))
    assert_close(Fn.avs_miou(x, g), R.mask_iou(x, g).item())


def test_720p_frame() -> None:
    """720x1280: a frame is split over several chunks."""
    x = CASES["soft"](1, 720, 1280, 11) * 2
    g = blobs(1, 720, 1280, 12)
    tp, pp = Fn.pr_curve_counts(x, g)
    rtp, rpp = reference_counts(x, g)
    assert torch.equal(tp.float(), rtp) and torch.equal(pp.float(), rpp)
    curves = Fn.frame_f_curves(tp, pp, g.sum((1, 2)))
    assert_close(Fn.max_f(curves), R.eval_fmeasure(x, g))
    assert_close(Fn.avs_miou(x, g), R.mask_iou(x, g).item())


def test_720p_counts_against_bucketize() -> None:
    """Fast path on two 720p frames vs the exact binary-search buckets (fast independent check)."""
    x = CASES["saturated"](2, 720, 1280, 13) / 8
    g = blobs(2, 720, 1280, 14) > 0
    h_all, h_gt = Fn.pr_histograms(x, g)
    j = Fn.exact_buckets(x)
    for k in range(2):
        assert torch.equal(h_all[k], torch.bincount(j[k].reshape(-1), minlength=256))
        assert torch.equal(h_gt[k], torch.bincount(j[k][g[k]].reshape(-1), minlength=256))


def test_nan_logits_follow_the_official_rule() -> None:
    """sigmoid(NaN) >= thr is False for every threshold (NaN never counts as positive)."""
    x = CASES["soft"](3, 10, 10, 15)
    x[1, 2, 3] = float("nan")
    x[2] = float("nan")
    g = blobs(3, 10, 10, 16)
    g[1, 2, 3] = 1
    tp, pp = Fn.pr_curve_counts(x, g)
    rtp, rpp = reference_counts(x, g)
    assert torch.equal(tp.float(), rtp) and torch.equal(pp.float(), rpp)


def test_empty_cases() -> None:
    g = torch.zeros(4, 8, 8)
    x = torch.full((4, 8, 8), -1e4)
    assert Fn.avs_fscore(x, g) == R.eval_fmeasure(x, g) == 0.0  # no GT-positive frame
    assert Fn.avs_miou(x, g) == R.mask_iou(x, g).item() == pytest.approx(1.0, abs=1e-6)
    assert Fn.avs_miou(-x, g) == R.mask_iou(-x, g).item() == 0.0
    # all-background prediction on a positive frame still has F > 0 (threshold 0 counts everything)
    g[0, :2] = 1
    f = Fn.avs_fscore(x, g)
    p = 16 / 64
    assert f == R.eval_fmeasure(x, g)
    assert f == pytest.approx(1.3 * p / (0.3 * p + 1), rel=1e-6)


def test_union_of_one_pixel_uses_eps() -> None:
    """U = 1: 1 + 1e-7 rounds to 1 + 2**-23 in float32, so IoU is just below 1 — as officially."""
    g = torch.zeros(1, 4, 4)
    g[0, 1, 1] = 1
    x = torch.where(g > 0, 5.0, -5.0)
    assert Fn.avs_miou(x, g) == R.mask_iou(x, g).item() < 1.0


def test_soft_ground_truth_within_two_ulps() -> None:
    """MS3 grey levels (index/255) pass through: tp sums are fractional."""
    g = torch.randint(0, 4, (5, 20, 20), generator=torch.Generator().manual_seed(17)).float() * (85 / 255)
    g[0] = 0
    x = CASES["soft"](5, 20, 20, 18)
    assert_close(Fn.avs_fscore(x, g), R.eval_fmeasure(x, g))
    assert_close(Fn.avs_miou(x, g), R.mask_iou(x, g).item())


def test_input_forms_and_dtypes() -> None:
    x = CASES["soft"](3, 12, 12, 19)
    g = blobs(3, 12, 12, 20)
    ref = Fn.avs_fscore(x, g)
    assert Fn.avs_fscore(x.unsqueeze(1), g.unsqueeze(1)) == ref  # Ref-AVS [N,1,H,W]
    assert Fn.avs_fscore(x, g.bool()) == ref
    assert Fn.avs_fscore(x.double(), g) == ref  # float64 rounds to the same float32 here
    assert Fn.avs_fscore(x[0], g[0]) == Fn.avs_fscore(x[:1], g[:1])
    with pytest.raises(TypeError):
        Fn.avs_fscore(x.long(), g)
    with pytest.raises(ValueError):
        Fn.avs_fscore(x, g[:2])


# ---------------------------------------------------------------------------------------------
# AVSS
# ---------------------------------------------------------------------------------------------
def avss_case(n: int, seed: int, classes: tuple[int, ...] = (0, 3, 17, 70)):
    g = torch.Generator().manual_seed(seed)
    cls = torch.tensor(classes)
    gt = cls[torch.randint(0, len(classes), (n, 16, 16), generator=g)]
    logits = torch.randn(n, 71, 16, 16, generator=g)
    logits[:, list(classes)] += 2.0
    return logits, gt


def test_avss_call_matches_reference() -> None:
    logits, gt = avss_case(8, 21)
    ref = R.calc_color_miou_fscore(logits, gt)
    state = Fn.avss_accumulate(logits, gt)
    assert torch.equal(state.iou_sum, ref[0])
    assert torch.equal(state.f_sum, ref[1])
    assert torch.equal(state.count, ref[2])


def test_avss_finalize_divides_by_71_and_drops_index_70() -> None:
    labels = torch.zeros(2, 4, 4, dtype=torch.long)
    labels[:, :2] = 5
    gt = labels.clone()
    state = Fn.avss_accumulate(labels, gt)
    out = Fn.avss_finalize(state)
    assert out["mIoU"] == pytest.approx(2 / 71, rel=1e-6)  # classes 0 and 5 perfect, 69 unseen -> 0
    assert out["mIoU_noBg"] == pytest.approx(2 / 70, rel=1e-6)
    # class 70 perfect instead of 5: noBg drops it
    labels[:, :2] = 70
    out = Fn.avss_finalize(Fn.avss_accumulate(labels, labels.clone()))
    assert out["mIoU_noBg"] == pytest.approx(1 / 70, rel=1e-6)
    ref = R.avss_test([labels], [labels.clone()])
    assert out == pytest.approx(ref, abs=0)


def test_avss_softmax_ties_go_to_lowest_index() -> None:
    logits = torch.zeros(1, 71, 2, 2)
    logits[0, 9] = 1.0
    logits[0, 4] = 1.0  # tie between 4 and 9
    assert torch.equal(Fn.avss_class_map(logits), torch.full((1, 2, 2), 4))
    # logits that differ below float32 softmax resolution tie as well: exp(-1e-8) rounds to 1
    logits = torch.full((1, 71, 1, 1), -10.0)
    logits[0, 12] = 0.0
    logits[0, 30] = 1e-8
    assert torch.argmax(logits, 1).item() == 30
    assert Fn.avss_class_map(logits).item() == 12
    assert torch.argmax(torch.softmax(logits, 1), 1).item() == 12


@pytest.mark.parametrize("seed", [0, 1])
def test_avss_labels_equal_full_softmax_on_near_ties(seed: int) -> None:
    """The argmax fast path re-runs the softmax on near-tie pixels only; on logits full of
    near-ties (gaps of 0 to 1e-2) its labels must equal the whole-frame softmax's, bit for bit."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 71, 224, 224, generator=g) * torch.tensor([3.0, 0.05, 0.01]).view(3, 1, 1, 1)
    top = x.argmax(1, keepdim=True)  # small logits: gaps of 1e-8 are representable there
    other = torch.randint(0, 71, top.shape, generator=g)
    gaps = torch.tensor([0.0, 1e-8, 3e-8, 6e-8, 1.2e-7, 2.4e-7, 1e-6, 1e-4, 9e-3, 2e-2])
    gap = gaps[torch.randint(0, len(gaps), top.shape, generator=g)]
    x.scatter_(1, other, x.gather(1, top) - gap)
    x[0, :, :8, :8] = 4.0  # exact ties over all 71 classes
    official = torch.argmax(torch.softmax(x, dim=1), dim=1)
    assert not torch.equal(official, x.argmax(1))  # the case matters: plain argmax differs
    assert torch.equal(Fn.avss_class_map(x), official)


# ---------------------------------------------------------------------------------------------
# DAVIS
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("h,w", [(224, 224), (90, 160), (720, 1280)])
def test_davis_matches_numpy_opencv(h: int, w: int) -> None:
    n = 2 if h < 500 else 1
    gt = blobs(n, h, w, 31)
    pred_mask = blobs(n, h, w, 32)
    x = torch.where(pred_mask > 0, 3.0, -3.0)
    j = [R.davis_region_j(pred_mask[k].numpy(), gt[k].numpy()) for k in range(n)]
    f = [R.davis_boundary_f(pred_mask[k].numpy(), gt[k].numpy()) for k in range(n)]
    assert torch.allclose(Fn.davis_j_frames(x, gt), torch.tensor(j, dtype=torch.float64), rtol=0, atol=1e-12)
    assert torch.allclose(Fn.davis_boundary_f_frames(x, gt), torch.tensor(f, dtype=torch.float64), rtol=0, atol=1e-12)


def test_davis_empty_rules() -> None:
    z = torch.zeros(1, 30, 30)
    assert Fn.davis_j(z - 5, z) == 1.0 and Fn.davis_boundary_f(z - 5, z) == 1.0
    one = z.clone()
    one[0, 10:20, 10:20] = 1
    assert Fn.davis_boundary_f(z - 5, one) == 0.0 and Fn.davis_j(z - 5, one) == 0.0
    assert math.isclose(Fn.davis_boundary_f(torch.where(one > 0, 5.0, -5.0), one), 1.0)


def test_device_generic_path(monkeypatch) -> None:
    """The pure-torch path used for GPU tensors (forced here on CPU) gives the same results."""
    x = CASES["boundary"](5, 20, 20, 41)
    x[0, 0, 0] = float("nan")
    g = blobs(5, 20, 20, 42)
    soft = g * 0.5
    expected = (Fn.avs_fscore(x, g), Fn.avs_miou(x, g), Fn.refavs_j(x, g), Fn.refavs_s(x),
                Fn.pr_curve_counts(x, g), Fn.pr_curve_counts(x, soft), Fn.avs_fscore(x.half(), g))
    monkeypatch.setattr(Fn, "FORCE_TORCH_PATH", True)
    got = (Fn.avs_fscore(x, g), Fn.avs_miou(x, g), Fn.refavs_j(x, g), Fn.refavs_s(x),
           Fn.pr_curve_counts(x, g), Fn.pr_curve_counts(x, soft), Fn.avs_fscore(x.half(), g))
    for a, b in zip(expected, got):
        if isinstance(a, tuple):
            assert all(torch.equal(u, v) for u, v in zip(a, b))
        else:
            assert a == b


def test_max_f_per_sample_equals_max_f_bit_for_bit() -> None:
    rng = np.random.default_rng(8)
    lengths = [10, 1, 7, 10, 3, 10]
    curves = rng.random((sum(lengths), 255)).astype(np.float32) * np.float32(0.9)  # rounding-sensitive sums
    positive = rng.random(sum(lengths)) < 0.7
    positive[10] = False  # the 1-frame sample has no GT-positive frame: NaN
    positive[11:18] = [False, True, False, False, True, False, True]
    got = Fn.max_f_per_sample(torch.from_numpy(curves), torch.from_numpy(positive), lengths)
    starts = np.cumsum([0] + lengths[:-1])
    for value, a, n in zip(got, starts, lengths):
        c, p = curves[a:a + n], positive[a:a + n]
        if p.any():
            assert value == Fn.max_f(c[p])
        else:
            assert math.isnan(value)
    assert Fn.max_f_per_sample(torch.zeros(0, 255), torch.zeros(0, dtype=torch.bool), []) == []
