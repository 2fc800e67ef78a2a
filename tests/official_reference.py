"""A straightforward re-implementation of the official AVS metric code, written from
``shared/spec/official_protocols.md`` §5 (not copied from any repository).

It does what the official code does, the slow way: sigmoid inside, one pass per frame and per
threshold, torch float32 arithmetic in the order §5 gives, float32/float64 meters as in the
official test scripts. It is the oracle of the exactness tests and the "official" side of
``benchmarks/bench_metrics.py``, so it imports nothing from ``avsbench_kit`` (thresholds come from
``torch.linspace`` as in the official code, not from the toolkit's tables).

One deliberate detail: torch's CPU sigmoid is vectorised, but the last few elements of a loop
(the "tail") go through a scalar implementation that can differ by one ulp. The official calls
use tensors whose size is a multiple of the vector width (N·224·224, N·256·256), so the official
decisions are the vectorised ones; :func:`official_sigmoid` pads to a multiple of 64 elements so
that odd test shapes get the same (vectorised) decisions.
"""

from __future__ import annotations

import math

import numpy as np
import torch

BETA2 = 0.3
PR_NUM = 255


def official_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """torch.sigmoid in float32 on the vectorised path (see module docstring)."""
    x = x.to(torch.float32)
    flat = x.reshape(-1)
    pad = (-flat.numel()) % 64
    if pad:
        flat = torch.cat([flat, torch.zeros(pad, dtype=torch.float32)])
    return torch.sigmoid(flat)[: x.numel()].reshape(x.shape)


# ---------------------------------------------------------------------------------------------
# §5.1 AVSBench mask_iou (and Ref-AVS J with threshold 0.4)
# ---------------------------------------------------------------------------------------------
def mask_iou(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-7, prob_threshold: float = 0.5) -> torch.Tensor:
    """0-d float32 tensor: mean over frames of the per-frame IoU, empty-GT frames scored TN/(H·W)."""
    if pred.dim() == 4:  # Ref-AVS passes [N, 1, H, W]
        pred, target = pred[:, 0], target[:, 0]
    assert pred.dim() == 3 and pred.shape == target.shape
    n = pred.shape[0]
    num_pixels = pred.shape[-1] * pred.shape[-2]
    target = target.to(torch.float32)
    p = (official_sigmoid(pred) > prob_threshold).int()
    ious = []
    for k in range(n):
        t_k, p_k = target[k], p[k]
        if t_k.sum(1).sum(0) == 0:
            inter = ((1 - t_k) * (1 - p_k)).sum(1).sum(0)
            union = torch.tensor(float(num_pixels), dtype=torch.float32)
        else:
            inter = (p_k * t_k).sum(1).sum(0)
            union = torch.max(p_k, t_k).sum(1).sum(0)
        ious.append(inter / (union + eps))
    return torch.sum(torch.stack(ious)) / n


def mask_iou_batched(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-7, prob_threshold: float = 0.5) -> torch.Tensor:
    """§5.1 written as whole-call tensor expressions (how the official function runs: one sigmoid,
    sums over W then H for all frames at once). Same result as :func:`mask_iou`; the benchmark
    times this form, since it is the official speed."""
    if pred.dim() == 4:
        pred, target = pred[:, 0], target[:, 0]
    n = pred.shape[0]
    num_pixels = pred.shape[-1] * pred.shape[-2]
    target = target.to(torch.float32)
    empty = target.sum(2).sum(1) == 0
    p = (official_sigmoid(pred) > prob_threshold).int()
    inter = (p * target).sum(2).sum(1)
    union = torch.max(p, target).sum(2).sum(1)
    inter_empty = ((1 - target) * (1 - p)).sum(2).sum(1)
    inter[empty] = inter_empty[empty]
    union[empty] = num_pixels
    return torch.sum(inter / (union + eps)) / n


