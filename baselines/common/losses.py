"""Segmentation losses the AVS papers share."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_iou_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """1 - Σσ·g / Σ(σ + g - σ·g) per frame, averaged over frames ([N,H,W] inputs).

    The SAMA-AVS / AV2T-SAM IoU loss: a differentiable IoU on sigmoid probabilities.
    """
    prob = torch.sigmoid(logits)
    inter = (prob * target).flatten(1).sum(1)
    union = (prob + target - prob * target).flatten(1).sum(1)
    return (1.0 - inter / (union + eps)).mean()


def bce_iou_loss(logits: torch.Tensor, target: torch.Tensor, bce_weight: float = 1.0,
                 iou_weight: float = 1.0) -> torch.Tensor:
    """BCE-with-logits (mean over pixels) + soft IoU, the AV2T-SAM objective (equal weights)."""
    bce = F.binary_cross_entropy_with_logits(logits, target)
    return bce_weight * bce + iou_weight * soft_iou_loss(logits, target)


# ------------------------------------------------------------------------ SAM2-style mask losses
# Shapes: masks are ``[..., H, W]`` (the leading axes index masks: frames, objects, candidates);
# each loss is computed per mask, summed, and divided by ``num_objects`` -- SAM2's normaliser.
# ``num_objects=None`` means the number of masks, i.e. a plain mean over masks. SAM2 itself
# divides by the objects per frame and *sums* over frames: pass ``num_objects`` to match that.


def _reduce(per_mask: torch.Tensor, num_objects: float | None, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return per_mask if num_objects is None else per_mask / num_objects
    if reduction != "mean":
        raise ValueError(f"reduction={reduction!r}: use 'mean' or 'none'")
    n = float(per_mask.numel()) if num_objects is None else float(num_objects)
    return per_mask.sum() / max(n, 1.0)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, *, smooth: float = 1.0,
              num_objects: float | None = None, reduction: str = "mean") -> torch.Tensor:
    """SAM2's Dice loss on sigmoid probabilities, per mask: 1 - (2Σp·g + s) / (Σp + Σg + s), sums
    over the last two (H, W) axes, ``s = 1``; then Σ over masks / ``num_objects`` (default: the
    number of masks). ``reduction="none"`` keeps the per-mask values (divided by ``num_objects`` if given).
    """
    prob = torch.sigmoid(logits).flatten(-2)
    target = target.to(prob.dtype).flatten(-2)
    per_mask = 1.0 - (2.0 * (prob * target).sum(-1) + smooth) / (prob.sum(-1) + target.sum(-1) + smooth)
    return _reduce(per_mask, num_objects, reduction)


def masked_bce_dice(logits: torch.Tensor, target: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """BCE + Dice over the masks ``keep`` selects (``logits``/``target`` ``[..., H, W]``, ``keep``
    their leading shape); a zero that keeps the graph when ``keep`` selects none."""
    if not keep.any():
        return logits.sum() * 0.0
    x, y = logits[keep], target[keep]
    return F.binary_cross_entropy_with_logits(x, y) + dice_loss(x, y)


def sigmoid_focal_loss(logits: torch.Tensor, target: torch.Tensor, *, alpha: float = 0.25, gamma: float = 2.0,
                       num_objects: float | None = None, reduction: str = "mean") -> torch.Tensor:
    """Focal loss (RetinaNet; SAM2 uses alpha 0.25, gamma 2) averaged over the pixels of each mask
    (the last two axes), then Σ over masks / ``num_objects``. ``alpha < 0`` switches the class
    weighting off; ``gamma = 0, alpha < 0`` is plain BCE."""
    target = target.to(logits.dtype)
    return _reduce(_focal_map(logits, target, alpha, gamma).flatten(-2).mean(-1), num_objects, reduction)


def _focal_map(logits: torch.Tensor, target: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    prob = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = prob * target + (1 - prob) * (1 - target)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * target + (1 - alpha) * (1 - target)) * loss
    return loss


def mask_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of each binarised mask (logit > 0) with its target (> 0), ``[..., H, W]`` -> ``[...]``.
    Two empty masks give 0 (SAM2 clamps the union to at least one pixel)."""
    pred, gt = logits.flatten(-2) > 0, target.flatten(-2) > 0
    inter = (pred & gt).sum(-1).float()
    union = (pred | gt).sum(-1).float()
    return inter / union.clamp(min=1.0)


