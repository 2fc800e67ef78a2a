"""SAM2's multi-step mask loss and AuralSAM2's AudioCon.

``sigmoid_focal_loss`` / ``dice_loss`` / ``multistep_mask_loss`` / ``info_nce`` follow SAM2's
``MultiStepMultiMasksAndIous`` (focal x20, dice x1, IoU-prediction L1 x1, object-score BCE x1;
only the candidate with the lowest 20*focal + dice gets mask losses; the mask, dice and IoU terms
are zero on frames whose GT is empty; sums over frames, divided by the number of clips = objects).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def sigmoid_focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.25,
                       gamma: float = 2.0) -> torch.Tensor:
    """Per-mask focal loss, mean over pixels: ``[..., H, W] -> [...]``."""
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = prob * target + (1 - prob) * (1 - target)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * target + (1 - alpha) * (1 - target)) * loss
    return loss.flatten(-2).mean(-1)


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-mask dice loss (smoothed by 1, as SAM2): ``[..., H, W] -> [...]``."""
    prob = logits.sigmoid().flatten(-2)
    target = target.flatten(-2)
    return 1 - (2 * (prob * target).sum(-1) + 1) / (prob.sum(-1) + target.sum(-1) + 1)


@dataclass(frozen=True)
class MultiStepWeights:
    focal: float = 20.0
    dice: float = 1.0
    iou: float = 1.0
    object_score: float = 1.0
    supervise_all_iou: bool = True


def multistep_mask_loss(multimask_logits: torch.Tensor, ious: torch.Tensor, object_scores: torch.Tensor,
                        target: torch.Tensor, frame_weight: torch.Tensor,
                        w: MultiStepWeights = MultiStepWeights()) -> dict[str, torch.Tensor]:
    """SAM2's loss for one step per frame.

    ``multimask_logits`` [N, M, H, W] at the target's resolution, ``ious`` [N, M] predicted IoUs,
    ``object_scores`` [N], ``target`` [N, H, W] binary, ``frame_weight`` [N] (1 = supervised frame,
    0 = ignored). Returns the weighted components (``focal``, ``dice``, ``iou``, ``object_score``)
    and ``total``, summed over frames and divided by ``num_clips`` via ``frame_weight``.
    """
    tgt = target[:, None].expand_as(multimask_logits)
    focal = sigmoid_focal_loss(multimask_logits, tgt)  # [N, M]
    dice = dice_loss(multimask_logits, tgt)
    with torch.no_grad():
        pred = multimask_logits > 0
        inter = (pred & (tgt > 0.5)).flatten(-2).sum(-1).float()
        union = (pred | (tgt > 0.5)).flatten(-2).sum(-1).float()
        actual_iou = inter / union.clamp(min=1.0)
    iou_l1 = (ious.float() - actual_iou).abs()
    best = (w.focal * focal + w.dice * dice).argmin(dim=1)
    rows = torch.arange(focal.shape[0], device=focal.device)
    has_obj = (target.flatten(1) > 0.5).any(dim=1).float()
    iou_term = iou_l1.mean(1) if w.supervise_all_iou else iou_l1[rows, best]
    obj_term = F.binary_cross_entropy_with_logits(object_scores.float(), has_obj, reduction="none")
    fw = frame_weight.float()
    parts = {
        "focal": (focal[rows, best] * has_obj * fw).sum(),
        "dice": (dice[rows, best] * has_obj * fw).sum(),
        "iou": (iou_term * has_obj * fw).sum(),
        "object_score": (obj_term * fw).sum(),
    }
    out = {"focal": w.focal * parts["focal"], "dice": w.dice * parts["dice"],
           "iou": w.iou * parts["iou"], "object_score": w.object_score * parts["object_score"]}
    out["total"] = sum(out.values())
    return out


