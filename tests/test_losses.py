"""Mask losses: tiny hand-computed values, and agreement with SAM2's own training loss functions
(``training.loss_fns`` from the sam2 wheel, imported here only) on random inputs."""

from __future__ import annotations

import math
import sys
import types

import pytest
import torch

from baselines.common.losses import (dice_loss, info_nce, info_nce_logits, iou_prediction_loss, mask_iou,
                                     multistep_mask_loss, object_score_loss, sigmoid_focal_loss)
from avsbench_kit.errors import ConfigError

LN2 = math.log(2.0)


@pytest.fixture(scope="module")
def sam2_losses():
    """SAM2's ``training.loss_fns``; its ``training.trainer`` import (hydra, tensordict...) is only
    needed for one constant, so a stand-in module provides it."""
    import sam2  # noqa: F401  (a runtime dependency: an ImportError must fail, not skip)
    if "training.trainer" not in sys.modules:
        stub = types.ModuleType("training.trainer")
        stub.CORE_LOSS_KEY = "core_loss"
        sys.modules["training.trainer"] = stub
    import training.loss_fns as loss_fns
    return loss_fns


# ----------------------------------------------------------------------------------- hand values


def test_dice_by_hand():
    logits = torch.zeros(1, 2, 2)  # p = 0.5 everywhere
    target = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    # 1 - (2 * 0.5 + 1) / (2 + 1 + 1) = 0.5
    assert dice_loss(logits, target).item() == pytest.approx(0.5)
    big = torch.full((1, 2, 2), 50.0)  # p = 1 everywhere, target all ones: (2*4+1)/(4+4+1) = 1
    assert dice_loss(big, torch.ones(1, 2, 2)).item() == pytest.approx(0.0, abs=1e-6)
    two = torch.stack([logits[0], big[0]])
    per = dice_loss(two, torch.stack([target[0], torch.ones(2, 2)]), reduction="none")
    assert per.tolist() == pytest.approx([0.5, 0.0], abs=1e-6)
    # the normaliser: sum over masks / num_objects
    assert dice_loss(two, torch.stack([target[0], torch.ones(2, 2)]), num_objects=1).item() == pytest.approx(0.5)


def test_focal_by_hand():
    logits = torch.zeros(1, 1, 2)  # p = 0.5: ce = ln 2, (1 - p_t)^2 = 0.25
    target = torch.tensor([[[1.0, 0.0]]])
    pos, neg = 0.25 * 0.25 * LN2, 0.75 * 0.25 * LN2  # alpha_t = 0.25 for positives, 0.75 for negatives
    assert sigmoid_focal_loss(logits, target).item() == pytest.approx((pos + neg) / 2)
    assert sigmoid_focal_loss(logits, target, alpha=-1, gamma=0).item() == pytest.approx(LN2)  # = BCE
    easy = torch.tensor([[[6.0]]])
    assert sigmoid_focal_loss(easy, torch.ones(1, 1, 1)).item() < 1e-6  # well classified: ~0


def test_iou_prediction_and_object_score_by_hand():
    logits = torch.tensor([[[[1.0, -1.0], [1.0, -1.0]]]])  # predicts the left column
    target = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])  # the top row: IoU = 1/3
    assert mask_iou(logits, target).item() == pytest.approx(1 / 3)
    pred = torch.tensor([[0.5]])
    assert iou_prediction_loss(pred, logits, target).item() == pytest.approx((0.5 - 1 / 3) ** 2)
    assert iou_prediction_loss(pred, logits, target, l1=True).item() == pytest.approx(1 / 6)
    assert mask_iou(torch.full((1, 2, 2), -1.0), torch.zeros(1, 2, 2)).item() == 0.0  # empty vs empty
    scores = torch.tensor([[0.0], [0.0]])
    gts = torch.stack([torch.ones(2, 2), torch.zeros(2, 2)])
    assert object_score_loss(scores, gts).item() == pytest.approx(LN2)
    assert object_score_loss(torch.tensor([[5.0], [-5.0]]), gts).item() < 0.01


