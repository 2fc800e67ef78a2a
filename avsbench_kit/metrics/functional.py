"""Vectorised kernels of the official AVS metrics (official_protocols.md §5), exact and fast.

Every binary kernel takes ``[N, H, W]`` tensors — the N frames of *one official metric call* —
(``[N, 1, H, W]`` and ``[H, W]`` are accepted too); predictions are **logits** (the official code
applies the sigmoid itself), ground truth is ``{0, 1}`` (bool or float; soft MS3 values are
supported). Results are python floats.

How exactness is kept without a sigmoid per threshold: ``sigmoid(x) >= thr[i]`` is decided as
``x >= b[i]`` with the stored float32 logit boundaries (constants.py), which reproduces torch's
vectorised CPU sigmoid decision for every float32 logit. Counts are exact integers; the float32
formulas after the counts use the official operation order, so final scalars match the official
code bit for bit on binary ground truth (soft ground truth: within float32 rounding of the sums).

How the F-measure is fast: one pass per pixel instead of 255. A pixel's *bucket* j (the number of
thresholds it passes, 0..255) is estimated as ``floor(254·sigmoid(x) + 1)``; pixels whose estimate
lies within 3e-4 of an integer (well under 0.1 % of them, plus NaNs) are re-bucketed exactly
against the boundaries; float16 logits are bucketed by an exact 65536-entry table. Per-frame
histograms of j for all pixels and for GT pixels, reverse-cumsummed, give tp and np for all 255
thresholds at once; the mIoU/J/S decisions ride along as extra key bits (:func:`frame_histograms`).
Work is done in chunks of 2**18 pixels with per-thread reusable buffers.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import torch

from avsbench_kit.metrics import constants as C

_CHUNK = 1 << 18  # pixels per fast-path chunk: 2**17-2**18 measured fastest (the ~4 buffers stay near L2)
_EPS_U = 3e-4  # ambiguity margin of the sigmoid-based bucket estimate (its error is below 1.5e-4)

_tables: dict[str, torch.Tensor] = {}

#: Tests set this to run the device-generic (pure torch) code paths on CPU tensors.
FORCE_TORCH_PATH = False


def _host(t: torch.Tensor) -> bool:
    """True when the numpy-assisted CPU fast paths apply (CPU tensor, not forced off)."""
    return t.device.type == "cpu" and not FORCE_TORCH_PATH


def thresholds() -> torch.Tensor:
    """The 255 official F-measure thresholds (float32, cached)."""
    if "thr" not in _tables:
        _tables["thr"] = C.thresholds()
    return _tables["thr"]


def logit_boundaries() -> torch.Tensor:
    """``b`` with ``sigmoid(x) >= thr[i]  <=>  x >= b[i]`` (float32, b[0] = -inf, cached)."""
    if "b" not in _tables:
        _tables["b"] = C.logit_boundaries()
    return _tables["b"]


# ---------------------------------------------------------------------------------------------
# input handling
# ---------------------------------------------------------------------------------------------
def as_frames(x: torch.Tensor, name: str = "input") -> torch.Tensor:
    """``[N, H, W]`` view of ``[N, H, W]``, ``[N, 1, H, W]`` or ``[H, W]``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 4 and x.shape[1] == 1:
        return x[:, 0]
    if x.dim() == 2:
        return x.unsqueeze(0)
    if x.dim() != 3:
        raise ValueError(f"{name} must be [N,H,W] (or [N,1,H,W], [H,W]); got shape {tuple(x.shape)}")
    return x


def _logits(x: torch.Tensor) -> torch.Tensor:
    x = as_frames(x, "logits")
    if not x.is_floating_point():
        raise TypeError(f"logits must be a floating tensor, got {x.dtype}")
    return x.to(torch.float32).contiguous()