def info_nce(anchor: torch.Tensor, samples: torch.Tensor, positive: torch.Tensor,
             temperature: float) -> torch.Tensor:
    """Multi-positive InfoNCE of one anchor [P] against samples [S, P] (L2-normalised):
    -mean over positives of log(exp(a.s_p / tau) / sum_s exp(a.s / tau))."""
    logits = samples @ anchor / temperature
    log_prob = logits - torch.logsumexp(logits, dim=0)
    return -(log_prob[positive]).mean()


@dataclass(frozen=True)
class AudioConConfig:
    temperature: float = 0.1
    hard: int = 64  # per class and frame
    easy: int = 64
    max_samples: int = 15240  # cap over the whole batch


def _pick(idx: torch.Tensor, n: int, gen: torch.Generator | None) -> torch.Tensor:
    if idx.numel() <= n:
        return idx
    return idx[torch.randperm(idx.numel(), generator=gen, device="cpu")[:n].to(idx.device)]


def sample_pixels(label: torch.Tensor, pred: torch.Tensor, cfg: AudioConConfig,
                  gen: torch.Generator | None = None) -> torch.Tensor:
    """Indices of sampled pixels of one map: per class (fg, bg) up to ``hard`` wrongly predicted
    and ``easy`` rightly predicted pixels; a short side is filled from the other (ContrastiveSeg)."""
    chosen = []
    for cls in (True, False):
        of_cls = label == cls
        hard = (of_cls & (pred != cls)).nonzero().flatten()
        easy = (of_cls & (pred == cls)).nonzero().flatten()
        n_hard = min(hard.numel(), cfg.hard)
        n_easy = min(easy.numel(), cfg.easy + (cfg.hard - n_hard))
        n_hard = min(hard.numel(), n_hard + (cfg.easy - min(easy.numel(), cfg.easy)))
        chosen += [_pick(hard, n_hard, gen), _pick(easy, n_easy, gen)]
    return torch.cat(chosen)


def audiocon_loss(visual: list[torch.Tensor], audio: list[torch.Tensor], target: torch.Tensor,
                  pred_logits: torch.Tensor, frame_weight: torch.Tensor, cfg: AudioConConfig,
                  gen: torch.Generator | None = None) -> torch.Tensor:
    """Audio-anchored pixel InfoNCE, averaged over (level, clip, frame) with a non-empty GT.

    ``visual[i]`` [B, T, P, g, g] and ``audio[i]`` [B, T, P] (L2-normalised) per pyramid level;
    ``target`` / ``pred_logits`` [B, T, H, W] are brought to g x g (nearest / bilinear). The audio
    embedding of frame t is the anchor; its positives are the sampled foreground pixels of frame t,
    the sampled background pixels are its negatives. Visual-visual pairs are never contrasted.
    """
    terms = []
    budget = cfg.max_samples
    for vis, aud in zip(visual, audio):
        b, t, p, g_h, g_w = vis.shape
        lab = F.interpolate(target.float().flatten(0, 1)[:, None], size=(g_h, g_w), mode="nearest")
        prd = F.interpolate(pred_logits.detach().float().flatten(0, 1)[:, None], size=(g_h, g_w),
                            mode="bilinear", align_corners=False)
        lab, prd = (lab[:, 0] > 0.5).view(b, t, -1), (prd[:, 0] > 0).view(b, t, -1)
        flat = vis.flatten(3)  # [B, T, P, g*g]
        for i in range(b):
            for j in range(t):
                if frame_weight[i, j] <= 0 or not lab[i, j].any() or budget <= 0:
                    continue
                idx = sample_pixels(lab[i, j], prd[i, j], cfg, gen)[:budget]
                budget -= idx.numel()
                pos = lab[i, j][idx]
                if not pos.any():
                    continue
                terms.append(info_nce(aud[i, j].float(), flat[i, j][:, idx].t().float(), pos,
                                      cfg.temperature))
    if not terms:
        return visual[0].sum() * 0.0
    return torch.stack(terms).mean()