def test_multistep_picks_the_best_candidate_and_skips_empty_gt():
    target = torch.tensor([[[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])  # second mask: empty GT
    good = torch.tensor([[10.0, -10.0], [-10.0, -10.0]])
    bad = -good
    logits = torch.stack([torch.stack([bad, good]), torch.stack([good, bad])])  # [2 masks, 2 candidates]
    ious = torch.tensor([[0.2, 1.0], [0.5, 0.5]])
    scores = torch.tensor([[3.0], [-3.0]])
    out = multistep_mask_loss(logits, ious, scores, target)
    # mask 0: candidate 1 matches exactly (IoU 1, predicted 1); mask 1: GT empty, only the class term
    assert out["focal"].item() < 1e-6 and out["dice"].item() < 1e-4 and out["iou"].item() == 0.0
    cls = math.log1p(math.exp(-3.0))  # BCE of logit 3 on "present" = BCE of -3 on "absent"
    assert out["class"].item() == pytest.approx(cls, rel=1e-5)
    assert out["total"].item() == pytest.approx(20 * out["focal"].item() + out["dice"].item() + cls, rel=1e-5)
    # with supervise_all_iou the bad candidate's IoU error (0.2 vs 0: 0.2 under L1) is averaged in
    all_iou = multistep_mask_loss(logits, ious, scores, target, supervise_all_iou=True)
    assert all_iou["iou"].item() == pytest.approx((0.2 + 0.0) / 2 / 2)  # mean over M, then / 2 masks
    # without object scores empty GT is trained as an empty mask and there is no class term
    plain = multistep_mask_loss(logits, ious, None, target)
    assert plain["class"].item() == 0.0 and plain["iou"].item() == pytest.approx(0.5 / 2)
    with pytest.raises(ConfigError, match="unknown term"):
        multistep_mask_loss(logits, ious, scores, target, weights={"mask": 1.0})


def test_info_nce_by_hand():
    anchors = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # in-batch: similarities [[1, 0], [0, 1]] / tau; loss = log(1 + e^{-1/tau})
    assert info_nce(anchors, anchors.clone(), tau=1.0).item() == pytest.approx(math.log(1 + math.exp(-1)))
    negs = torch.tensor([[-1.0, 0.0]])  # shared negative: cos = -1 for anchor 0, 0 for anchor 1
    want = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1))) / 2
    assert info_nce(anchors, anchors, negs, tau=1.0).item() == pytest.approx(want)
    per = negs.expand(2, 1, 2)
    assert info_nce(anchors, anchors, per, tau=1.0).item() == pytest.approx(want)
    sim = torch.tensor([[2.0, 1.0, 0.0]])
    two_pos = torch.tensor([[True, True, False]])
    expected = -math.log((math.exp(2) + math.exp(1)) / (math.exp(2) + math.exp(1) + 1))
    assert info_nce_logits(sim, two_pos, tau=1.0).item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="no positive"):
        info_nce_logits(sim, torch.zeros(1, 3, dtype=torch.bool))


# ---------------------------------------------------------------------------- against SAM2's code


def _random(n=4, m=3, h=12, w=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, m, h, w, generator=g) * 3
    target = (torch.rand(n, h, w, generator=g) > 0.6).float()
    target[1] = 0  # one empty GT
    ious = torch.rand(n, m, generator=g)
    scores = torch.randn(n, 1, generator=g)
    return logits, target, ious, scores


def test_elementwise_losses_match_sam2(sam2_losses):
    L = sam2_losses
    logits, target, ious, scores = _random()
    tgt = target.unsqueeze(1).expand_as(logits)
    for n_obj in (4.0, 1.0):
        torch.testing.assert_close(dice_loss(logits, tgt, num_objects=n_obj, reduction="none"),
                                   L.dice_loss(logits, tgt, n_obj, loss_on_multimask=True))
        torch.testing.assert_close(dice_loss(logits[:, 0], target, num_objects=n_obj),
                                   L.dice_loss(logits[:, 0], target.flatten(1), n_obj))
        torch.testing.assert_close(sigmoid_focal_loss(logits, tgt, num_objects=n_obj, reduction="none"),
                                   L.sigmoid_focal_loss(logits, tgt, n_obj, loss_on_multimask=True))
        for l1 in (False, True):
            torch.testing.assert_close(iou_prediction_loss(ious, logits, tgt, l1=l1, num_objects=n_obj, reduction="none"),
                                       L.iou_loss(logits, tgt, ious, n_obj, loss_on_multimask=True, use_l1_loss=l1))
        present = (target.flatten(1) > 0).any(-1, keepdim=True).float()
        torch.testing.assert_close(object_score_loss(scores, target, num_objects=n_obj),
                                   L.sigmoid_focal_loss(scores, present, n_obj, alpha=-1, gamma=0.0))


