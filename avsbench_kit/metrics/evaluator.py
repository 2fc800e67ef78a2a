"""Streaming evaluation: ``update`` once per sample (clip / expression), ``compute`` once per split.

Each sample is reduced at once to small per-frame statistics (IoU at the protocol's threshold,
the 255-point F curve, foreground counts; per-class counts for AVSS), so memory never holds more
than one sample's logits. Official protocols then replay the official DataLoader batches over
those statistics in manifest order — which gives exactly the official per-batch numbers, because
every official batch metric is a fixed reduction of per-frame quantities. Several protocols of
one family are computed from the same statistics in one pass.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence, Union

import numpy as np
import torch

from avsbench_kit.metrics import constants as C
from avsbench_kit.metrics import functional as Fn
from avsbench_kit.metrics.protocols import PROTOCOLS, Protocol

ProtocolLike = Union[str, Protocol]


# ---------------------------------------------------------------------------------------------
# per-sample statistics
# ---------------------------------------------------------------------------------------------
@dataclass
class BinaryStats:
    """Per-frame statistics of one binary sample (the frames that count, in order)."""

    iou: torch.Tensor  # float32 [T]: mask_iou per frame at the protocol's threshold
    curves: torch.Tensor  # float32 [T, 255]: per-frame F curves
    positive: torch.Tensor  # bool [T]: GT-positive frames (the ones F averages)
    fg: torch.Tensor  # int64 [T]: pixels with sigmoid > 0.5 (Ref-AVS S)
    pixels: int  # pixels of all T frames
    raw_curves: Optional[torch.Tensor] = None  # float32 [T, 255]: F curves on raw logits (no sigmoid)
    clip: Optional[dict[str, float]] = None  # the sample's own J / F / S (set by Evaluator.sample_stats)

    @property
    def frames(self) -> int:
        return int(self.iou.shape[0])


@dataclass
class AvssStats:
    iou: torch.Tensor  # float32 [T10, C]
    fs: torch.Tensor  # float32 [T10, C]
    present: torch.Tensor  # bool [T10, C]
    frames: int  # real (scored) frames
    padded: int  # padded frames


def binary_stats(logits: torch.Tensor, gt: torch.Tensor, j_logit_threshold: float, need_fg: bool = False,
                 raw_f: bool = False, check_finite: bool = False) -> BinaryStats:
    """Statistics of one sample's scored frames (``[T,H,W]`` logits and GT).

    Binary GT: one fused pass (:func:`~avsbench_kit.metrics.functional.frame_histograms`) gives
    the F buckets, the J decision and the S decision of every pixel. Soft GT: official float ops.
    ``raw_f`` adds the F curves of raw logits (protocols with ``f_on_raw_logits``).
    ``check_finite`` raises :class:`~avsbench_kit.metrics.functional.NonFiniteLogits` on NaN/±inf.
    """
    st = _binary_stats(logits, gt, j_logit_threshold, need_fg, check_finite)
    if raw_f:
        raw = Fn.as_frames(logits, "logits")
        tp, pp = Fn.raw_pr_curve_counts(raw, gt)
        ng, _ = Fn.gt_stats(gt)
        st.raw_curves = Fn.frame_f_curves(tp, pp, ng)
    return st


def _binary_stats(logits: torch.Tensor, gt: torch.Tensor, j_logit_threshold: float, need_fg: bool,
                  check_finite: bool = False) -> BinaryStats:
    raw = Fn.as_frames(logits, "logits")
    g = Fn.as_frames(gt, "gt")
    if g.shape != raw.shape:
        raise ValueError(f"logits {tuple(raw.shape)} and gt {tuple(g.shape)} differ in shape")
    n = raw.shape[0]
    pixels = int(raw.numel())
    gb = Fn.binary_mask(g)
    if gb is None:
        x = Fn._logits(raw)
        if check_finite and not bool(torch.isfinite(x).all()):
            raise Fn.NonFiniteLogits("NaN or ±inf logits")
        iou = Fn.frame_iou(x, g, j_logit_threshold)
        tp, pp = Fn.pr_curve_counts(x, g)
        ng, pos = Fn.gt_stats(g)
        fg = torch.count_nonzero(x >= C.LOGIT_GT_HALF, dim=(1, 2)).cpu() if need_fg else torch.zeros(n, dtype=torch.int64)
        return BinaryStats(iou.cpu(), Fn.frame_f_curves(tp, pp, ng), pos, fg, pixels)
    same = j_logit_threshold == C.LOGIT_GT_HALF
    extras = (j_logit_threshold,) if (same or not need_fg) else (j_logit_threshold, C.LOGIT_GT_HALF)
    # everything below runs on a few thousand integers: numpy, whose per-call cost is a fraction
    # of torch's (a dozen torch calls here were a third of a 10-frame 256x256 sample's time)
    h = Fn.frame_histograms(raw, gb, extras, check_finite).numpy()  # [T, E, 2, 256]: key bit 0 = J, bit 1 = S
    by_bits = h.sum(-1)  # [T, E, 2]
    cg = by_bits[:, :, 1].sum(1)
    cp = by_bits[:, 1::2].sum((1, 2))
    ci = by_bits[:, 1::2, 1].sum(1)
    iou = Fn.iou_from_counts(cp, cg, ci, pixels // max(n, 1))
    if need_fg:
        fg = cp if same else by_bits[:, 2:].sum((1, 2))
    else:
        fg = np.zeros(n, dtype=np.int64)
    hk = h.sum(1)  # [T, 2, 256]
    tp = Fn.tail_sums(hk[:, 1])
    pp = Fn.tail_sums(hk[:, 0] + hk[:, 1])
    return BinaryStats(torch.from_numpy(np.asarray(iou)), Fn.frame_f_curves(tp, pp, cg), torch.from_numpy(cg > 0),
                       torch.from_numpy(fg), pixels)


def avss_stats(pred: torch.Tensor, gt: torch.Tensor, pad_to: Optional[int],
               num_classes: int = C.AVSS_NUM_CLASSES) -> AvssStats:
    """Statistics of one AVSS clip: ``pred`` holds the scored frames' predictions, optionally
    followed by the padded frames' predictions; missing padded predictions are class 0."""
    labels = Fn.avss_class_map(pred)
    t = Fn.as_frames(gt, "gt").long()
    real = t.shape[0]
    total = max(real, pad_to or 0)
    if labels.shape[0] < real or labels.shape[0] > total:
        raise ValueError(f"AVSS prediction has {labels.shape[0]} frames; expected {real}..{total}")
    if labels.shape[1:] != t.shape[1:]:
        raise ValueError(f"AVSS prediction {tuple(labels.shape[1:])} and gt {tuple(t.shape[1:])} differ in size")
    if total > real:
        t = torch.cat([t, torch.zeros((total - real, *t.shape[1:]), dtype=torch.int64, device=t.device)])
    if labels.shape[0] < total:
        labels = torch.cat([labels, torch.zeros((total - labels.shape[0], *t.shape[1:]), dtype=torch.int64,
                                                device=labels.device)])
    iou, fs, present = Fn.avss_frame_scores(*Fn.avss_frame_counts(labels, t, num_classes))
    return AvssStats(iou, fs, present, real, total - real)


