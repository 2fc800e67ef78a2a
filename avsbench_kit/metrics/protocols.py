"""Named, versioned evaluation protocols: what is scored, at which resolution, in which batches.

A protocol never changes silently: a different behaviour gets a new name (or a new version and a
note in docs/metrics.md), and every number the toolkit writes carries ``name`` and ``version``.
The ``-v1`` protocols reproduce the official code, quirks included (official_protocols.md §5-6);
the ``-clip-v1`` variants score each clip/expression on its own, so they do not depend on batch
composition, and are the ones the toolkit recommends for new work (reported beside the official).

This module is light (no torch): ``avskit ls protocols`` imports it at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass

from avsbench_kit.errors import ConfigError
from avsbench_kit.metrics.constants import LOGIT_GT_0_4 as _GT_0_4
from avsbench_kit.metrics.constants import LOGIT_GT_HALF as _GT_HALF
from avsbench_kit.registry import Registry

FAMILIES = ("avsbench", "refavs", "avss")


@dataclass(frozen=True)
class Protocol:
    """Everything that fixes a number: resolution, thresholds, empty-GT rules, batches, reduction."""

    name: str
    version: str
    family: str  # "avsbench" (S4/MS3 binary), "refavs", "avss": which per-frame statistics it needs
    tasks: tuple[str, ...]  # dataset tasks (DatasetSpec.task) it applies to
    description: str
    quirks: tuple[str, ...]
    official: bool
    batch_size: int | None  # samples per official metric call; None = one call per sample
    resolution: tuple[int, int] | None  # (H, W) predictions are scored at; None = the GT's own size
    j_logit_threshold: float = _GT_HALF  # foreground rule of mIoU / J
    pad_frames_to: int | None = None  # AVSS pads every clip to 10 frames
    gt_resize: str | None = None  # "nearest": GT is resized to ``resolution`` (not prepared at it)
    s_sqrt: bool = True  # Ref-AVS S = sqrt(foreground fraction); False = the fraction itself

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"

    def metrics(self, split: str, null_split: bool = False) -> tuple[str, ...]:
        """The metric names this protocol reports on ``split``."""
        if self.family == "avsbench":
            return ("mIoU", "F")
        if self.family == "avss":
            return ("mIoU", "F", "mIoU_noBg", "F_noBg")
        if null_split or split == "test_n":
            return ("S",)
        return ("J", "F", "J&F")

    def check_task(self, dataset: str, task: str) -> None:
        if task not in self.tasks:
            fitting = [n for n in PROTOCOLS.names() if task in PROTOCOLS.get(n).tasks]
            raise ConfigError(
                f"protocol {self.name!r} is for {'/'.join(self.tasks)} datasets; {dataset} is a {task} dataset",
                hint="use " + " or ".join(repr(n) for n in fitting) if fitting else None,
            )


PROTOCOLS: Registry[Protocol] = Registry("protocol")


def _add(p: Protocol) -> None:
    PROTOCOLS.add(p.name, p, version=p.version, task="/".join(p.tasks), description=p.description)


_LOGITS = "predictions are logits: the sigmoid is applied inside (probabilities would be squashed twice)"
_EMPTY_IOU = "an empty-GT frame scores IoU = fraction of pixels predicted background (not skipped, not 0/1)"
_F_DEF = ("F = max over 255 thresholds (torch.linspace(0, 1-1e-10, 255) in float32; thr 0 counts every "
          "pixel, thr 1.0 only sigmoid == 1) of the beta^2 = 0.3 PR-F curve averaged over the GT-positive "
          "frames of one call; empty-GT frames are skipped; a call without GT-positive frames scores 0")
_ANNOTATED = "only frames the manifest marks annotated are scored (all frames of official test splits)"

_add(Protocol(
    name="avsbench-v1",
    version="1.0",
    family="avsbench",
    tasks=("s4", "ms3"),
    official=True,
    batch_size=4,
    resolution=None,
    description="Official AVSBench S4/MS3 test numbers (avs_s4|avs_ms3 test.py): mask_iou and "
                "Eval_Fmeasure per batch of 4 clips x 5 frames, unweighted mean over batches.",
    quirks=(
        _LOGITS,
        "mIoU foreground is sigmoid(x) > 0.5, i.e. x >= 8.94069742685133e-08 in float32 (not x > 0)",
        _EMPTY_IOU,
        _F_DEF + "; the max is taken per batch, so F depends on which clips share a batch",
        "batches of 4 clips in manifest order (DataLoader, shuffle off); a ragged last batch weighs as much as a full one",
        "batch mIoU values are summed in float32 (AverageMeter on tensors), batch F values in float64",
        "scored at the GT's own resolution (the official loader does not resize masks)",
        "soft MS3 GT values (grey levels / 255) are used as-is in the mIoU products",
        _ANNOTATED,
    ),
))
_add(Protocol(
    name="avsbench-clip-v1",
    version="1.0",
    family="avsbench",
    tasks=("s4", "ms3"),
    official=False,
    batch_size=None,
    resolution=None,
    description="Batch-independent AVSBench variant (recommended for new work): mask_iou and "
                "Eval_Fmeasure per clip, then the mean over clips.",
    quirks=(
        _LOGITS,
        "mIoU foreground is sigmoid(x) > 0.5 and empty-GT frames score their true-negative fraction, as official",
        "F is the official max-F of each clip's own frames; clips without a GT-positive frame have no F and "
        "are left out of the F mean (their count is reported)",
        "means over clips in float64; no dependence on batch size or order",
        "scored at the GT's own resolution",
        _ANNOTATED,
    ),
))
_add(Protocol(
    name="refavs-v1",
    version="1.0",
    family="refavs",
    tasks=("refavs",),
    official=True,
    batch_size=4,
    resolution=(256, 256),
    j_logit_threshold=_GT_0_4,
    description="Official Ref-AVS numbers (scripts/train.py test()): J and F per batch of 4 "
                "expressions x 10 frames at 256x256; S on the null split test_n.",
    quirks=(
        _LOGITS,
        "J foreground is sigmoid(x) > 0.4, i.e. x >= -0.4054650068283081 (not 0.5)",
        _EMPTY_IOU + " (null expressions outside test_n contribute to J this way)",
        _F_DEF + "; 40 frames per call, so F depends on batch composition",
        "J&F = (J + F) / 2 is computed by the toolkit: the official code reports J and F only",
        "S (test_n only) = sqrt(foreground pixels / all pixels) per batch of 40 frames (sigmoid > 0.5), "
        "then the float32 mean over batches; the sqrt is taken before averaging; lower is better",
        "batches of 4 expressions in manifest (metadata row) order; a ragged last batch weighs as much as a full one",
        "batch J summed in float32, batch F in float64",
        "scored at 256x256 against GT resized bilinearly and thresholded > 0 (slightly dilated masks)",
        _ANNOTATED,
    ),
))
_add(Protocol(
    name="refavs-clip-v1",
    version="1.0",
    family="refavs",
    tasks=("refavs",),
    official=False,
    batch_size=None,
    resolution=(256, 256),
    j_logit_threshold=_GT_0_4,
    description="Batch-independent Ref-AVS variant (recommended for new work): J, F per "
                "expression then mean; S per expression then mean.",
    quirks=(
        _LOGITS,
        "J foreground is sigmoid(x) > 0.4, empty-GT frames score their true-negative fraction, as official",
        "F is the official max-F of each expression's own 10 frames; expressions without a GT-positive frame "
        "have no F and are left out of the F mean (their count is reported)",
        "J&F = (mean J + mean F) / 2",
        "S (test_n) = sqrt(foreground fraction of the expression's frames), averaged over expressions",
        "means in float64; no dependence on batch size or order; scored at 256x256",
        _ANNOTATED,
    ),
))
_add(Protocol(
    name="avss-v1",
    version="1.0",
    family="avss",
    tasks=("avss",),
    official=True,
    batch_size=4,
    resolution=(224, 224),
    pad_frames_to=10,
    description="Official AVSBench-semantic numbers (avss/test.py with the 4-output fix): per-frame "
                "class IoU/F over 71 classes, clips padded to 10 frames, batches of 4 clips.",
    quirks=(
        "class = argmax of the float32 softmax over 71 logits (ties go to the lowest index); integer class maps are used as given",
        "every clip is padded to T = 10: padded frames have GT class 0 and are scored (they usually inflate class 0); "
        "their prediction is the file of frame index t (num_frames <= t < 10) if given, else class 0 everywhere",
        "per class: IoU and F (beta^2 = 0.3) of each frame where the class occurs in GT or prediction, averaged over "
        "those frames (one stray pixel adds a 0)",
        "mIoU / F = mean over ALL 71 classes: classes never seen count as 0",
        "mIoU_noBg / F_noBg drop class index 70 (as the official code does), not index 0",
        "per-class sums in float32, frame after frame within a batch of 4 clips, then batch after batch",
        "scored at 224x224; only annotated frames of a clip are scored (all of them in val/test)",
    ),
))

# -- a paper's own evaluation, registered so its reported numbers have a protocol to live under ----
_add(Protocol(
    name="avsbench-auralsam2-v1",
    version="1.0",
    family="avsbench",
    tasks=("s4", "ms3"),
    official=False,
    batch_size=4,
    resolution=(1024, 1024),
    gt_resize="nearest",
    description="AuralSAM2's AVSBench evaluation (released code): avsbench-v1's mIoU and F, but predictions "
                "and GT at 1024x1024 (GT resized nearest). Reported AuralSAM2 numbers use it.",
    quirks=(
        "identical to avsbench-v1 (thresholds, empty-GT rule, F, batches of 4, reductions) except the resolution",
        "scored at 1024x1024: logits resized bilinearly, GT resized with nearest neighbour from its own size "
        "(AVSBench's official code scores at the GT's own 224x224)",
        "the released code selects the checkpoint on test; the toolkit always selects on val",
        _ANNOTATED,
    ),
))
_add(Protocol(
    name="refavs-auralsam2-v1",
    version="1.0",
    family="refavs",
    tasks=("refavs",),
    official=False,
    batch_size=4,
    resolution=(256, 256),
    j_logit_threshold=_GT_0_4,
    s_sqrt=False,
    description="refavs-v1 with AuralSAM2's null-split S: the foreground fraction without the square root.",
    quirks=(
        "J, F and J&F exactly as refavs-v1",
        "S (test_n) = foreground pixels / all pixels (sigmoid > 0.5) per batch of 40 frames, WITHOUT the sqrt, "
        "float32 mean over batches; equals the released code's split-wide ratio when every batch has the same "
        "pixel count (only a ragged last batch weighs differently)",
        "S values are therefore the square of refavs-v1's per-batch values: not comparable with official S",
        "the released code's J (one global confusion over the split, logits > 0) is not replicated",
        _ANNOTATED,
    ),
))

#: The official protocol of each dataset task, and the batch-independent one reported beside it.
OFFICIAL_FOR_TASK = {"s4": "avsbench-v1", "ms3": "avsbench-v1", "refavs": "refavs-v1", "avss": "avss-v1"}
CLIP_FOR_TASK = {"s4": "avsbench-clip-v1", "ms3": "avsbench-clip-v1", "refavs": "refavs-clip-v1"}


def get_protocol(name: str) -> Protocol:
    return PROTOCOLS.get(name)


def default_protocols(task: str) -> list[str]:
    """What ``avskit eval`` reports without ``--protocol``: the official one, then the clip variant."""
    names = [OFFICIAL_FOR_TASK[task]]
    if task in CLIP_FOR_TASK:
        names.append(CLIP_FOR_TASK[task])
    return names