def refavs_mask_iou(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Ref-AVS J: mask_iou with sigma > 0.4."""
    return mask_iou(pred, target, prob_threshold=0.4)


# ---------------------------------------------------------------------------------------------
# §5.2 Eval_Fmeasure
# ---------------------------------------------------------------------------------------------
def official_thresholds(num: int = PR_NUM) -> torch.Tensor:
    return torch.linspace(0, 1 - 1e-10, num)


def frame_pr_counts(score: torch.Tensor, gt: torch.Tensor, num: int = PR_NUM) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-threshold (tp, np) of one frame, one full-image pass per threshold (float32 sums)."""
    thr = official_thresholds(num)
    tp = torch.zeros(num)
    pp = torch.zeros(num)
    for i in range(num):
        b = (score >= thr[i]).float()
        tp[i] = (b * gt).sum()
        pp[i] = b.sum()
    return tp, pp


def eval_fmeasure(pred: torch.Tensor, gt: torch.Tensor, pr_num: int = PR_NUM) -> float:
    """Max over thresholds of the PR-F curve averaged over the frames of the call (§5.2)."""
    if pred.dim() == 4:
        pred, gt = pred[:, 0], gt[:, 0]
    score = official_sigmoid(pred)
    gt = gt.to(torch.float32)
    thr = official_thresholds(pr_num)
    acc = None
    k_used = 0
    for k in range(score.shape[0]):
        y = gt[k]
        if torch.mean(y) == 0.0:
            continue
        prec = torch.zeros(pr_num)
        rec = torch.zeros(pr_num)
        ng = y.sum()
        for i in range(pr_num):
            b = (score[k] >= thr[i]).float()
            tp = (b * y).sum()
            prec[i] = tp / (b.sum() + 1e-20)
            rec[i] = tp / (ng + 1e-20)
        f = (1 + BETA2) * prec * rec / (BETA2 * prec + rec)
        f[f != f] = 0
        acc = f if acc is None else acc + f
        k_used += 1
    if k_used == 0:
        return 0.0
    return (acc / k_used).max().item()


# ---------------------------------------------------------------------------------------------
# §5.4 Ref-AVS S
# ---------------------------------------------------------------------------------------------
def refavs_s_batch(pred: torch.Tensor) -> torch.Tensor:
    """0-d float32: sqrt(count(sigma > 0.5) / pixels of the call)."""
    count = (official_sigmoid(pred) > 0.5).sum()
    return torch.sqrt(count / pred.numel())


# ---------------------------------------------------------------------------------------------
# §5.3 / §5.4 dataset-level aggregation
# ---------------------------------------------------------------------------------------------
def batches(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def avsbench_test(preds: list[torch.Tensor], gts: list[torch.Tensor], batch_size: int = 4,
                  prob_threshold: float = 0.5) -> tuple[float, float]:
    """(mIoU, F) of avs_s4/avs_ms3 test.py: batches of ``batch_size`` clips, unweighted batch means.

    ``preds``/``gts`` are per-clip ``[T, H, W]`` tensors in DataLoader order.
    """
    miou_sum: object = 0.0
    f_sum = 0.0
    nb = 0
    for idx in batches(list(range(len(preds))), batch_size):
        p = torch.cat([preds[i] for i in idx])
        g = torch.cat([gts[i] for i in idx])
        miou_sum = miou_sum + mask_iou(p, g, prob_threshold=prob_threshold)  # float32 tensor meter
        f_sum += eval_fmeasure(p, g)  # python float meter
        nb += 1
    return float(miou_sum / nb), f_sum / nb


def refavs_test(preds: list[torch.Tensor], gts: list[torch.Tensor], batch_size: int = 4) -> dict[str, float]:
    """J, F (non-null splits) with Ref-AVS's threshold, batches of ``batch_size`` expressions."""
    j, f = avsbench_test(preds, gts, batch_size, prob_threshold=0.4)
    return {"J": j, "F": f}


def refavs_null_test(preds: list[torch.Tensor], batch_size: int = 4) -> float:
    """S of test_n: float32 numpy mean of per-batch sqrt ratios."""
    values = []
    for idx in batches(list(range(len(preds))), batch_size):
        values.append(refavs_s_batch(torch.cat([preds[i] for i in idx])))
    return float(np.mean(np.array(values)))


# ---------------------------------------------------------------------------------------------
# §5.5 AVSS
# ---------------------------------------------------------------------------------------------
def calc_color_miou_fscore(pred: torch.Tensor, target: torch.Tensor, nclass: int = 71):
    """Per-call sums over frames: (iou_sum[C], fscore_sum[C], count[C]) in float32.

    ``pred`` is ``[BF, C, H, W]`` logits, or an integer class map ``[BF, H, W]`` (already argmaxed).
    """
    if pred.dim() == 4:
        labels = torch.argmax(torch.softmax(pred.to(torch.float32), dim=1), dim=1)
    else:
        labels = pred.long()
    p_all = labels + 1
    t_all = target.long() + 1
    ious = torch.zeros(nclass)
    fscores = torch.zeros(nclass)
    counts = torch.zeros(nclass)
    for i in range(p_all.shape[0]):
        p = p_all[i]
        t = t_all[i]
        inter_map = p * (p == t).long()
        area_inter = torch.histc(inter_map.float(), bins=nclass, min=1, max=nclass)
        area_pred = torch.histc(p.float(), bins=nclass, min=1, max=nclass)
        area_lab = torch.histc(t.float(), bins=nclass, min=1, max=nclass)
        area_union = area_pred + area_lab - area_inter
        iou = 1.0 * area_inter / (2.220446049250313e-16 + area_union)
        precision = area_inter / area_pred
        recall = area_inter / area_lab
        fs = (1 + BETA2) * precision * recall / (BETA2 * precision + recall)
        fs[fs != fs] = 0
        ious += iou
        fscores += fs
        counts[torch.nonzero(area_union).squeeze(-1)] += 1
    return ious, fscores, counts


def avss_test(preds: list[torch.Tensor], gts: list[torch.Tensor], batch_size: int = 4, nclass: int = 71,
              pad_to: int = 10) -> dict[str, float]:
    """avss/test.py with the 4-output fix: clips padded to ``pad_to`` frames (GT class 0, prediction
    class 0 unless the clip's prediction already has ``pad_to`` frames), batch sums, final means."""
    miou_pc = torch.zeros(nclass)
    fscore_pc = torch.zeros(nclass)
    cls_pc = torch.zeros(nclass)

    def pad(x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] >= pad_to:
            return x
        extra = torch.zeros((pad_to - x.shape[0], *x.shape[1:]), dtype=x.dtype)
        return torch.cat([x, extra])

    for idx in batches(list(range(len(preds))), batch_size):
        p = torch.cat([pad(preds[i]) for i in idx])
        g = torch.cat([pad(gts[i]) for i in idx])
        m, f, c = calc_color_miou_fscore(p, g, nclass)
        miou_pc += m
        fscore_pc += f
        cls_pc += c
    miou = miou_pc / cls_pc
    miou[torch.isnan(miou)] = 0
    fsc = fscore_pc / cls_pc
    fsc[torch.isnan(fsc)] = 0
    return {
        "mIoU": torch.mean(miou).item(),
        "F": torch.mean(fsc).item(),
        "mIoU_noBg": torch.mean(miou[:-1]).item(),
        "F_noBg": torch.mean(fsc[:-1]).item(),
    }


# ---------------------------------------------------------------------------------------------
# §5.6 DAVIS (numpy + OpenCV, per frame)
# ---------------------------------------------------------------------------------------------
def davis_region_j(pred: np.ndarray, gt: np.ndarray) -> float:
    p, g = pred.astype(bool), gt.astype(bool)
    union = np.logical_or(p, g).sum()
    return 1.0 if union == 0 else float(np.logical_and(p, g).sum() / union)


def boundary_map(seg: np.ndarray) -> np.ndarray:
    """1-px boundary: a pixel differing from its right, bottom or bottom-right neighbour
    (outside the image counts as background); the last row only looks right, the last column only
    looks down, the bottom-right pixel is never a boundary."""
    seg = seg.astype(bool)
    h, w = seg.shape
    right = np.zeros_like(seg)
    down = np.zeros_like(seg)
    diag = np.zeros_like(seg)
    right[:, :-1] = seg[:, 1:]
    down[:-1, :] = seg[1:, :]
    diag[:-1, :-1] = seg[1:, 1:]
    b = (seg ^ right) | (seg ^ down) | (seg ^ diag)
    b[-1, :] = seg[-1, :] ^ right[-1, :]
    b[:, -1] = seg[:, -1] ^ down[:, -1]
    b[-1, -1] = False
    return b


def disk(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return (xx * xx + yy * yy <= radius * radius).astype(np.uint8)


def davis_boundary_f(pred: np.ndarray, gt: np.ndarray, bound_th: float = 0.008) -> float:
    import cv2

    radius = int(math.ceil(bound_th * math.hypot(*gt.shape)))
    fb = boundary_map(pred)
    gb = boundary_map(gt)
    kernel = disk(radius)
    fd = cv2.dilate(fb.astype(np.uint8), kernel).astype(bool)
    gd = cv2.dilate(gb.astype(np.uint8), kernel).astype(bool)
    n_fg, n_gt = int(fb.sum()), int(gb.sum())
    if n_fg == 0 and n_gt == 0:
        return 1.0
    if n_fg == 0 or n_gt == 0:
        return 0.0
    precision = (fb & gd).sum() / n_fg
    recall = (gb & fd).sum() / n_gt
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))