def _pair(logits: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = _logits(logits)
    g = as_frames(gt, "gt")
    if g.shape != x.shape:
        raise ValueError(f"logits {tuple(x.shape)} and gt {tuple(g.shape)} differ in shape")
    return x, g.to(x.device)


def binary_mask(gt: torch.Tensor) -> Optional[torch.Tensor]:
    """``gt != 0`` as a bool tensor if every GT value is 0 or 1, else None (soft GT).

    On CPU the check runs in numpy, whose comparisons are several times faster than torch's
    bool-producing kernels."""
    if gt.dtype == torch.bool:
        return gt
    if _host(gt) and not gt.is_complex():
        import numpy as np

        a = gt.detach().contiguous().numpy()
        b = a != 0
        # binary <=> every non-zero value is 1: two counts on bool arrays instead of array_equal's
        # cast + compare + reduce (measured 2x faster; NaN is non-zero and != 1, so soft)
        ok = bool(a.max() <= 1) if a.dtype.kind == "u" and a.size else np.count_nonzero(a == 1) == np.count_nonzero(b)
        return torch.from_numpy(b) if ok else None
    return gt != 0 if bool(((gt == 0) | (gt == 1)).all()) else None


def is_binary(gt: torch.Tensor) -> bool:
    """True if every GT value is 0 or 1 (bool tensors are)."""
    return binary_mask(gt) is not None


# ---------------------------------------------------------------------------------------------
# mIoU / J  (§5.1, §5.4)
# ---------------------------------------------------------------------------------------------
def frame_iou(logits: torch.Tensor, gt: torch.Tensor, logit_threshold: float = C.LOGIT_GT_HALF) -> torch.Tensor:
    """Per-frame IoU of ``mask_iou`` (float32 ``[N]``): ``x >= logit_threshold`` is foreground;
    an empty-GT frame scores its true-negative fraction; ``I / (U + 1e-7)`` in float32."""
    x, g = _pair(logits, gt)
    n, h, w = x.shape
    num_pixels = h * w
    gb = binary_mask(g)
    if gb is not None and not _host(x):  # device-generic: plain counts
        pred = x >= logit_threshold
        dims = (1, 2)
        cp, cg = torch.count_nonzero(pred, dim=dims), torch.count_nonzero(gb, dim=dims)
        ci = torch.count_nonzero(pred & gb, dim=dims)
        return iou_from_counts(cp.cpu(), cg.cpu(), ci.cpu(), num_pixels)
    if gb is not None:
        xf = x.reshape(n, num_pixels)
        g8 = gb.reshape(n, num_pixels).contiguous().view(torch.uint8)
        counts = torch.zeros(3, n, dtype=torch.int64)  # predicted, GT, intersection
        for s, e, p0, p1 in _chunks(n, num_pixels):
            m = e - s
            pf, gf = _ws.float_pair(m * (p1 - p0))
            torch.ge(xf[s:e, p0:p1].reshape(-1), logit_threshold, out=pf)  # float 0/1: faster than bool
            gf.copy_(g8[s:e, p0:p1].reshape(-1))
            pf, gf = pf.view(m, -1), gf.view(m, -1)
            counts[0, s:e] += pf.sum(1).to(torch.int64)  # float32 sums of 0/1: exact below 2**24
            counts[1, s:e] += gf.sum(1).to(torch.int64)
            counts[2, s:e] += pf.mul_(gf).sum(1).to(torch.int64)
        return iou_from_counts(counts[0], counts[1], counts[2], num_pixels)
    # soft targets: the official float32 expression, reduction order included
    p = (x >= logit_threshold).int()
    t = g.to(torch.float32)
    empty = t.sum(2).sum(1) == 0
    inter = (p * t).sum(2).sum(1)
    union = torch.max(p, t).sum(2).sum(1)
    inter_empty = ((1 - t) * (1 - p)).sum(2).sum(1)
    inter[empty] = inter_empty[empty]
    union[empty] = num_pixels
    return inter / (union + C.MIOU_EPS)


def iou_from_counts(cp: torch.Tensor, cg: torch.Tensor, ci: torch.Tensor, num_pixels: int) -> torch.Tensor:
    """Per-frame float32 IoU from exact counts (predicted, GT, intersection), official rules:
    empty GT -> true negatives / (H·W); else I / (U + 1e-7), all in float32. numpy counts give
    a numpy result (the same IEEE float32 operations)."""
    if not isinstance(cp, torch.Tensor):
        import numpy as np

        empty = cg == 0
        inter = np.where(empty, num_pixels - cp, ci).astype(np.float32)
        union = np.where(empty, num_pixels, cp + cg - ci).astype(np.float32)
        return inter / (union + np.float32(C.MIOU_EPS))
    empty = cg == 0
    inter = torch.where(empty, num_pixels - cp, ci).to(torch.float32)
    union = torch.where(empty, torch.full_like(cp, num_pixels), cp + cg - ci).to(torch.float32)
    return inter / (union + C.MIOU_EPS)


def mean_iou_of_call(ious: torch.Tensor) -> torch.Tensor:
    """``torch.sum(iou) / N`` as the official ``mask_iou`` returns it (0-d float32)."""
    return torch.sum(ious) / ious.shape[0]


def avs_miou(logits: torch.Tensor, gt: torch.Tensor) -> float:
    """AVSBench ``mask_iou`` of one call (sigma > 0.5, empty GT -> TN ratio, frame mean)."""
    return mean_iou_of_call(frame_iou(logits, gt, C.LOGIT_GT_HALF)).item()


def refavs_j(logits: torch.Tensor, gt: torch.Tensor) -> float:
    """Ref-AVS J of one call: ``mask_iou`` with sigma > 0.4."""
    return mean_iou_of_call(frame_iou(logits, gt, C.LOGIT_GT_0_4)).item()


# ---------------------------------------------------------------------------------------------
# F-measure (§5.2)
# ---------------------------------------------------------------------------------------------
def _chunks(n: int, p: int):
    """(frame_start, frame_end, pixel_start, pixel_end) pieces of about _CHUNK pixels."""
    if p >= _CHUNK:
        for f in range(n):
            for p0 in range(0, p, _CHUNK):
                yield f, f + 1, p0, min(p, p0 + _CHUNK)
    else:
        step = max(1, _CHUNK // p)
        for s in range(0, n, step):
            yield s, min(n, s + step), 0, p


def exact_buckets(x: torch.Tensor) -> torch.Tensor:
    """Number of thresholds each logit passes (0..255; NaN passes none), by binary search."""
    b = logit_boundaries().to(x.device)
    j = torch.bucketize(x, b, right=True)
    return torch.where(torch.isnan(x), torch.zeros_like(j), j)


_CLAMP = 11.0  # |x| beyond this: sigmoid saturates in the estimate; 254·σ(±11) stays 4e-3 off an integer
_MAX_EXTRA = 2  # extra decision bits per pixel key


def _check_extras(extras: Sequence[float]) -> tuple[float, ...]:
    extras = tuple(float(t) for t in extras)
    if len(extras) > _MAX_EXTRA:
        raise ValueError(f"at most {_MAX_EXTRA} extra thresholds")
    return extras


class _Workspace(threading.local):
    """Per-thread scratch buffers reused across chunks: fresh large tensors cost page faults that
    were measured to dominate the kernel (a 10x slower int conversion into new memory)."""

    def __init__(self) -> None:
        self.size = 0

    def buffers(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(float32 scratch, int32 keys, int32 scratch) of n elements."""
        if n > self.size:
            self.size = max(n, _CHUNK)
            self.tmp = torch.empty(self.size)
            self.keys = torch.empty(self.size, dtype=torch.int32)
            self.bit = torch.empty(self.size, dtype=torch.int32)
        return self.tmp[:n], self.keys[:n], self.bit[:n]

    def float_pair(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Two float32 scratch buffers of n elements (the keys' float buffer and a second one)."""
        tmp, _, _ = self.buffers(n)
        if getattr(self, "tmp2", None) is None or self.tmp2.numel() < n:
            self.tmp2 = torch.empty(max(n, _CHUNK))
        return tmp, self.tmp2[:n]

    def flag_buffer(self, n: int) -> torch.Tensor:
        if getattr(self, "flag", None) is None or self.flag.numel() < n:
            self.flag = torch.empty(max(n, _CHUNK), dtype=torch.bool)
        return self.flag[:n]

    def index32_buffer(self, n: int):
        import numpy as np

        if getattr(self, "idx32", None) is None or self.idx32.size < n:
            self.idx32 = np.empty(max(n, _CHUNK), dtype=np.int32)
        return self.idx32[:n]

    def key16_tensor(self, n: int) -> torch.Tensor:
        if getattr(self, "k16t", None) is None or self.k16t.numel() < n:
            self.k16t = torch.empty(max(n, _CHUNK), dtype=torch.int16)
        return self.k16t[:n]


_ws = _Workspace()


def _fix_ambiguous(keys: torch.Tensor, x: torch.Tensor, extras: tuple[float, ...], amb) -> None:
    """Rebuild ``keys[amb]`` exactly (bucket by binary search against the boundaries, extra
    decisions): these pixels' estimates were near an integer, or NaN (whose float-to-int key is
    meaningless). numpy: a few hundred pixels, where torch's per-call overhead dominates."""
    if len(amb):
        import numpy as np

        xa = x.numpy()[amb]
        key = np.searchsorted(_boundaries_np(), xa, side="right").astype(np.int32)  # #{b <= x}
        key[np.isnan(xa)] = 0
        for k, t in enumerate(extras):
            key += (xa >= np.float32(t)).astype(np.int32) * (512 << k)
        keys.numpy()[amb] = key


def _boundaries_np():
    if "b_np" not in _tables:
        _tables["b_np"] = logit_boundaries().numpy()
    return _tables["b_np"]


def _chunk_keys(xc: torch.Tensor, extras: tuple[float, ...]) -> torch.Tensor:
    """int32 pixel keys ``bucket + 512·[x >= extras[0]] + 1024·[x >= extras[1]]`` of a contiguous
    float32 chunk (the GT bit, 256, is added by the caller). The result lives in a reused buffer:
    consume it before the next call on this thread.

    Bucket estimate: ``floor(254·σ(clamp(x, ±11)) + 1 + eps)`` plus 1 where ``x >= b[254]`` (the
    clamp keeps saturated pixels off the integer 254; that pass is skipped when no logit of the
    chunk reaches b[254]); pixels whose estimate is within ``eps`` of an integer, and NaN pixels,
    get their key rebuilt exactly. The estimate stays below 256 (rounding error < 3e-5); extra
    decisions are added as integers after the ambiguity test. Everything runs in place in one
    float buffer (each pass over the chunk is memory-bound: fewer buffers measured faster);
    comparisons write float 0/1 (torch's bool outputs are several times slower); the ambiguity
    search runs in numpy on 8-byte words (:func:`_flat_true`; ``np.flatnonzero`` alone cost as
    much as the sigmoid).
    """
    import numpy as np

    x = xc.reshape(-1)
    n = x.numel()
    tmp, keys, bit = _ws.buffers(n)
    flag = _ws.flag_buffer(n).numpy()
    torch.clamp(x, -_CLAMP, _CLAMP, out=tmp).sigmoid_()
    torch.add(_ONE_EPS, tmp, alpha=254.0, out=tmp)
    if not float(x.max()) < _b254():  # NaN max: take the pass too
        torch.ge(x, _b254(), out=bit)
        tmp.add_(bit)
    keys.copy_(tmp)  # truncation = floor (v >= 1); NaN pixels get a junk key, rebuilt below
    torch.frac(tmp, out=tmp)
    np.greater_equal(tmp.numpy(), 2 * _EPS_U, out=flag)
    np.invert(flag, out=flag)  # NaN included
    amb = _flat_true(flag)
    for k, t in enumerate(extras):
        torch.ge(x, t, out=tmp)
        bit.copy_(tmp)
        keys.add_(bit, alpha=512 << k)
    _fix_ambiguous(keys, x, extras, amb)
    return keys


def _b254() -> float:
    """b[254] as a python float: logits at or above it have sigmoid exactly 1.0 (bucket 255)."""
    if "b254" not in _tables:
        _tables["b254"] = float(logit_boundaries()[254])
    return _tables["b254"]


def _flat_true(mask):
    """``np.flatnonzero`` of a sparse bool array, about 8x faster: find the non-zero 8-byte words
    first, then the set bytes inside them (numpy's nonzero costs ~0.6 ns per element)."""
    import numpy as np

    n = mask.size
    head = n - n % 8
    words = np.flatnonzero(mask[:head].view(np.uint64))
    if len(words):
        rows, cols = np.nonzero(mask[:head].reshape(-1, 8)[words])
        idx = words[rows] * 8 + cols
    else:
        idx = words
    if head < n:
        idx = np.concatenate([idx, np.flatnonzero(mask[head:]) + head])
    return idx


_ONE_EPS = torch.full((1,), 1 + _EPS_U)  # float32(1 + eps)
_half_luts: dict[tuple[tuple[float, ...], bool], Any] = {}


class NonFiniteLogits(ValueError):
    """A NaN or ±inf logit where the caller asked for finite ones (``check_finite=True``)."""


def _half_lut(extras: tuple[float, ...], mark_nonfinite: bool = False):
    """int16 numpy table over every float16 bit pattern: ``2·(bucket + 256·[x >= extras[0]] +
    512·[x >= extras[1]])``, computed exactly; the GT bit goes into the low bit afterwards.
    (int16 keys halve the memory traffic of the gather and of the histogram input.)
    ``mark_nonfinite``: NaN/±inf patterns get a key past the histogram instead, so the finite
    check costs nothing (``bincount`` returns a longer row)."""
    if (extras, mark_nonfinite) not in _half_luts:
        import numpy as np

        bits = np.arange(65536, dtype=np.uint32).astype(np.uint16)
        x = torch.from_numpy(bits.view(np.float16).astype(np.float32))
        keys = exact_buckets(x).to(torch.int32)
        for k, t in enumerate(extras):
            keys += (x >= t).to(torch.int32) * (256 << k)
        keys *= 2
        if mark_nonfinite:
            keys[~torch.isfinite(x)] = 512 << len(extras)
        _half_luts[extras, mark_nonfinite] = keys.to(torch.int16).numpy()
    return _half_luts[extras, mark_nonfinite]


def _half_histograms(xf: torch.Tensor, g8: torch.Tensor, extras: tuple[float, ...],
                     check_finite: bool = False) -> torch.Tensor:
    """:func:`frame_histograms` of float16 logits ``[N, P]`` on the CPU (``g8``: uint8 GT ``[N, P]``).

    Per chunk: float16 bits -> int32 indices, one table gather (``torch.index_select``) into
    int16 keys, the GT bit added in place, one ``bincount`` per frame — no frame-offset pass
    (1.2-1.4x faster than the int32 pipeline it replaced, docs/metrics.md "End to end"; the
    int32 gather 1.1x faster than ``np.take``, which wants intp indices, twice the bytes)."""
    import numpy as np

    n, p = xf.shape
    width = 512 << len(extras)
    lut = torch.from_numpy(_half_lut(extras, check_finite))
    bits = xf.numpy().view(np.uint16)
    gt = g8.numpy()
    rows: list[Any] = [None] * n  # per-frame counts (a frame wider than a chunk adds up its pieces)
    for s, e, p0, p1 in _chunks(n, p):
        m, q = e - s, p1 - p0
        idx = _ws.index32_buffer(m * q)
        kt = _ws.key16_tensor(m * q)
        keys = kt.numpy()
        np.copyto(idx.reshape(m, q), bits[s:e, p0:p1], casting="unsafe")
        torch.index_select(lut, 0, torch.from_numpy(idx), out=kt)
        np.add(keys.reshape(m, q), gt[s:e, p0:p1], out=keys.reshape(m, q), casting="unsafe")
        for f in range(m):
            counts = torch.bincount(kt[f * q:(f + 1) * q], minlength=width)
            if counts.shape[0] > width:
                raise NonFiniteLogits(f"frame {s + f} has NaN or ±inf logits")
            rows[s + f] = counts if rows[s + f] is None else rows[s + f] + counts
    hist = torch.stack(rows) if n else torch.zeros(0, width, dtype=torch.int64)
    # key = GT + 2·bucket + 512·(extra bits)  ->  [N, 2**E, 256, 2] -> [N, 2**E, 2, 256]
    return hist.view(n, 1 << len(extras), 256, 2).transpose(2, 3).contiguous()


def _add_gt_and_frames(keys: torch.Tensor, g8: torch.Tensor, m: int, width: int) -> None:
    """``keys += 256·g + width·frame`` for a chunk of m frames (the frame offsets and the GT bit
    are combined first; uint8 -> int32 by a copy: a mixed-dtype add measured 2x slower)."""
    _, _, bit = _ws.buffers(keys.numel())
    bit.copy_(g8.reshape(-1))
    if m > 1:
        torch.add(_frame_offsets(m, keys.numel() // m, width), bit, alpha=256, out=bit)
        keys.add_(bit)
    else:
        keys.add_(bit, alpha=256)


def _portable_keys(xc: torch.Tensor, g8: Optional[torch.Tensor], extras: tuple[float, ...]) -> torch.Tensor:
    """The same keys with plain torch ops on any device (GPU: ``bucketize`` is cheap there)."""
    x = xc.reshape(-1).to(torch.float32)
    keys = exact_buckets(x).to(torch.int32)
    if g8 is not None:
        keys += g8.reshape(-1).to(torch.int32) * 256
    for k, t in enumerate(extras):
        keys += (x >= t).to(torch.int32) * (512 << k)
    return keys


_offsets: dict[tuple[int, int], torch.Tensor] = {}


def _frame_offsets(m: int, p: int, width: int) -> torch.Tensor:
    """int32 ``[m*p]``: ``width * frame`` for every pixel of m frames (cached by (m, p, width): a
    key of m*p alone served 4 frames of 54 pixels for 9 frames of 24, found by a property test)."""
    key = (m, p, width)
    if key not in _offsets:
        if len(_offsets) > 16:
            _offsets.clear()
        _offsets[key] = (torch.arange(m, dtype=torch.int32) * width).repeat_interleave(p)
    return _offsets[key]


def frame_histograms(logits: torch.Tensor, gt: torch.Tensor, extras: Sequence[float] = (),
                     check_finite: bool = False) -> torch.Tensor:
    """Per-frame pixel counts ``[N, 2**E, 2, 256]`` by (extra decisions, GT, bucket), binary GT.

    Bucket j = number of F thresholds the logit passes (0..255); extra decision k is
    ``x >= extras[k]`` (e.g. the mIoU / J / S foreground rules). One pass over the pixels gives
    everything the binary metrics need. float16 logits use an exact 65536-entry table.
    ``check_finite``: raise :class:`NonFiniteLogits` on a NaN/±inf logit (free for float16 on the
    CPU; otherwise one extra pass); without it NaN counts in bucket 0, as in the official code.
    """
    extras = _check_extras(extras)
    raw = as_frames(logits, "logits")
    if not raw.is_floating_point():
        raise TypeError(f"logits must be a floating tensor, got {raw.dtype}")
    half = raw.dtype == torch.float16
    x = raw.contiguous() if half else raw.to(torch.float32).contiguous()
    g = as_frames(gt, "gt")
    if g.shape != x.shape:
        raise ValueError(f"logits {tuple(x.shape)} and gt {tuple(g.shape)} differ in shape")
    gb = binary_mask(g)
    if gb is None:
        raise ValueError("frame_histograms needs binary GT (use pr_histograms for soft GT)")
    n = x.shape[0]
    p = x[0].numel() if n else 0
    xf = x.reshape(n, p)
    g8 = gb.reshape(n, p).contiguous().view(torch.uint8)
    width = 512 << len(extras)
    host = _host(x)
    if host and half:
        return _half_histograms(xf, g8, extras, check_finite)
    if check_finite and not bool(torch.isfinite(x).all()):
        raise NonFiniteLogits("NaN or ±inf logits")
    hist = torch.zeros(n, width, dtype=torch.int64, device=x.device)
    for s, e, p0, p1 in _chunks(n, p):
        m = e - s
        if host:
            keys = _chunk_keys(xf[s:e, p0:p1], extras)
            _add_gt_and_frames(keys, g8[s:e, p0:p1], m, width)
        else:
            keys = _portable_keys(xf[s:e, p0:p1], g8[s:e, p0:p1], extras)
            if m > 1:
                keys.add_((torch.arange(m, dtype=torch.int32, device=x.device) * width).repeat_interleave(p1 - p0))
        hist[s:e] += torch.bincount(keys, minlength=m * width).view(m, width)
    return hist.cpu().view(n, 1 << len(extras), 2, 256)


def pr_histograms(logits: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-frame bucket histograms ``(all [N,256] int64, gt [N,256])``: ``gt`` is int64 for binary
    GT, float64 (sum of GT weights) for soft GT. Bucket j = number of thresholds passed."""
    g = as_frames(gt, "gt")
    gb = binary_mask(g)
    if gb is not None:
        h = frame_histograms(logits, gb)[:, 0]
        return h[:, 0] + h[:, 1], h[:, 1]
    x, g = _pair(logits, g)
    n = x.shape[0]
    p = x[0].numel() if n else 0
    xf = x.reshape(n, p)
    gw = g.reshape(n, p).to(torch.float64)
    h_all = torch.zeros(n, 256, dtype=torch.int64, device=x.device)
    h_gt = torch.zeros(n, 256, dtype=torch.float64, device=x.device)
    for s, e, p0, p1 in _chunks(n, p):
        m = e - s
        if _host(x):
            keys = _chunk_keys(xf[s:e, p0:p1], ())
            if m > 1:
                keys.add_(_frame_offsets(m, p1 - p0, 256))
        else:
            keys = _portable_keys(xf[s:e, p0:p1], None, ())
            keys += (torch.arange(m, dtype=torch.int32, device=x.device) * 256).repeat_interleave(p1 - p0)
        flat = keys
        h_all[s:e] += torch.bincount(flat, minlength=m * 256).view(m, 256)
        h_gt[s:e] += torch.bincount(flat, weights=gw[s:e, p0:p1].reshape(-1), minlength=m * 256).view(m, 256)
    return h_all.cpu(), h_gt.cpu()


def tail_sums(h: torch.Tensor) -> torch.Tensor:
    """Bucket histograms ``[N,256]`` -> per-threshold counts ``[N,255]``:
    ``out[:, i] = sum_{j > i} h[:, j]`` (pixels passing threshold i). Integer (exact) or float64
    sums, in numpy: small arrays."""
    import numpy as np

    a = _np(h)
    return torch.from_numpy(np.ascontiguousarray(np.cumsum(a[:, ::-1], axis=1)[:, ::-1][:, 1:]))


def pr_curve_counts(logits: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For every frame and all 255 thresholds at once: ``(tp [N,255], np [N,255])``.

    ``np[k, i]`` = pixels of frame k with ``sigmoid >= thr[i]``, ``tp`` = those that are GT
    (int64; float64 sums of GT values for soft GT). Identical to the official per-threshold counts.
    """
    h_all, h_gt = pr_histograms(logits, gt)
    return tail_sums(h_gt), tail_sums(h_all)


def gt_stats(gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ng float32 [N], positive bool [N])``: GT sum per frame, and ``mean(gt) != 0`` (frames F uses)."""
    g = as_frames(gt, "gt")
    gb = binary_mask(g)
    if gb is not None:
        ng = gb.reshape(gb.shape[0], -1).view(torch.uint8).sum(1, dtype=torch.int32).to(torch.int64).cpu()
        return ng.to(torch.float32), ng > 0
    t = g.to(torch.float32)
    ng = torch.stack([t[k].sum() for k in range(t.shape[0])]) if t.shape[0] else torch.zeros(0)
    pos = torch.stack([torch.mean(t[k]) != 0.0 for k in range(t.shape[0])]) if t.shape[0] else torch.zeros(0, dtype=torch.bool)
    return ng.cpu(), pos.cpu()


def frame_f_curves(tp: torch.Tensor, pp: torch.Tensor, ng: torch.Tensor) -> torch.Tensor:
    """Per-frame F curves (float32 ``[N,255]``) in the official operation order, NaN -> 0.

    Computed in numpy (same IEEE float32 operations, scalars as float32 like torch's): these are
    small arrays, where torch's per-op overhead was a third of a 20-frame 224² F call."""
    import numpy as np

    f32 = np.float32
    tp = _np(tp).astype(f32)
    pp = _np(pp).astype(f32)
    ng = _np(ng).astype(f32).reshape(-1, 1)
    prec = tp / (pp + f32(C.FMEASURE_EPS))
    rec = tp / (ng + f32(C.FMEASURE_EPS))
    with np.errstate(invalid="ignore", divide="ignore"):
        f = f32(1 + C.BETA2) * prec * rec / (f32(C.BETA2) * prec + rec)
    f[f != f] = 0
    return torch.from_numpy(f)


def _np(t):
    return t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else t


def max_f(curves: torch.Tensor) -> float:
    """Official reduction of the curves of one call's GT-positive frames: float32 running sum in
    frame order, divided by the frame count, max over thresholds; 0.0 without such frames.
    (A float32 cumulative sum is that running sum, term by term.)"""
    import numpy as np

    c = _np(curves)
    k = c.shape[0]
    if k == 0:
        return 0.0
    acc = np.cumsum(c, axis=0, dtype=np.float32)[-1] if k > 1 else c[0]
    return float((acc / np.float32(k)).max())


def max_f_per_sample(curves, positive, lengths: Sequence[int]) -> list[float]:
    """``[max_f(c[pos]) for each sample]`` (NaN for a sample without GT-positive frames) for the
    concatenated frames of several samples (``lengths`` frames each), bit for bit: the float32
    running sums go frame position by frame position for all samples at once, each sample adding
    only its GT-positive frames, in frame order — the same additions as its own cumulative sum."""
    import numpy as np

    c, pos = _np(curves), _np(positive).astype(bool)
    n = len(lengths)
    t = max(lengths) if n else 0
    starts = np.cumsum([0] + list(lengths[:-1])).astype(np.int64)
    acc = np.zeros((n, c.shape[1]), dtype=np.float32)
    seen = np.zeros(n, dtype=np.int64)
    lens = np.asarray(lengths, dtype=np.int64)
    for j in range(t):
        live = j < lens
        rows = starts[live] + j
        add = live.copy()
        add[live] = pos[rows]
        if add.any():
            acc[add] = acc[add] + c[starts[add] + j]
            seen += add
    out = (acc / np.maximum(seen, 1).astype(np.float32)[:, None]).max(1) if t else np.zeros(0, np.float32)
    return [float(v) if k else float("nan") for v, k in zip(out.tolist(), seen.tolist())]


def avs_fscore(logits: torch.Tensor, gt: torch.Tensor) -> float:
    """AVSBench ``Eval_Fmeasure`` of one call: beta^2 = 0.3, 255 thresholds, curve averaged over
    the GT-positive frames of the call, then max."""
    g = as_frames(gt, "gt")
    gb = binary_mask(g)
    if gb is None:
        tp, pp = pr_curve_counts(logits, g)
        ng, pos = gt_stats(g)
        return max_f(frame_f_curves(tp, pp, ng)[pos])
    h = frame_histograms(logits, gb)[:, 0].numpy()  # [N, 2, 256]
    ng = h[:, 1].sum(1)
    return max_f(frame_f_curves(tail_sums(h[:, 1]), tail_sums(h[:, 0] + h[:, 1]), ng)[ng > 0])


def raw_pr_curve_counts(logits: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(tp, np)`` like :func:`pr_curve_counts` but thresholding the *raw* values
    (``x >= thr[i]``, no sigmoid): the F of the SAMA-AVS / AV2T-SAM releases, whose
    ``Eval_Fmeasure`` is fed logits with its sigmoid line commented out. Logits < 0 never pass
    threshold 0, logits >= 1 - 1e-10 pass every threshold."""
    x, g = _pair(logits, as_frames(gt, "gt"))
    n = x.shape[0]
    xf = x.reshape(n, -1).to(torch.float32)
    gw = g.reshape(n, -1).to(torch.float64)
    bucket = torch.searchsorted(thresholds().to(xf.device), xf.contiguous(), right=True)  # thresholds passed
    keys = (bucket + 256 * torch.arange(n, device=xf.device).unsqueeze(1)).reshape(-1)
    h_all = torch.bincount(keys, minlength=n * 256).view(n, 256).cpu()
    h_gt = torch.bincount(keys, weights=gw.reshape(-1), minlength=n * 256).view(n, 256).cpu()
    if binary_mask(g) is not None:
        h_gt = h_gt.round().to(torch.int64)
    return tail_sums(h_gt), tail_sums(h_all)


def avs_fscore_raw(logits: torch.Tensor, gt: torch.Tensor) -> float:
    """:func:`avs_fscore` with :func:`raw_pr_curve_counts` (one call, no sigmoid)."""
    tp, pp = raw_pr_curve_counts(logits, gt)
    ng, pos = gt_stats(gt)
    return max_f(frame_f_curves(tp, pp, ng)[pos])


def refavs_f(logits: torch.Tensor, gt: torch.Tensor) -> float:
    """Ref-AVS F: identical to :func:`avs_fscore` (per batch of 40 frames in the official code)."""
    return avs_fscore(logits, gt)


# ---------------------------------------------------------------------------------------------
# Ref-AVS S (§5.4)
# ---------------------------------------------------------------------------------------------
def foreground_count(logits: torch.Tensor, logit_threshold: float = C.LOGIT_GT_HALF) -> int:
    """Pixels with ``sigmoid > 0.5`` (by default) over the whole call."""
    return int(torch.count_nonzero(_logits(logits) >= logit_threshold))


def s_from_counts(count: int, pixels: int, sqrt: bool = True) -> float:
    """``torch.sqrt(count / pixels)`` as the official code evaluates it (float32 division, sqrt);
    ``sqrt=False``: the float32 fraction itself (AuralSAM2's S)."""
    frac = torch.tensor(count, dtype=torch.int64) / pixels
    return (torch.sqrt(frac) if sqrt else frac).item()


def refavs_s(logits: torch.Tensor) -> float:
    """Ref-AVS null-split S of one call: sqrt of the foreground fraction of all its pixels."""
    x = _logits(logits)
    return s_from_counts(foreground_count(x), x.numel())


# ---------------------------------------------------------------------------------------------
# AVSS (§5.5)
# ---------------------------------------------------------------------------------------------
_AVSS_TIE_MARGIN = 1e-2  # logit gap below which two classes may tie in float32 softmax (see below)


def avss_class_map(pred: torch.Tensor) -> torch.Tensor:
    """int64 ``[N,H,W]`` labels: argmax of float32 softmax over dim 1 for logits ``[N,C,H,W]``
    (so float32 softmax ties go to the lowest index, as officially), or integer maps as given."""
    if pred.dim() == 4:
        out = torch.empty((pred.shape[0], *pred.shape[2:]), dtype=torch.int64)
        for k in range(pred.shape[0]):  # per frame: bounded memory
            out[k] = _frame_labels(pred[k].to(torch.float32))
        return out
    if pred.dim() == 2:
        pred = pred.unsqueeze(0)
    if pred.dim() != 3 or pred.is_floating_point():
        raise ValueError("AVSS predictions are logits [N,C,H,W] or integer class maps [N,H,W]")
    return pred.long()


def _softmax_labels(x: torch.Tensor) -> torch.Tensor:
    """The official rule on ``[C, ...]`` logits: argmax of the float32 softmax over dim 0."""
    return torch.argmax(torch.softmax(x.unsqueeze(0), dim=1), dim=1)[0]


def _frame_labels(x: torch.Tensor) -> torch.Tensor:
    """Official labels of one frame ``[C,H,W]`` without a softmax over every pixel.

    The softmax is monotone and its largest value belongs to the largest logit (``exp(0)/S``), so
    the official label is the logit argmax (lowest index among equal maxima, as ``torch.max``
    returns) unless another class lies within float32 rounding of it: ``exp(d)/S`` with ``d`` a
    few ulps below 0 can round to the same probability, and the tie then goes to the lower index.
    Pixels whose runner-up is within ``_AVSS_TIE_MARGIN`` of the maximum (``exp(-1e-2)`` is 1e5 ulps
    below 1: no tie is possible beyond it) are relabelled by the real softmax, on a block of just
    those pixels padded to a multiple of 64 (torch's softmax over dim 1 is computed per pixel, so
    the block gives the same bits as the whole frame; the test suite checks it on near-ties).
    Frames with a non-finite logit take the softmax over the whole frame."""
    if not _host(x):
        return _softmax_labels(x)
    import numpy as np

    c = x.shape[0]
    flat = x.reshape(c, -1)
    a = flat.numpy()
    top = np.max(a, axis=0)  # numpy: a vectorised max over dim 0; torch.max(dim) is 7x slower
    if not np.isfinite(top).all():
        return _softmax_labels(x)
    floor = top - np.float32(_AVSS_TIE_MARGIN)
    pixels = a.shape[1]
    near = np.zeros(pixels, np.uint8 if c < 256 else np.int32)  # classes within the margin of the max
    labels = np.zeros(pixels, np.int64)  # sum of their indices: the label where near == 1
    hit = np.empty(pixels, bool)
    for j in range(c):
        np.greater_equal(a[j], floor, out=hit)
        np.add(near, hit, out=near, casting="unsafe")
        np.add(labels, j, out=labels, where=hit)
    out = torch.from_numpy(labels)
    amb = np.flatnonzero(near > 1)
    if len(amb):
        k = len(amb)
        block = torch.zeros(c, k + (-k) % 64)
        block[:, :k] = flat[:, torch.from_numpy(amb)]
        out[torch.from_numpy(amb)] = _softmax_labels(block)[:k]
    return out.view(x.shape[1:])


def avss_frame_counts(pred: torch.Tensor, gt: torch.Tensor, num_classes: int = C.AVSS_NUM_CLASSES):
    """Per-frame ``(inter, area_pred, area_lab)``, int64 ``[N, C]``, from one bincount of the joint
    (frame, prediction, GT) key: the per-frame confusion matrix, whose diagonal, row and column
    sums are the three areas (one int32 pass instead of three bincounts and a masked copy)."""
    p = avss_class_map(pred)
    t = as_frames(gt, "gt")
    if p.shape != t.shape:
        raise ValueError(f"AVSS prediction {tuple(p.shape)} and gt {tuple(t.shape)} differ in shape")
    n = p.shape[0]
    t = t.to(p.device)
    if n:
        lo_p, hi_p = torch.aminmax(p)
        lo_t, hi_t = torch.aminmax(t)
        if int(lo_p) < 0 or int(hi_p) >= num_classes or int(lo_t) < 0 or int(hi_t) >= num_classes:
            raise ValueError(f"AVSS class indices must lie in 0..{num_classes - 1}")
    cc = num_classes * num_classes
    key = torch.empty(p.shape, dtype=torch.int32, device=p.device)
    key.copy_(p).mul_(num_classes)
    key += t if t.dtype == torch.int32 else t.to(torch.int32)
    key += (torch.arange(n, dtype=torch.int32, device=p.device) * cc).view(n, 1, 1)
    conf = torch.bincount(key.view(-1), minlength=n * cc).view(n, num_classes, num_classes).cpu()
    inter = torch.diagonal(conf, dim1=1, dim2=2).contiguous()
    return inter, conf.sum(2), conf.sum(1)  # small: the float32 sums run on CPU


def avss_frame_scores(inter: torch.Tensor, area_pred: torch.Tensor, area_lab: torch.Tensor):
    """Per-frame, per-class ``(iou, fscore, present)`` float32 in the official operation order."""
    i = inter.to(torch.float32)
    a_p = area_pred.to(torch.float32)
    a_l = area_lab.to(torch.float32)
    union = a_p + a_l - i
    iou = 1.0 * i / (C.AVSS_IOU_EPS + union)
    precision = i / a_p
    recall = i / a_l
    fs = (1 + C.BETA2) * precision * recall / (C.BETA2 * precision + recall)
    fs[fs != fs] = 0
    return iou, fs, union > 0


@dataclass
class AvssState:
    """Running official AVSS sums (float32 ``[C]``), as avss/test.py keeps them."""

    iou_sum: torch.Tensor = field(default_factory=lambda: torch.zeros(C.AVSS_NUM_CLASSES))
    f_sum: torch.Tensor = field(default_factory=lambda: torch.zeros(C.AVSS_NUM_CLASSES))
    count: torch.Tensor = field(default_factory=lambda: torch.zeros(C.AVSS_NUM_CLASSES))


def avss_call_sums(iou: torch.Tensor, fs: torch.Tensor, present: torch.Tensor):
    """One call's per-class sums: float32, frame after frame from zero (official order)."""
    c = iou.shape[1] if iou.dim() == 2 else C.AVSS_NUM_CLASSES
    s_iou, s_f, s_c = torch.zeros(c), torch.zeros(c), torch.zeros(c)
    for k in range(iou.shape[0]):
        s_iou += iou[k]
        s_f += fs[k]
        s_c[present[k]] += 1
    return s_iou, s_f, s_c


def avss_accumulate(pred: torch.Tensor, gt: torch.Tensor, state: Optional[AvssState] = None,
                    num_classes: int = C.AVSS_NUM_CLASSES) -> AvssState:
    """Add one official call (``calc_color_miou_fscore`` on its frames, padded frames included) to
    ``state`` (a new one if None) and return it."""
    state = state or AvssState(torch.zeros(num_classes), torch.zeros(num_classes), torch.zeros(num_classes))
    s_iou, s_f, s_c = avss_call_sums(*avss_frame_scores(*avss_frame_counts(pred, gt, num_classes)))
    state.iou_sum += s_iou
    state.f_sum += s_f
    state.count += s_c
    return state


def avss_finalize(state: AvssState, nobg_index: int = C.AVSS_NOBG_DROPPED_INDEX) -> dict[str, float]:
    """mIoU / F over ALL classes (never-seen classes count as 0) and the noBg variants, which drop
    index ``nobg_index`` (70, as the official code does)."""
    miou = state.iou_sum / state.count
    miou[torch.isnan(miou)] = 0
    fsc = state.f_sum / state.count
    fsc[torch.isnan(fsc)] = 0
    keep = [c for c in range(miou.shape[0]) if c != nobg_index]
    return {
        "mIoU": torch.mean(miou).item(),
        "F": torch.mean(fsc).item(),
        "mIoU_noBg": torch.mean(miou[keep]).item(),
        "F_noBg": torch.mean(fsc[keep]).item(),
    }


# ---------------------------------------------------------------------------------------------
# DAVIS region J and boundary F (§5.6), for reference: not used by any official AVS protocol
# ---------------------------------------------------------------------------------------------
def davis_j_frames(logits: torch.Tensor, gt: torch.Tensor, logit_threshold: float = C.LOGIT_GT_HALF) -> torch.Tensor:
    """Per-frame DAVIS J (float64): |A∩B|/|A∪B|, 1 when both are empty."""
    x, g = _pair(logits, gt)
    p = x >= logit_threshold
    gb = binary_mask(g)
    gb = g >= 0.5 if gb is None else gb
    inter = torch.count_nonzero(p & gb, dim=(1, 2)).double()
    union = torch.count_nonzero(p | gb, dim=(1, 2)).double()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def davis_j(logits: torch.Tensor, gt: torch.Tensor, logit_threshold: float = C.LOGIT_GT_HALF) -> float:
    """Mean DAVIS J over the frames (prediction = ``sigmoid > 0.5`` by default)."""
    return float(davis_j_frames(logits, gt, logit_threshold).mean())


def boundary_map(seg: torch.Tensor) -> torch.Tensor:
    """DAVIS 1-px boundaries of bool ``[N,H,W]`` masks: a pixel that differs from its right, lower
    or lower-right neighbour (outside = background); the last row only compares with its right
    neighbour, the last column only with the one below, and the bottom-right pixel is never set."""
    right = torch.zeros_like(seg)
    down = torch.zeros_like(seg)
    diag = torch.zeros_like(seg)
    right[:, :, :-1] = seg[:, :, 1:]
    down[:, :-1, :] = seg[:, 1:, :]
    diag[:, :-1, :-1] = seg[:, 1:, 1:]
    b = (seg ^ right) | (seg ^ down) | (seg ^ diag)
    b[:, -1, :] = seg[:, -1, :] ^ right[:, -1, :]
    b[:, :, -1] = seg[:, :, -1] ^ down[:, :, -1]
    b[:, -1, -1] = False
    return b


def dilate_disk(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Binary dilation of bool ``[N,H,W]`` by the disk ``dx²+dy² <= r²``: one horizontal max-pool
    per distinct half-width, shifted vertically (O(r) passes instead of an O(r²) kernel)."""
    if radius <= 0:
        return mask.clone()
    n, h, w = mask.shape
    m = mask.to(torch.float32).unsqueeze(1)
    out = torch.zeros_like(mask)
    pooled: dict[int, torch.Tensor] = {}
    for dy in range(-radius, radius + 1):
        half = math.isqrt(radius * radius - dy * dy)
        if half not in pooled:
            pooled[half] = torch.nn.functional.max_pool2d(m, (1, 2 * half + 1), stride=1, padding=(0, half))[:, 0] > 0
        row = pooled[half]
        if dy >= 0:  # out[y] |= row[y + dy]
            out[:, : h - dy] |= row[:, dy:]
        else:
            out[:, -dy:] |= row[:, : h + dy]
    return out


def davis_boundary_f_frames(logits: torch.Tensor, gt: torch.Tensor, bound_th: float = 0.008,
                            logit_threshold: float = C.LOGIT_GT_HALF) -> torch.Tensor:
    """Per-frame DAVIS boundary F (float64), tolerance ``ceil(bound_th · diagonal)`` pixels."""
    x, g = _pair(logits, gt)
    _, h, w = x.shape
    radius = int(math.ceil(bound_th * math.hypot(h, w))) if bound_th < 1 else int(bound_th)
    fb = boundary_map(x >= logit_threshold)
    mask = binary_mask(g)
    gb = boundary_map(g >= 0.5 if mask is None else mask)
    fd = dilate_disk(fb, radius)
    gd = dilate_disk(gb, radius)
    n_fg = torch.count_nonzero(fb, dim=(1, 2)).double()
    n_gt = torch.count_nonzero(gb, dim=(1, 2)).double()
    precision = torch.count_nonzero(fb & gd, dim=(1, 2)).double() / n_fg.clamp(min=1)
    recall = torch.count_nonzero(gb & fd, dim=(1, 2)).double() / n_gt.clamp(min=1)
    denom = precision + recall
    f = torch.where(denom > 0, 2 * precision * recall / denom.clamp(min=1e-300), torch.zeros_like(denom))
    f = torch.where((n_fg == 0) | (n_gt == 0), torch.zeros_like(f), f)
    return torch.where((n_fg == 0) & (n_gt == 0), torch.ones_like(f), f)


def davis_boundary_f(logits: torch.Tensor, gt: torch.Tensor, bound_th: float = 0.008,
                     logit_threshold: float = C.LOGIT_GT_HALF) -> float:
    """Mean DAVIS boundary F over the frames."""
    return float(davis_boundary_f_frames(logits, gt, bound_th, logit_threshold).mean())
