"""The packaged float32 tables equal the spec's, and reproduce torch's own sigmoid decisions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avsbench_kit.metrics import constants as C
from avsbench_kit.metrics import functional as Fn

from official_reference import official_sigmoid, official_thresholds
from shared_data import shared_file



pytestmark = pytest.mark.usefixtures("one_torch_thread")


def ulp_window(value: float, n: int) -> torch.Tensor:
    """The 2n+1 consecutive float32 values centred on ``value``."""
    v = np.float32(value)
    bits = np.array([v], dtype=np.float32).view(np.int32)[0]
    if v >= 0:
        seq = np.arange(bits - n, bits + n + 1, dtype=np.int64)
        out = seq.astype(np.int32).view(np.float32)
    else:  # negative floats: larger bit patterns are more negative
        seq = np.arange(bits + n, bits - n - 1, -1, dtype=np.int64)
        out = seq.astype(np.int32).view(np.float32)
    return torch.from_numpy(np.sort(out.copy()))


def test_tables_match_spec_file() -> None:
    d = np.load(shared_file("spec/protocol_constants.npz"))
    assert np.array_equal(C.thresholds().numpy(), d["fmeasure_thresholds_f32"])
    assert np.array_equal(C.logit_boundaries().numpy(), d["fmeasure_logit_ge_boundary_f32"])
    assert C.AVSS_NUM_CLASSES == d["avss_palette_u8"].shape[0]


def test_thresholds_are_torch_linspace() -> None:
    assert torch.equal(C.thresholds(), official_thresholds())
    assert C.thresholds()[0].item() == 0.0 and C.thresholds()[-1].item() == 1.0


@pytest.mark.parametrize("i", list(range(1, 255)))
def test_logit_boundaries_reproduce_sigmoid_decisions(i: int) -> None:
    """sigmoid(x) >= thr[i]  <=>  x >= b[i], for 257 consecutive floats around each boundary."""
    b = Fn.logit_boundaries()
    thr = official_thresholds()
    w = ulp_window(b[i].item(), 128)
    assert torch.equal(official_sigmoid(w) >= thr[i], w >= b[i])


@pytest.mark.parametrize("cut,prob", [(C.LOGIT_GT_HALF, 0.5), (C.LOGIT_GT_0_4, 0.4)])
def test_decision_cutoffs(cut: float, prob: float) -> None:
    w = ulp_window(cut, 4096)
    assert torch.equal(official_sigmoid(w) > prob, w >= cut)
    # the spec's decimal for sigma > 0.5 is this float32 (one ulp above 1.5 * 2**-24)
    assert np.float32(8.94069742685133e-08) == np.float32(C.LOGIT_GT_HALF)
    assert np.float32(-0.4054650068283081) == np.float32(C.LOGIT_GT_0_4)


def test_random_logits_bucket_exactly() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400_000, generator=g) * 6
    j = Fn.exact_buckets(x)
    ref = torch.zeros_like(j)
    s = official_sigmoid(x)
    for i, t in enumerate(official_thresholds()):
        ref += s >= t
    assert torch.equal(j, ref)