# ---------------------------------------------------------------------------------------------
# accumulators: one per protocol
# ---------------------------------------------------------------------------------------------
def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values) if values else float("nan")


class _OfficialBinary:
    """Replays the official batches (``batch_size`` samples per metric call)."""

    def __init__(self, protocol: Protocol, metrics: tuple[str, ...]) -> None:
        self.p = protocol
        self.metrics = metrics
        self.batch: list[BinaryStats] = []
        self.j_sum: Any = 0.0  # float32 0-d tensor after the first batch (AverageMeter on tensors)
        self.f_sum = 0.0
        self.s_values: list[np.float32] = []
        self.batches = 0
        self.samples = 0

    @property
    def batch_index(self) -> int:
        return self.samples // int(self.p.batch_size or 1)

    def add(self, st: BinaryStats) -> None:
        self.batch.append(st)
        self.samples += 1
        if len(self.batch) == self.p.batch_size:
            self._flush()

    def _call(self, batch: list[BinaryStats]) -> tuple[torch.Tensor, float, Optional[np.float32]]:
        """The official per-call values of one batch: (mask_iou 0-d float32, max-F, S)."""
        iou = torch.cat([s.iou for s in batch])
        pos = torch.cat([s.positive for s in batch])
        f = Fn.max_f(torch.cat([s.raw_curves if self.p.f_on_raw_logits else s.curves for s in batch])[pos])
        s_val = None
        if "S" in self.metrics:
            fg = sum(int(s.fg.sum()) for s in batch)
            s_val = np.float32(Fn.s_from_counts(fg, sum(s.pixels for s in batch), self.p.s_sqrt))
        return Fn.mean_iou_of_call(iou), f, s_val

    def _flush(self) -> None:
        if self.batch:
            j, f, s_val = self._call(self.batch)
            self.j_sum = self.j_sum + j
            self.f_sum += f
            if s_val is not None:
                self.s_values.append(s_val)
            self.batches += 1
            self.batch = []

    def result(self) -> dict[str, float]:
        """Does not close the pending (ragged) batch: ``update`` may continue afterwards."""
        j_sum, f_sum, s_values, nb = self.j_sum, self.f_sum, list(self.s_values), self.batches
        if self.batch:
            j, f, s_val = self._call(self.batch)
            j_sum, f_sum, nb = j_sum + j, f_sum + f, nb + 1
            if s_val is not None:
                s_values.append(s_val)
        if not nb:
            return {m: float("nan") for m in self.metrics}
        j_mean = float(j_sum / nb)
        f_mean = f_sum / nb
        out = {"mIoU": j_mean, "F": f_mean} if self.p.family == "avsbench" else {"J": j_mean, "F": f_mean, "J&F": (j_mean + f_mean) / 2}
        if "S" in self.metrics:
            out["S"] = float(np.mean(np.array(s_values, dtype=np.float32)))
        return {m: out[m] for m in self.metrics}

    def info(self) -> dict[str, Any]:
        return {"batches": self.batches + bool(self.batch), "batch_size": self.p.batch_size}