def iou_prediction_loss(pred_ious: torch.Tensor, logits: torch.Tensor, target: torch.Tensor, *, l1: bool = False,
                        num_objects: float | None = None, reduction: str = "mean") -> torch.Tensor:
    """L1 (``l1=True``) or squared error between each candidate's predicted IoU ``[...]`` and the
    actual IoU of its binarised mask ``[..., H, W]`` with ``target`` (broadcast, e.g. ``[N, 1, H, W]``
    against ``[N, M, H, W]``); no gradient flows into the masks."""
    actual = mask_iou(logits.detach(), target.expand_as(logits)).to(pred_ious.dtype)
    err = (pred_ious - actual).abs() if l1 else (pred_ious - actual) ** 2
    return _reduce(err, num_objects, reduction)


def object_score_loss(object_score_logits: torch.Tensor, target: torch.Tensor, *,
                      num_objects: float | None = None, reduction: str = "mean") -> torch.Tensor:
    """BCE of object-score logits ``[N]`` or ``[N, 1]`` against "the GT mask ``[N, H, W]`` is not
    empty" (SAM2: focal with gamma 0 and no alpha, i.e. BCE), Σ / ``num_objects``."""
    logits = object_score_logits.reshape(target.shape[0])
    present = (target.flatten(1) > 0).any(-1).to(logits.dtype)
    per = F.binary_cross_entropy_with_logits(logits, present, reduction="none")
    return _reduce(per, num_objects, reduction)


MASK_LOSS_WEIGHTS = {"focal": 20.0, "dice": 1.0, "iou": 1.0, "class": 1.0}  # SAM2.1 training config


def multistep_mask_loss(multimask_logits: torch.Tensor, ious: torch.Tensor, object_score_logits: torch.Tensor | None,
                        target: torch.Tensor, weights: dict[str, float] | None = None, *,
                        supervise_all_iou: bool = False, iou_l1: bool = True, focal_alpha: float = 0.25,
                        focal_gamma: float = 2.0, num_objects: float | None = None) -> dict[str, torch.Tensor]:
    """SAM2's training loss for one prediction step: ``multimask_logits [N, M, H, W]`` (M candidates
    per mask), predicted ``ious [N, M]``, ``object_score_logits [N, 1]`` (or None), ``target [N, H, W]``.

    * focal and Dice of the candidate with the lowest ``w_focal·focal + w_dice·dice`` (only that one
      is trained, as in SAM/SAM2);
    * IoU prediction error of that candidate (``supervise_all_iou``: mean over all M);
    * object score BCE against "GT non-empty"; with object scores given, the mask and IoU terms of a
      mask whose GT is empty are zeroed (without them, as SAM2 with ``pred_obj_scores=False``, empty
      GT is trained as an empty mask and there is no class term).

    Each term is Σ over masks / ``num_objects`` (default N: a mean). Several correction steps per
    frame, as SAM2 trains them: call once per step and add the dicts. ``iou_l1`` defaults to L1 as
    the SAM2.1 training config sets it. Returns ``{"focal", "dice", "iou", "class", "total"}``;
    ``total`` = Σ weight · term (defaults: :data:`MASK_LOSS_WEIGHTS`).
    """
    w = dict(MASK_LOSS_WEIGHTS)
    if weights:
        unknown = sorted(set(weights) - set(w))
        if unknown:
            from avsbench_kit.errors import ConfigError

            raise ConfigError(f"mask loss weights: unknown term(s) {unknown}", hint=f"use {sorted(w)}")
        w.update(weights)
    if multimask_logits.dim() != 4 or ious.shape != multimask_logits.shape[:2] or target.dim() != 3:
        raise ValueError(f"expected logits [N,M,H,W], ious [N,M], target [N,H,W]; got {list(multimask_logits.shape)}, "
                         f"{list(ious.shape)}, {list(target.shape)}")
    n = multimask_logits.shape[0]
    norm = float(n) if num_objects is None else float(num_objects)
    tgt = target.to(multimask_logits.dtype).unsqueeze(1).expand_as(multimask_logits)
    focal = sigmoid_focal_loss(multimask_logits, tgt, alpha=focal_alpha, gamma=focal_gamma, num_objects=norm,
                               reduction="none")  # [N, M]
    dice = dice_loss(multimask_logits, tgt, num_objects=norm, reduction="none")
    iou = iou_prediction_loss(ious, multimask_logits, tgt, l1=iou_l1, num_objects=norm, reduction="none")
    rows = torch.arange(n, device=multimask_logits.device)
    best = torch.argmin(focal * w["focal"] + dice * w["dice"], dim=-1)
    focal, dice = focal[rows, best], dice[rows, best]
    iou = iou.mean(-1) if supervise_all_iou else iou[rows, best]
    if object_score_logits is None:
        cls = multimask_logits.new_zeros(())
    else:
        present = (target.flatten(1) > 0).any(-1).to(focal.dtype)
        focal, dice, iou = focal * present, dice * present, iou * present
        cls = object_score_loss(object_score_logits, target, num_objects=norm)
    out = {"focal": focal.sum(), "dice": dice.sum(), "iou": iou.sum(), "class": cls}
    out["total"] = sum((w[k] * out[k] for k in ("focal", "dice", "iou", "class") if w[k] != 0),
                       multimask_logits.new_zeros(()))
    return out


