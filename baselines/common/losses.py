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