class _ClipBinary:
    """One official metric call per sample, then plain means over samples."""

    def __init__(self, protocol: Protocol, metrics: tuple[str, ...]) -> None:
        self.p = protocol
        self.metrics = metrics
        self.j: list[float] = []
        self.f: list[float] = []
        self.s: list[float] = []
        self.no_f = 0

    def add(self, st: BinaryStats, clip: dict[str, float]) -> None:
        self.j.append(clip["J"])
        if math.isnan(clip["F"]):
            self.no_f += 1
        else:
            self.f.append(clip["F"])
        self.s.append(clip["S"])

    def result(self) -> dict[str, float]:
        j, f = _mean(self.j), _mean(self.f)
        out = {"mIoU": j, "F": f} if self.p.family == "avsbench" else {"J": j, "F": f, "J&F": (j + f) / 2}
        out["S"] = _mean(self.s)
        return {m: out[m] for m in self.metrics}

    def info(self) -> dict[str, Any]:
        return {"samples_without_F": self.no_f} if "F" in self.metrics else {}


class _OfficialAvss:
    def __init__(self, protocol: Protocol, metrics: tuple[str, ...], num_classes: int = C.AVSS_NUM_CLASSES) -> None:
        self.p = protocol
        self.metrics = metrics
        self.batch: list[AvssStats] = []
        self.state = Fn.AvssState(*(torch.zeros(num_classes) for _ in range(3)))
        self.batches = 0
        self.samples = 0

    @property
    def batch_index(self) -> int:
        return self.samples // int(self.p.batch_size or 1)

    def add(self, st: AvssStats) -> None:
        self.batch.append(st)
        self.samples += 1
        if len(self.batch) == self.p.batch_size:
            self._flush()

    @staticmethod
    def _call(batch: list[AvssStats]):
        return Fn.avss_call_sums(
            torch.cat([s.iou for s in batch]), torch.cat([s.fs for s in batch]), torch.cat([s.present for s in batch])
        )

    def _flush(self) -> None:
        if self.batch:
            s_iou, s_f, s_c = self._call(self.batch)
            self.state.iou_sum += s_iou
            self.state.f_sum += s_f
            self.state.count += s_c
            self.batches += 1
            self.batch = []

    def result(self) -> dict[str, float]:
        state = Fn.AvssState(self.state.iou_sum.clone(), self.state.f_sum.clone(), self.state.count.clone())
        if self.batch:
            s_iou, s_f, s_c = self._call(self.batch)
            state.iou_sum += s_iou
            state.f_sum += s_f
            state.count += s_c
        # noBg: the official code averages classes 0..69 of 71, i.e. drops the last index
        return Fn.avss_finalize(state, nobg_index=state.iou_sum.shape[0] - 1)

    def info(self) -> dict[str, Any]:
        count = self.state.count + (self._call(self.batch)[2] if self.batch else 0)
        return {"batches": self.batches + bool(self.batch), "batch_size": self.p.batch_size,
                "classes_seen": int((count > 0).sum())}


# ---------------------------------------------------------------------------------------------
# the evaluator
# ---------------------------------------------------------------------------------------------
@dataclass
class EvalResult:
    """Per-protocol metrics of one split plus the per-sample table."""

    split: str
    metrics: dict[str, dict[str, float]]  # protocol name -> metric -> value
    versions: dict[str, str]  # protocol name -> version
    info: dict[str, dict[str, Any]]  # protocol name -> batches, samples without F, ...
    samples: Any  # pandas DataFrame, one row per sample
    num_samples: int
    num_frames: int
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "metrics": self.metrics,
            "protocols": self.versions,
            "protocol_info": self.info,
            "num_samples": self.num_samples,
            "num_frames": self.num_frames,
            "notes": list(self.notes),
        }


def _resolve(protocols: Union[ProtocolLike, Iterable[ProtocolLike]]) -> list[Protocol]:
    if isinstance(protocols, (str, Protocol)):
        protocols = [protocols]
    out = [PROTOCOLS.get(p) if isinstance(p, str) else p for p in protocols]
    if not out:
        raise ValueError("no protocol given")
    families = {p.family for p in out}
    if len(families) != 1:
        raise ValueError(f"protocols of different families cannot share an evaluator: {sorted(families)}")
    return out


