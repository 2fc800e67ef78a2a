"""Audio I/O: WAV reading (soundfile), mono mixing, resampling (soxr), AVSBench log-mel pickles.

Corrupt or truncated files raise :class:`DataError` naming the file. libsndfile silently reads
a truncated WAV as a shorter one, so the RIFF chunk sizes are checked against the bytes present.

About the ``audio_log_mel/*.pkl`` files: they are plain ``pickle.dump`` s of torch tensors, and
unpickling can run arbitrary code. We (1) only load them from inside the dataset root (the
loader checks the path), and (2) unpickle with an allow-list: only torch's tensor-rebuild
function and ``OrderedDict`` may be referenced, and the storage bytes inside are read with
``torch.load(..., weights_only=True)`` instead of torch's own ``weights_only=False``.
"""

from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np

from avsbench_kit.errors import DataError

LOG_MEL_EXAMPLE_SHAPE = (1, 96, 64)

_CORRUPT_HINT = (
    "the file is corrupt or truncated: restore it from the official release, or re-run "
    "`avskit prepare` with --skip-bad to exclude its sample"
)


def _read_bytes(path: str | Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise DataError(
            f"cannot read {what} {path}: {exc.strerror or exc}",
            hint="the manifest points at a file that is gone: re-run `avskit prepare`",
        ) from exc


def check_riff(data: bytes, source: str) -> None:
    """Raise if a RIFF/WAVE file's chunks claim more bytes than the file holds (truncation).

    Streaming writers may leave size fields at 0 or 0xFFFFFFFF; those are not checked.
    Non-RIFF files (e.g. FLAC) are left to libsndfile.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return
    riff_size = struct.unpack_from("<I", data, 4)[0]
    if riff_size not in (0, 0xFFFFFFFF) and riff_size + 8 > len(data):
        raise DataError(
            f"truncated WAV {source}: the RIFF header announces {riff_size + 8} bytes, the file has {len(data)}",
            hint=_CORRUPT_HINT,
        )
    pos, seen_data = 12, False
    while pos + 8 <= len(data):
        chunk_id = data[pos : pos + 4]
        size = struct.unpack_from("<I", data, pos + 4)[0]
        if chunk_id == b"data":
            seen_data = True
            if size not in (0, 0xFFFFFFFF) and pos + 8 + size > len(data):
                raise DataError(
                    f"truncated WAV {source}: the data chunk announces {size} bytes, "
                    f"{len(data) - pos - 8} are present",
                    hint=_CORRUPT_HINT,
                )
            return
        pos += 8 + size + (size & 1)
    if not seen_data:
        raise DataError(f"WAV {source} has no data chunk", hint=_CORRUPT_HINT)


def read_wav_bytes(data: bytes, source: str = "<bytes>") -> tuple[np.ndarray, int]:
    """Decode WAV bytes to float32 ``[channels, samples]`` in [-1, 1] and the sample rate."""
    import soundfile as sf

    check_riff(data, source)
    try:
        samples, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError / TypeError
        raise DataError(f"cannot decode audio {source}: {exc}", hint=_CORRUPT_HINT) from exc
    return np.ascontiguousarray(samples.T), int(sr)


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a WAV file: float32 ``[channels, samples]`` in [-1, 1] and its sample rate."""
    return read_wav_bytes(_read_bytes(path, "audio"), str(path))


def to_mono(x: np.ndarray) -> np.ndarray:
    """Mean over channels (VGGish's rule): ``[C, S]`` or ``[S]`` -> float32 ``[S]``."""
    x = np.asarray(x)
    if x.ndim == 1:
        return x.astype(np.float32, copy=False)
    if x.ndim != 2:
        raise ValueError(f"expected [channels, samples] or [samples], got shape {x.shape}")
    return x.mean(axis=0, dtype=np.float64).astype(np.float32)


def resample(x: np.ndarray, sr_from: int, sr_to: int) -> np.ndarray:
    """Resample ``[S]`` or ``[C, S]`` float audio with soxr (high quality); float32 out."""
    x = np.asarray(x, dtype=np.float32)
    if sr_from <= 0 or sr_to <= 0:
        raise ValueError(f"sample rates must be positive, got {sr_from} -> {sr_to}")
    if sr_from == sr_to:
        return x.copy()
    import soxr

    if x.ndim == 1:
        return soxr.resample(x, sr_from, sr_to).astype(np.float32, copy=False)
    if x.ndim != 2:
        raise ValueError(f"expected [channels, samples] or [samples], got shape {x.shape}")
    # soxr wants [samples, channels]
    out = soxr.resample(np.ascontiguousarray(x.T), sr_from, sr_to)
    return np.ascontiguousarray(out.T, dtype=np.float32)


class _TensorUnpickler(pickle.Unpickler):
    """Unpickles a pickled torch tensor and nothing else (see the module docstring)."""

    def find_class(self, module: str, name: str) -> Any:
        import collections

        import torch

        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return torch._utils._rebuild_tensor_v2
        if (module, name) == ("torch._utils", "_rebuild_tensor"):
            return torch._utils._rebuild_tensor
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch.storage", "_load_from_bytes"):
            return lambda b: torch.load(io.BytesIO(b), weights_only=True)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only torch tensors are allowed)")


def log_mel_from_bytes(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Unpickle an AVSBench log-mel tensor: float32 ``[N, 1, 96, 64]`` (N = 5 in S4/MS3)."""
    import torch

    try:
        obj = _TensorUnpickler(io.BytesIO(data)).load()
    except Exception as exc:
        raise DataError(f"cannot unpickle log-mel {source}: {exc}", hint=_CORRUPT_HINT) from exc
    if not isinstance(obj, torch.Tensor):
        raise DataError(f"log-mel {source} holds a {type(obj).__name__}, not a tensor", hint=_CORRUPT_HINT)
    arr = obj.detach().to(torch.float32).numpy()
    if arr.ndim != 4 or tuple(arr.shape[1:]) != LOG_MEL_EXAMPLE_SHAPE or arr.shape[0] < 1:
        raise DataError(
            f"log-mel {source} has shape {list(arr.shape)}, expected [N, 1, 96, 64]",
            hint="AVSBench audio_log_mel/*.pkl files hold [5, 1, 96, 64] VGGish examples: restore the file",
        )
    return np.ascontiguousarray(arr)


def load_log_mel_pickle(path: str | Path) -> np.ndarray:
    """Load an AVSBench ``audio_log_mel/*.pkl`` ([5, 1, 96, 64] float32).

    Only call it on files inside a dataset root you trust (pickles are code, see module docstring).
    """
    return log_mel_from_bytes(_read_bytes(path, "log-mel"), str(path))
