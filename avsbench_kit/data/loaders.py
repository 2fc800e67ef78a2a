"""PyTorch access to prepared samples: one decoding path for the folder tree and for shards.

:func:`decode_row` turns a manifest row into tensors given any ``read(rel_path) -> bytes``;
:class:`AVSDataset` feeds it from the dataset root, :func:`avsbench_kit.data.shards.iter_decoded`
from raw-sample shards, so both give identical samples. Nothing here writes files.

Tensors: ``frames`` float32 ``[T, 3, H, W]`` in [0, 1] (RGB, not normalised; bilinear PIL resize
to ``image_size`` if given, as the AVSS test loader does); ``masks`` at the protocol's
evaluation resolution, decoded by :mod:`avsbench_kit.data.masks` (never resized with frames).
"""

from __future__ import annotations

import io
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from avsbench_kit.data.audio import log_mel_from_bytes, read_wav_bytes
from avsbench_kit.data.manifest import Manifest
from avsbench_kit.data.masks import TASKS, FolderReader, check_rel, stack_gt
from avsbench_kit.errors import ConfigError, DataError

Reader = Callable[[str], bytes]
AUDIO_MODES = (None, "wav", "log_mel")
__all__ = ["AVSDataset", "FolderReader", "check_rel", "collate", "decode_frame", "decode_row",
           "frames_to_tensor", "task_of"]


def task_of(dataset: str) -> str:
    """The official task (s4/ms3/avss/refavs) of a registered dataset name."""
    from avsbench_kit.data.datasets import DATASETS

    return DATASETS.get(dataset).task


def decode_frame(data: bytes, source: str, image_size: int | None = None) -> np.ndarray:
    """Encoded image -> uint8 ``[H, W, 3]`` RGB (optionally resized to ``image_size``, PIL bilinear)."""
    from PIL import Image

    try:
        img = Image.open(io.BytesIO(data))
        img = img.convert("RGB")
        if image_size is not None and img.size != (image_size, image_size):
            img = img.resize((image_size, image_size), Image.BILINEAR)
        return np.asarray(img, dtype=np.uint8)
    except Exception as exc:
        raise DataError(
            f"cannot decode frame {source}: {exc}",
            hint="the image is corrupt or truncated: restore it, or prepare with --skip-bad",
        ) from exc


def frames_to_tensor(frames: list[np.ndarray]) -> torch.Tensor:
    """uint8 ``[H, W, 3]`` frames -> float32 ``[T, 3, H, W]`` in [0, 1] (x / 255, like ToTensor).

    Stacks the uint8 frames first and converts once (one float buffer instead of T + a copy).
    """
    if not frames:
        return torch.zeros(0, 3, 0, 0)
    stacked = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)
    return stacked.to(torch.float32).div_(255.0).contiguous()


def decode_row(
    row: dict[str, Any],
    task: str,
    read: Reader,
    *,
    load_frames: bool = True,
    load_masks: bool = True,
    audio: str | None = "wav",
    image_size: int | None = None,
    source: str = "",
) -> dict[str, Any]:
    """One manifest row -> the sample dict of :class:`AVSDataset` (files fetched by ``read``)."""
    key = row["sample_key"]
    out: dict[str, Any] = {
        "key": key,
        "clip": row["clip"],
        "split": row["split"],
        "subset": row["subset"],
        "category": row["category"],
        "text": row["text"],
        "is_null": bool(row["is_null"]),
        "fid": int(row["fid"]),
        "annotated": torch.as_tensor(np.asarray(row["annotated"], dtype=bool)),
    }
    if load_frames:
        frames = [decode_frame(read(rel), source + rel, image_size) for rel in row["frames"]]
        shapes = {f.shape for f in frames}
        if len(shapes) > 1:
            raise DataError(
                f"sample {key}: frames have different sizes {sorted(s[:2] for s in shapes)}",
                hint="pass image_size=N to resize every frame to N x N",
            )
        out["frames"] = frames_to_tensor(frames)
    if load_masks:
        masks, _ = stack_gt(row, task, read, source_prefix=source)
        out["masks"] = torch.from_numpy(masks)
    if audio == "wav":
        if not row["audio"]:
            raise DataError(f"sample {key} has no audio file", hint="use audio=None (or 'log_mel' for AVSBench)")
        wav, sr = read_wav_bytes(read(row["audio"]), source + row["audio"])
        out["audio"] = torch.from_numpy(wav)
        out["sample_rate"] = sr
    elif audio == "log_mel":
        if not row["log_mel"]:
            raise DataError(
                f"sample {key} has no log-mel pickle",
                hint="only AVSBench S4/MS3 ship audio_log_mel/*.pkl: use audio='wav' here",
            )
        out["log_mel"] = torch.from_numpy(log_mel_from_bytes(read(row["log_mel"]), source + row["log_mel"]))
    return out


class AVSDataset(Dataset):
    """The samples of one split of a prepared manifest, in manifest order.

    ``audio``: ``"wav"`` (``audio`` [C, S] + ``sample_rate``), ``"log_mel"`` (``log_mel``
    [T, 1, 96, 64] from the shipped pickles) or ``None``. ``task`` defaults to the registered
    dataset's task. Holds only plain rows and the root, so it pickles into DataLoader workers.
    """

    def __init__(
        self,
        manifest: Manifest,
        split: str,
        *,
        load_frames: bool = True,
        load_masks: bool = True,
        audio: str | None = "wav",
        image_size: int | None = None,
        task: str | None = None,
    ) -> None:
        if audio not in AUDIO_MODES:
            raise ConfigError(f"audio={audio!r} is not one of {AUDIO_MODES}", hint="use 'wav', 'log_mel' or None")
        if image_size is not None and image_size <= 0:
            raise ConfigError(f"image_size={image_size} must be positive")
        self.task = task or task_of(manifest.dataset)
        if self.task not in TASKS:
            raise ConfigError(f"unknown task {self.task!r}", hint=f"one of {TASKS}")
        self.dataset = manifest.dataset
        self.fingerprint = manifest.fingerprint
        self.split = split
        self.rows = manifest.rows(split)
        self.reader = FolderReader(manifest.root)
        self.options = {
            "load_frames": load_frames,
            "load_masks": load_masks,
            "audio": audio,
            "image_size": image_size,
        }

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.rows[index]
        return decode_row(row, self.task, self.reader, source=str(self.reader.root) + "/", **self.options)


def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack what can be stacked: equal-shape tensors -> one tensor, numbers/bools -> a tensor,
    anything else (strings, ragged tensors such as clips of different lengths) -> a list."""
    if not batch:
        return {}
    out: dict[str, Any] = {}
    for key in batch[0]:
        values = [sample[key] for sample in batch]
        first = values[0]
        if isinstance(first, torch.Tensor) and all(
            isinstance(v, torch.Tensor) and v.shape == first.shape and v.dtype == first.dtype for v in values
        ):
            out[key] = torch.stack(values)
        elif all(isinstance(v, bool) for v in values):
            out[key] = torch.tensor(values, dtype=torch.bool)
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            out[key] = torch.tensor(values, dtype=torch.int64)
        else:
            out[key] = values
    return out