class Evaluator:
    """Streaming evaluator for one split under one or more protocols of one family.

    ``update(sample_key, pred, gt, annotated)`` in manifest order; ``compute()`` at the end.
    ``pred``: binary families: logits ``[T,H,W]``; AVSS: logits ``[T,71,H,W]`` or class maps
    ``[T,H,W]`` (optionally with extra trailing frames = predictions of the padded frames).
    ``gt``: ``[T,H,W]`` ({0,1} / soft float; AVSS: class indices). ``annotated``: bool ``[T]``
    (default all): frames that are not annotated are dropped before scoring. ``num_classes``
    (AVSS): classes incl. background averaged over, 71 for AVSBench-semantic, the dataset's
    ``DatasetSpec.num_classes`` otherwise (11 for synth-avss).
    """

    def __init__(self, protocols: Union[ProtocolLike, Iterable[ProtocolLike]], split: str, *, null_split: bool = False,
                 num_classes: int = C.AVSS_NUM_CLASSES) -> None:
        self.protocols = _resolve(protocols)
        self.family = self.protocols[0].family
        self.split = split
        self.null_split = null_split or split == "test_n"
        self.metrics = {p.name: p.metrics(split, self.null_split) for p in self.protocols}
        self._acc: dict[str, Any] = {}
        for p in self.protocols:
            m = self.metrics[p.name]
            if self.family == "avss":
                if p.batch_size is None:
                    raise ValueError(f"protocol {p.name}: AVSS protocols need a batch size")
                self._acc[p.name] = _OfficialAvss(p, m, num_classes)
            else:
                self._acc[p.name] = _OfficialBinary(p, m) if p.batch_size else _ClipBinary(p, m)
        self.j_threshold = self.protocols[0].j_logit_threshold
        self.raw_f = any(p.f_on_raw_logits for p in self.protocols)
        if any(p.j_logit_threshold != self.j_threshold for p in self.protocols):
            raise ValueError("protocols with different J thresholds cannot share an evaluator")
        self._need_s = self.null_split or any("S" in m for m in self.metrics.values())
        self.pad_to = self.protocols[0].pad_frames_to
        self.num_classes = int(num_classes)
        self._rows: list[dict[str, Any]] = []
        self._frames = 0

    def sample_stats(self, pred: torch.Tensor, gt: Any, annotated: Optional[Sequence[bool]] = None,
                     check_finite: bool = False):
        """The per-frame statistics of one sample (pure: may run in worker threads).
        ``check_finite`` (binary tasks): raise ``NonFiniteLogits`` on NaN/±inf logits."""
        gt = torch.as_tensor(gt)
        n = gt.shape[0]
        keep = None if annotated is None else torch.as_tensor(np.asarray(annotated, dtype=bool))
        if keep is not None and keep.shape[0] != n:
            raise ValueError(f"{keep.shape[0]} annotated flags for {n} GT frames")
        if self.family == "avss":
            real, extra = pred[:n], pred[n:]
            if keep is not None:
                real, gt = real[keep], gt[keep]
            return avss_stats(torch.cat([real, extra]) if extra.shape[0] else real, gt, self.pad_to, self.num_classes)
        if keep is not None:
            pred, gt = pred[keep], gt[keep]
        # S (the foreground count) is reported on null splits only: elsewhere it would cost a pass
        st = binary_stats(pred, gt, self.j_threshold, need_fg=self.family == "refavs" and self.null_split,
                          raw_f=self.raw_f, check_finite=check_finite)
        if st.frames == 0:
            raise ValueError("no scored frame")
        st.clip = self._clip_values(st)  # here, in the worker thread, rather than in add()
        return st

    def group_stats(self, pred: torch.Tensor, gt: Any, lengths: Sequence[int],
                    check_finite: bool = False) -> Optional[list[BinaryStats]]:
        """``[sample_stats(p_i, g_i) for each sample]`` of consecutive samples whose scored frames
        are concatenated (``lengths`` frames each), from one kernel pass over all their frames —
        the per-frame statistics do not depend on which frames share a pass, and per-sample Python
        work was half of a 10-frame sample's cost. Binary families, binary GT only: returns None
        when a GT frame is soft (soft GT is scored sample by sample, with the official float ops)."""
        if self.family == "avss":
            raise ValueError("group_stats is for the binary families")
        gb = Fn.binary_mask(Fn.as_frames(torch.as_tensor(gt), "gt"))
        if gb is None:
            return None
        if sum(lengths) != gb.shape[0] or any(n <= 0 for n in lengths):
            raise ValueError(f"sample lengths {list(lengths)} do not split {gb.shape[0]} frames")
        st = binary_stats(pred, gb, self.j_threshold, need_fg=self.family == "refavs" and self.null_split,
                          raw_f=self.raw_f, check_finite=check_finite)
        per_frame = st.pixels // st.frames
        fs = Fn.max_f_per_sample(st.curves, st.positive, lengths)  # the samples' own F, vectorised
        out, a = [], 0
        for n, f in zip(lengths, fs):
            b = a + n
            one = BinaryStats(st.iou[a:b], st.curves[a:b], st.positive[a:b], st.fg[a:b], n * per_frame,
                              None if st.raw_curves is None else st.raw_curves[a:b])
            one.clip = self._clip_values(one, f)
            out.append(one)
            a = b
        return out

    def _clip_values(self, st: BinaryStats, f: Optional[float] = None) -> dict[str, float]:
        """The sample's own metric call: J (mask_iou), F (max-F over its GT-positive frames; ``f``
        when the caller computed it already), S."""
        if f is None:
            pos = Fn._np(st.positive)
            f = Fn.max_f(Fn._np(st.curves)[pos]) if pos.any() else float("nan")
        return {
            "J": Fn.mean_iou_of_call(st.iou).item(),
            "F": f,
            "S": Fn.s_from_counts(int(st.fg.sum()), st.pixels) if self._need_s else float("nan"),
        }

    def add(self, sample_key: str, st: Union[BinaryStats, AvssStats]) -> dict[str, Any]:
        """Feed one sample's statistics, in manifest order; returns its per-sample row."""
        row: dict[str, Any] = {"sample_key": sample_key}
        if isinstance(st, AvssStats):
            seen = st.present.any(0)
            per_class = st.iou.sum(0) / st.present.sum(0).clamp(min=1)
            row.update(frames=st.frames, padded=st.padded, classes_present=int(seen.sum()),
                       mIoU_present=float(per_class[seen].double().mean()) if bool(seen.any()) else float("nan"))
            for name, acc in self._acc.items():
                row[f"batch[{name}]"] = acc.batch_index
                acc.add(st)
        else:
            clip = st.clip if st.clip is not None else self._clip_values(st)
            row.update(frames=st.frames, positive_frames=int(Fn._np(st.positive).sum()))
            if self.family == "avsbench":
                row.update({"mIoU": clip["J"], "F": clip["F"]})
            elif self.null_split:
                row.update({"S": clip["S"], "fg_fraction": int(st.fg.sum()) / st.pixels})
            else:
                row.update({"J": clip["J"], "F": clip["F"], "J&F": (clip["J"] + clip["F"]) / 2})
            for name, acc in self._acc.items():
                if isinstance(acc, _OfficialBinary):
                    row[f"batch[{name}]"] = acc.batch_index
                    acc.add(st)
                else:
                    acc.add(st, clip)
        self._frames += st.frames
        self._rows.append(row)
        return row

    def update(self, sample_key: str, pred: torch.Tensor, gt: Any, annotated: Optional[Sequence[bool]] = None) -> dict[str, Any]:
        """Score one sample (``sample_stats`` then ``add``); returns its per-sample row."""
        try:
            st = self.sample_stats(pred, gt, annotated)
        except ValueError as exc:
            raise ValueError(f"sample {sample_key}: {exc}") from exc
        return self.add(sample_key, st)

    def compute(self):
        """Metrics of every protocol over the samples seen so far, and the per-sample table."""
        import pandas as pd

        metrics = {name: acc.result() for name, acc in self._acc.items()}
        info = {name: acc.info() for name, acc in self._acc.items()}
        return EvalResult(
            split=self.split,
            metrics=metrics,
            versions={p.name: p.version for p in self.protocols},
            info=info,
            samples=pd.DataFrame(self._rows),
            num_samples=len(self._rows),
            num_frames=self._frames,
        )


