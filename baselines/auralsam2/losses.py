"""AuralSAM2's AudioCon: audio-anchored pixel InfoNCE with hard/easy sampling per pyramid level.

(SAM2's multi-step mask loss is ``baselines.common.losses.multistep_mask_loss``.)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from baselines.common.losses import info_nce_logits


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
                sim = flat[i, j][:, idx].t().float() @ aud[i, j].float()  # [S] cosine similarities
                # one row per positive p: -log(e^{s_p/tau} / sum_all e^{s/tau}), mean over positives
                onehot = F.one_hot(pos.nonzero().flatten(), sim.numel()).bool()
                terms.append(info_nce_logits(sim.expand(len(onehot), -1), onehot, tau=cfg.temperature))
    if not terms:
        return visual[0].sum() * 0.0
    return torch.stack(terms).mean()