# ------------------------------------------------------------------------------------- InfoNCE


def info_nce(anchors: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor | None = None, *,
             tau: float = 0.07, normalize: bool = True) -> torch.Tensor:
    """InfoNCE of ``anchors [N, D]`` against ``positives [N, D]`` (row i is anchor i's positive).

    Negatives: None = in-batch (the other rows' positives, CLIP-style, one direction); ``[K, D]``
    shared by every anchor; ``[N, K, D]`` per anchor (then only these, not the in-batch ones).
    Similarity = cosine (``normalize``) or dot product, divided by ``tau``. Mean over anchors.
    """
    if normalize:
        anchors, positives = F.normalize(anchors, dim=-1), F.normalize(positives, dim=-1)
        negatives = None if negatives is None else F.normalize(negatives, dim=-1)
    if negatives is None:
        sim = anchors @ positives.T  # [N, N], the diagonal is the positive
        return info_nce_logits(sim, torch.arange(len(anchors), device=anchors.device), tau=tau)
    pos = (anchors * positives).sum(-1, keepdim=True)  # [N, 1]
    if negatives.dim() == 2:
        neg = anchors @ negatives.T  # [N, K]
    elif negatives.dim() == 3 and negatives.shape[0] == anchors.shape[0]:
        neg = torch.einsum("nd,nkd->nk", anchors, negatives)
    else:
        raise ValueError(f"negatives must be [K, D] or [N, K, D]; got {list(negatives.shape)}")
    sim = torch.cat([pos, neg], dim=1)  # column 0 is the positive
    return info_nce_logits(sim, torch.zeros(len(sim), dtype=torch.long, device=sim.device), tau=tau)


def info_nce_logits(similarity: torch.Tensor, positive: torch.Tensor, *, tau: float = 0.07) -> torch.Tensor:
    """InfoNCE from a similarity matrix ``[N, C]`` and a bool mask ``[N, C]`` of positives (or
    ``[N]`` column indices): ``-log(Σ_pos e^{s/τ} / Σ_all e^{s/τ})`` per row, mean over rows.
    With one positive per row this is cross-entropy over the row. Every row needs a positive."""
    if positive.dim() == 1:
        positive = F.one_hot(positive.long(), similarity.shape[1]).bool()
    if positive.shape != similarity.shape:
        raise ValueError(f"positive mask {list(positive.shape)} does not match similarity {list(similarity.shape)}")
    if not bool(positive.any(-1).all()):
        raise ValueError("info_nce: a row has no positive")
    logits = similarity / tau
    pos = logits.masked_fill(~positive, float("-inf")).logsumexp(-1)
    return (logits.logsumexp(-1) - pos).mean()