# ---------------------------------------------------------------------------------------------
# a prediction folder against a prepared split (what `avskit eval` runs)
# ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with ``n`` intra-op torch threads. The per-sample ops are small: on a shared machine
    two intra-op threads wait for each other (10x slower measured under load), so the driver uses
    one intra-op thread per worker and parallelises over samples instead."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def ordered_map(fn: Callable[[Any], Any], items: Sequence[Any], workers: int = 2, window: int = 8) -> Iterator[Any]:
    """``map(fn, items)`` on ``workers`` threads, results in input order, at most ``window`` in
    flight (bounded memory). File reads, PNG decoding and torch ops release the GIL."""
    if workers <= 1:
        yield from map(fn, items)
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque = deque()
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for fut in pending:
                fut.cancel()


_stack_buffers = threading.local()
#: samples per work unit when no protocol has an official batch (refavs-v1 and avss-v1 batch 4)
_GROUP = 4


def _reused_buffer(dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
    """An array of ``shape`` in a per-thread buffer reused from sample to sample (fresh multi-MB
    arrays cost page faults). Only valid until this thread's next call."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape))
    key = dtype.str
    buf = getattr(_stack_buffers, key, None)
    if buf is None or buf.size < size:
        buf = np.empty(size, dtype)
        setattr(_stack_buffers, key, buf)
    return buf[:size].reshape(shape)


def _joined(arrays: list) -> np.ndarray:
    """``np.concatenate(arrays)`` (frames), without a copy when they are adjacent views of one
    C-contiguous buffer (the GT cache decodes a group that way): a fresh multi-MB array per group
    cost more in page faults than the copy itself."""
    first = arrays[0]
    step = first[0].nbytes if len(first) else 0
    address = first.__array_interface__["data"][0]
    adjacent = first.flags.c_contiguous and all(
        a.flags.c_contiguous and a.dtype == first.dtype and a.shape[1:] == first.shape[1:] and
        a.__array_interface__["data"][0] == address + step * offset
        for a, offset in zip(arrays, np.cumsum([0] + [len(a) for a in arrays[:-1]]).tolist())
    )
    base = first.base
    if not (adjacent and step and base is not None and all(a.base is base for a in arrays)):
        return np.concatenate(arrays)
    total = sum(len(a) for a in arrays)
    return np.lib.stride_tricks.as_strided(first, shape=(total, *first.shape[1:]))


def _stack_reused(arrays: list) -> np.ndarray:
    """``np.stack`` into :func:`_reused_buffer` (same lifetime rule)."""
    out = _reused_buffer(np.result_type(*arrays), (len(arrays), *arrays[0].shape))
    for i, a in enumerate(arrays):
        out[i] = a
    return out


@contextlib.contextmanager
def _naming(sample_key: str, frame: int) -> Iterator[None]:
    """Prefix a file error with the sample and frame it belongs to."""
    from avsbench_kit.errors import DataError

    try:
        yield
    except DataError as exc:
        raise DataError(f"sample {sample_key} frame {frame}: {exc.message}", hint=exc.hint) from exc


def _required_frames(row: dict[str, Any]) -> list[int]:
    return [k for k, a in enumerate(row["annotated"]) if a]


def check_folder(index, rows: list[dict[str, Any]], what: str, pad_to: Optional[int], *, partial: bool,
                 ignore_extra: bool, notes: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """Match a scanned prediction folder against the split's rows.

    Returns (rows with every annotated frame present, keys of incomplete samples). Files that are
    not predictions for the split are an error unless ``ignore_extra``; incomplete samples are an
    error unless ``partial``. Errors name the first offending file/sample and the fix."""
    from avsbench_kit.errors import DataError
    from avsbench_kit.metrics import predictions as P

    wanted = {r["sample_key"]: r for r in rows}
    stray = list(index.stray)
    for key, frames in index.files.items():
        row = wanted.get(key)
        if row is None:
            stray.extend((path, f"no sample {key!r} in {what}") for path in frames.values())
            if not frames:
                stray.append((str(index.root / key), f"no sample {key!r} in {what}"))
            continue
        limit = max(row["num_frames"], pad_to or 0)
        stray.extend((path, f"sample {key} has frames 0..{limit - 1}") for k, path in frames.items() if k >= limit)
    if stray and not ignore_extra:
        path, why = stray[0]
        raise DataError(
            f"{len(stray)} file(s) in {index.root} are not predictions for {what}; first: {path} ({why})",
            hint=f"expected {P.NAMING}; remove them, point --pred at this split's folder, or pass --ignore-extra",
        )
    if stray:
        notes.append(f"ignored {len(stray)} file(s) that are not predictions for this split")
    complete, missing = [], []
    first: Optional[tuple[str, int]] = None
    for row in rows:
        have = index.files.get(row["sample_key"], {})
        lacking = [k for k in _required_frames(row) if k not in have]
        if lacking:
            missing.append(row["sample_key"])
            first = first or (row["sample_key"], lacking[0])
        else:
            complete.append(row)
    if first and not partial:
        key, k = first
        raise DataError(
            f"{len(missing)} of {len(rows)} samples lack predictions; first: sample {key} frame {k} "
            f"(expected {P.describe_missing(index.root, key, k)})",
            hint=f"write one file per annotated frame as {P.NAMING}, or pass --partial to score the complete samples only",
        )
    if not complete:
        raise DataError(f"no sample of {what} has complete predictions in {index.root}", hint=f"expected {P.NAMING}")
    return complete, missing


def _on_cpu(st: Union[BinaryStats, AvssStats]) -> Union[BinaryStats, AvssStats]:
    """Statistics with every tensor on the CPU (the accumulators sum there, in official order)."""
    from dataclasses import fields

    if st.iou.device.type == "cpu":  # the CPU path: nothing to move
        return st
    values = {f.name: getattr(st, f.name) for f in fields(st)}
    return type(st)(**{k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in values.items()})


def evaluate_predictions(
    dataset: str,
    split: str,
    pred: str,
    protocol: Optional[str] = None,
    home: Any = None,
    partial: bool = False,
    resize: Optional[str] = None,
    ignore_extra: bool = False,
    progress: bool = True,
    workers: Optional[int] = None,
    device: str = "cpu",
    gt_cache: str = "auto",
) -> dict[str, Any]:
    """Score ``pred`` (a folder, or ``empty``/``full``/``gt``) on a prepared split.

    ``device`` (``cpu``, ``auto``, ``cuda``, ``cuda:N``, ``mps``) runs the per-sample metric
    kernels there (the device-generic torch path; same numbers as the CPU fast path); statistics
    come back to the CPU once per sample.

    GT comes from the dataset's decoded GT cache (:mod:`avsbench_kit.data.gt_cache`) when it
    holds a verified copy of the split (``gt_cache="auto"``); otherwise the PNGs are decoded, and
    when the whole split is scored the cache is written on the way (``rebuild`` forces that,
    ``off`` neither reads nor writes it). The report's notes say which happened.

    Returns the JSON-able report (protocol names + versions, dataset fingerprint, toolkit version,
    git SHA, partial flag); ``report["_samples"]`` is the per-sample DataFrame. Bad input raises a
    :class:`~avsbench_kit.errors.AvsKitError` naming the file/sample and the fix.
    """
    import datetime as _dt
    import time

    from avsbench_kit import __version__
    from avsbench_kit.data.datasets import DATASETS
    from avsbench_kit.device import resolve_device
    from avsbench_kit.data import gt_cache as GC
    from avsbench_kit.errors import ConfigError, DataError
    from avsbench_kit.metrics import predictions as P
    from avsbench_kit.metrics.protocols import default_protocols
    from avsbench_kit.progress import track
    from avsbench_kit.provenance import environment_info, git_sha

    t0 = time.perf_counter()
    target = resolve_device(device)  # a missing GPU fails here, before anything is read or written
    workers = workers or min(2, os.cpu_count() or 1)
    spec = DATASETS.get(dataset)
    if gt_cache not in GC.GtSource.MODES:
        raise ConfigError(f"--gt-cache {gt_cache!r} is not a mode", hint="use --gt-cache auto, rebuild or off")
    if resize is not None and resize not in P.RESIZE_MODES:
        raise ConfigError(f"--resize {resize!r} is not a resampling mode", hint="use --resize nearest or --resize bilinear")
    names = [protocol] if protocol else default_protocols(spec.task)
    protocols = [PROTOCOLS.get(n) for n in names]
    for p in protocols:
        p.check_task(dataset, spec.task)
    manifest = _manifest(dataset, home)
    rows = manifest.rows(split)
    task = spec.task
    fam = protocols[0].family
    pad_to = protocols[0].pad_frames_to
    size_rule = protocols[0].resolution

    reference = pred if (pred in P.REFERENCE_PREDICTORS and not pred.startswith(("./", "/"))) else None
    notes: list[str] = []
    index = None
    complete_rows, missing_samples = rows, []
    if reference is None:
        index = P.scan(Path(pred))
        complete_rows, missing_samples = check_folder(
            index, rows, f"{dataset} {split}", pad_to, partial=partial, ignore_extra=ignore_extra, notes=notes
        )

    source = GC.GtSource(manifest, task, split, home, gt_cache)
    write_cache = source.writes and len(complete_rows) == len(rows)
    null_split = fam == "refavs" and (split == "test_n" or all(r["is_null"] for r in rows))
    num_classes = spec.num_classes or C.AVSS_NUM_CLASSES
    ev = Evaluator(protocols, split, null_split=null_split, num_classes=num_classes)
    resized = 0
    scored_as = f"{dataset} ({protocols[0].name})"

    def scored_gt(row: dict[str, Any], gt_all: np.ndarray):
        """(the sample's scored GT frames at the scored size, its cache encoding or None)."""
        try:
            encoded = GC.encode_sample(gt_all, task) if write_cache else None
        except ValueError:  # a frame the codec cannot hold exactly: this pass writes no cache
            encoded = None
        keep = np.asarray(row["annotated"], dtype=bool)
        gt = gt_all if keep.all() else gt_all[keep]
        size = tuple(size_rule) if size_rule else tuple(gt.shape[-2:])
        if gt.shape[-2:] != size and protocols[0].gt_resize == "nearest":
            gt, _ = P.fit_size(gt, size, row["sample_key"], "nearest", scored_as)  # AuralSAM2: GT at 1024
        if gt.shape[-2:] != size:
            raise DataError(f"GT of sample {row['sample_key']} is {gt.shape[-1]}x{gt.shape[-2]}, expected {size[1]}x{size[0]}",
                            hint=f"re-run `avskit prepare {dataset}`")
        return gt, encoded

    def load_pred(row: dict[str, Any], gt: np.ndarray):
        """The sample's predictions for its scored frames (AVSS: plus the padded frames given)."""
        nonlocal resized
        if reference is not None:
            return P.reference_prediction(reference, gt, task)
        size = tuple(gt.shape[-2:])
        files = index.files[row["sample_key"]]
        frames = _required_frames(row)
        if task == "avss":
            padded = list(range(row["num_frames"], pad_to or 0))
            given = [k for k in padded if k in files]
            if given and len(given) != len(padded):
                raise DataError(
                    f"sample {row['sample_key']} has predictions for padded frames {given} but not for all of {padded}",
                    hint="give all padded frames (num_frames..9) or none (then they are predicted as class 0)",
                )
            out = []
            for k in frames + given:
                with _naming(row["sample_key"], k):
                    kind, arr = P.load_avss(files[k], num_classes)
                    arr, changed = P.fit_size(arr, size, files[k], resize, scored_as, labels=kind == "labels")
                resized += changed
                if kind == "logits":
                    arr = Fn.avss_class_map(torch.from_numpy(arr).unsqueeze(0))[0].numpy()
                out.append(arr)
            return np.stack(out)
        stacked = P.read_logit_frames([files[k] for k in frames], size, _reused_buffer)
        if stacked is None:  # not all plain float16/float32 .npy at the scored size: file by file
            out = []
            for k in frames:
                with _naming(row["sample_key"], k):
                    arr = P.load_binary(files[k], check_finite=False)
                    arr, changed = P.fit_size(arr, size, files[k], resize, scored_as)
                resized += changed
                out.append(arr)
            stacked = _stack_reused(out)
        return stacked  # NaN/inf: checked by the kernel (sample_stats(check_finite=True))

    def name_nonfinite(row: dict[str, Any]) -> None:
        """Raise the DataError naming the first prediction file of ``row`` with NaN/inf logits."""
        files = index.files[row["sample_key"]]
        for k in _required_frames(row):
            with _naming(row["sample_key"], k):
                P.load_binary(files[k])
        raise DataError(f"sample {row['sample_key']}: NaN or ±inf logits", hint="logits must be finite")

    def score_one(row: dict[str, Any], gt: np.ndarray):
        pr = load_pred(row, gt)
        try:
            return _on_cpu(ev.sample_stats(torch.from_numpy(pr).to(target), torch.from_numpy(gt).to(target),
                                           check_finite=task != "avss"))
        except Fn.NonFiniteLogits:
            name_nonfinite(row)
        except ValueError as exc:
            raise DataError(f"sample {row['sample_key']}: {exc}", hint="check the prediction files of this sample") from exc

    def score_group(group: list[dict[str, Any]], gts: list[np.ndarray]):
        """Statistics of a group of binary-task samples from one kernel pass (Evaluator.group_stats),
        or None when the group needs the sample-by-sample path: a prediction file that is not a
        plain float .npy at the scored size, soft GT, or NaN/inf logits (that path names the file)."""
        if reference is not None:
            pr = np.concatenate([P.reference_prediction(reference, g, task) for g in gts])
        else:
            paths = [index.files[r["sample_key"]][k] for r in group for k in _required_frames(r)]
            pr = P.read_logit_frames(paths, tuple(gts[0].shape[-2:]), _reused_buffer)
            if pr is None:
                return None
        gt = _joined(gts)
        try:
            stats = ev.group_stats(torch.from_numpy(pr).to(target), torch.from_numpy(gt).to(target),
                                   [len(g) for g in gts], check_finite=True)
        except ValueError:  # NonFiniteLogits included: the per-sample path raises the error that names the file
            return None
        return None if stats is None else [_on_cpu(st) for st in stats]

    def work(group: list[dict[str, Any]]):
        prepared = [scored_gt(row, g) for row, g in zip(group, source.samples(group))]
        gts = [gt for gt, _ in prepared]
        stats = None
        if task != "avss" and len(group) > 1 and len({g.shape[1:] for g in gts}) == 1:
            stats = score_group(group, gts)
        if stats is None:
            stats = [score_one(row, gt) for row, gt in zip(group, gts)]
        return [(st, encoded) for st, (_, encoded) in zip(stats, prepared)]

    # work unit: a group of consecutive samples (an official batch where there is one), so the
    # per-sample Python glue and the pool's hand-offs are paid once per group
    per_group = protocols[0].batch_size or _GROUP
    groups = [complete_rows[i:i + per_group] for i in range(0, len(complete_rows), per_group)]
    encoded_samples: list = []
    with torch_threads(1), _no_cyclic_gc():
        results = (item for group in ordered_map(work, groups, workers=workers) for item in group)
        for row, (st, encoded) in zip(track(complete_rows, f"eval {dataset} {split}", enabled=progress), results):
            ev.add(row["sample_key"], st)
            if write_cache:
                encoded_samples.append(encoded)
    result = ev.compute()
    notes.extend(_cache_notes(source, split, write_cache, encoded_samples))
    if resized:
        notes.append(f"{resized} prediction frame(s) resampled with --resize {resize}")
    if missing_samples:
        notes.append(f"PARTIAL: {len(missing_samples)} sample(s) without complete predictions left out "
                     f"(first: {P.first(missing_samples)})")
    notes.extend(result.notes)
    report: dict[str, Any] = {
        "schema": "avskit-eval/1",
        "dataset": dataset,
        "task": task,
        "split": split,
        "predictions": f"reference:{reference}" if reference else str(Path(pred).resolve()),
        "gt_source": source.kind,
        "partial": bool(missing_samples),
        "num_samples_expected": len(rows),
        "num_samples_scored": result.num_samples,
        "num_samples_missing": len(missing_samples),
        "missing_samples": missing_samples[:100],
        "num_frames": result.num_frames,
        "resize": resize,
        "resized_frames": resized,
        "protocols": {
            p.name: {
                "version": p.version,
                "official": p.official,
                "metrics": result.metrics[p.name],
                "info": result.info[p.name],
            }
            for p in protocols
        },
        "dataset_fingerprint": manifest.fingerprint,
        "toolkit_version": __version__,
        "git_sha": git_sha(),
        "environment": environment_info(),
        "device": str(target),
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "seconds": time.perf_counter() - t0,
        "notes": notes,
        "_samples": result.samples,
    }
    return report


_manifests: dict[tuple, Any] = {}


def _manifest(dataset: str, home: Any):
    """The prepared manifest, re-read only when its files changed (same path, size, mtime, inode).

    Evaluating test_s then test_u loaded, parsed and re-fingerprinted the same manifest twice
    (~0.25 s each at Ref-AVS size, serial). One entry is kept; the evaluator only reads it."""
    from avsbench_kit.data.datasets import DATASETS
    from avsbench_kit.data.prepare import load_manifest

    directory = DATASETS.get(dataset).prepared_dir(home)
    try:
        key = (str(directory), *((st.st_size, st.st_mtime_ns, st.st_ino)
                                 for st in (os.stat(directory / name) for name in ("manifest.json", "manifest.parquet"))))
    except OSError:  # not prepared: load_manifest raises the error that names the prepare command
        return load_manifest(dataset, home)
    if key not in _manifests:
        manifest = load_manifest(dataset, home)
        _manifests.clear()
        _manifests[key] = manifest
    return _manifests[key]


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """No cyclic garbage collection while samples are scored: the loop makes no reference cycles
    worth collecting, and full collections over the process's objects (torch, pandas, the
    manifest rows) cost ~0.15 s per Ref-AVS evaluation. Collection resumes afterwards."""
    import gc

    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _cache_notes(source: Any, split: str, write: bool, encoded: list) -> list[str]:
    """Write the GT cache after a PNG pass over the whole split; say what happened."""
    notes = [source.note] if source.note else []
    if source.kind == "cache" or source.cache is None:
        return notes
    if not write:
        return notes + [f"GT decoded from PNGs; no GT cache for {split} written (only part of the split was scored)"]
    if any(e is None for e in encoded):
        return notes + [f"GT decoded from PNGs; no GT cache for {split} written (a GT frame does not round-trip "
                        "through the cache codec)"]
    try:
        record = source.cache.write(split, encoded)
    except (OSError, ValueError) as exc:
        return notes + [f"GT decoded from PNGs; the GT cache could not be written ({exc})"]
    size = sum(f["bytes"] for f in record["files"].values())
    what = "rebuilt" if source.state == "invalid" else "written"
    return notes + [f"GT decoded from PNGs; GT cache for {split} {what} ({size / 1e6:.1f} MB, {source.cache.path}): "
                    "later evaluations read it"]