@pytest.mark.parametrize("supervise_all_iou", [False, True])
@pytest.mark.parametrize("iou_l1", [False, True])
@pytest.mark.parametrize("obj_scores", [True, False])
def test_multistep_matches_sam2(sam2_losses, supervise_all_iou, iou_l1, obj_scores):
    """SAM2 sums over frames with num_objects = objects per frame: one call per frame here, added."""
    weights = {"loss_mask": 20, "loss_dice": 1, "loss_iou": 1, "loss_class": 1}
    ref = sam2_losses.MultiStepMultiMasksAndIous(dict(weights), supervise_all_iou=supervise_all_iou,
                                                 iou_use_l1_loss=iou_l1, pred_obj_scores=obj_scores,
                                                 focal_gamma_obj_score=0.0, focal_alpha_obj_score=-1)
    frames = [_random(n=3, m=3, seed=s) for s in range(3)]
    outs = [{"multistep_pred_multimasks_high_res": [lg], "multistep_pred_ious": [io],
             "multistep_object_score_logits": [sc]} for lg, _, io, sc in frames]
    want = ref(outs, torch.stack([t for _, t, _, _ in frames]))
    got = {k: 0.0 for k in ("focal", "dice", "iou", "class", "total")}
    for lg, t, io, sc in frames:
        one = multistep_mask_loss(lg, io, sc if obj_scores else None, t, supervise_all_iou=supervise_all_iou,
                                  iou_l1=iou_l1, num_objects=3)
        got = {k: got[k] + one[k] for k in got}
    for ours, theirs in (("focal", "loss_mask"), ("dice", "loss_dice"), ("iou", "loss_iou"), ("class", "loss_class"),
                         ("total", "core_loss")):
        torch.testing.assert_close(torch.as_tensor(got[ours]), torch.as_tensor(want[theirs]).float(), msg=ours)
    assert got["focal"] > 0 and got["dice"] > 0


def test_multistep_gradients_reach_only_the_best_candidate():
    logits, target, ious, scores = _random(n=2, m=3)
    logits.requires_grad_(True)
    ious.requires_grad_(True)
    out = multistep_mask_loss(logits, ious, scores, target)
    out["total"].backward()
    touched = (logits.grad.abs().flatten(2).sum(-1) > 0)  # [N, M]
    assert touched[0].sum() == 1  # mask 0: only its best candidate gets mask gradients
    assert touched[1].sum() == 0  # mask 1: empty GT, mask terms zeroed
    assert (ious.grad[0] != 0).sum() == 1 and (ious.grad[1] == 0).all()


def test_masked_bce_dice_scores_the_selected_masks_and_keeps_the_graph_when_none() -> None:
    import torch.nn.functional as F

    from baselines.common.losses import masked_bce_dice

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, generator=g, requires_grad=True)
    target = (torch.rand(2, 3, 8, 8, generator=g) > 0.5).float()
    keep = torch.tensor([[True, False, True], [False, False, True]])
    expect = F.binary_cross_entropy_with_logits(logits[keep], target[keep]) + dice_loss(logits[keep], target[keep])
    assert torch.allclose(masked_bce_dice(logits, target, keep), expect)
    none = masked_bce_dice(logits, target, torch.zeros(2, 3, dtype=torch.bool))
    assert none.item() == 0.0
    none.backward()
    assert logits.grad is not None and not logits.grad.any()
