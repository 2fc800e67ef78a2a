"""Audio I/O: WAV reading (soundfile), mono mixing, resampling (soxr), AVSBench log-mel pickles.

Corrupt or truncated files raise :class:`DataError` naming the file. libsndfile silently reads
a truncated WAV as a shorter one, so the RIFF header is parsed and checked (:func:`wav_header`);
``prepare`` runs the same check on every WAV (``data/layout.py: check_wav``).

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

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


class BadWav(ValueError):
    """A WAV header that no loader can use; the message is the reason shown to the user."""


#: WAVE format tags the loaders decode, with the sample widths (bits) each allows
_WIDTHS = {1: (8, 16, 24, 32), 3: (32, 64), 6: (8,), 7: (8,)}  # PCM, IEEE float, A-law, mu-law
_TAG_NAMES = {1: "PCM", 3: "float", 6: "A-law", 7: "mu-law"}
_UNKNOWN = (0, 0xFFFFFFFF)  # size fields streaming writers leave unset


@dataclass(frozen=True)
class WavHeader:
    channels: int
    rate: int
    bits: int
    encoding: str
    frames: int


def wav_header(read: Callable[[int, int], bytes], size: int) -> WavHeader:
    """Parse and check a RIFF/RF64 WAVE header through ``read(pos, n)`` on a file of ``size`` bytes.

    Why a parser of our own: libsndfile reads a truncated file as a shorter one and a header-only
    file as zero samples, so a broken WAV would pass ``prepare`` and fail (or silently train on
    silence) much later. Refused: no ``fmt ``/``data`` chunk, chunks that claim more bytes than the
    file holds, zero channels/rate/frames, an encoding or sample width the loaders cannot decode,
    and a block size that disagrees with channels x sample width. Unset sizes (0 or 0xFFFFFFFF, as
    streaming writers leave them) mean "up to the end of the file".
    """
    head = read(0, 12)
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64", b"BW64") or head[8:12] != b"WAVE":
        raise BadWav(f"not a WAV file (starts with {head[:8]!r})")
    riff_size = struct.unpack_from("<I", head, 4)[0]
    if head[:4] == b"RIFF" and riff_size not in _UNKNOWN and riff_size + 8 > size:
        raise BadWav(f"truncated: the RIFF header announces {riff_size + 8} bytes, the file has {size}")
    pos, fmt, ds64_data = 12, None, None
    while pos + 8 <= size:
        chunk = read(pos, 8)
        if len(chunk) < 8:
            break
        cid, csize = chunk[:4], struct.unpack_from("<I", chunk, 4)[0]
        body = pos + 8
        if cid == b"ds64":
            ds64_data = struct.unpack_from("<Q", read(body, 16).ljust(16, b"\0"), 8)[0]
        elif cid == b"fmt ":
            if csize < 16 or body + 16 > size:
                raise BadWav(f"fmt chunk is {min(csize, size - body)} bytes, at least 16 are needed")
            fmt = _parse_fmt(read(body, min(csize, 40)))
        elif cid == b"data":
            if fmt is None:
                raise BadWav("data chunk before any fmt chunk")
            channels, rate, bits, tag = fmt
            present = size - body
            if csize == 0xFFFFFFFF and ds64_data is not None:
                csize = ds64_data
            if csize in _UNKNOWN:
                csize = present
            elif csize > present:
                raise BadWav(f"truncated: the data chunk announces {csize} bytes, {present} are present")
            frames = csize // (channels * bits // 8)
            if frames == 0:
                raise BadWav("no audio frames (the data chunk is empty)")
            return WavHeader(channels, rate, bits, _TAG_NAMES[tag], frames)
        if csize == 0xFFFFFFFF:  # an unset size on a chunk other than data: nothing after it can be found
            break
        pos = body + csize + (csize & 1)
    if fmt is None:
        raise BadWav(f"no fmt chunk (a {size}-byte header without audio)")
    raise BadWav("no data chunk")


def _parse_fmt(body: bytes) -> tuple[int, int, int, int]:
    tag, channels, rate, _, block, bits = struct.unpack_from("<HHIIHH", body, 0)
    if tag == 0xFFFE and len(body) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the real tag opens the sub-format GUID
        tag = struct.unpack_from("<H", body, 24)[0]
    if tag not in _WIDTHS:
        raise BadWav(f"unsupported encoding (format tag {tag:#06x}); the loaders read PCM, float, A-law, mu-law")
    if channels == 0 or rate == 0:
        raise BadWav(f"{channels} channel(s) at {rate} Hz")
    if bits not in _WIDTHS[tag]:
        allowed = "/".join(map(str, _WIDTHS[tag]))
        raise BadWav(f"{bits}-bit {_TAG_NAMES[tag]} samples; {_TAG_NAMES[tag]} WAVs hold {allowed}-bit samples")
    if block != channels * bits // 8:
        raise BadWav(f"block size {block} bytes does not match {channels} channel(s) x {bits // 8} byte(s)")
    return channels, rate, bits, tag


def check_riff(data: bytes, source: str) -> None:
    """Raise :class:`DataError` if WAV bytes have a header the loaders cannot use (see
    :func:`wav_header`). Non-RIFF files (e.g. FLAC) are left to libsndfile."""
    if data[:4] not in (b"RIFF", b"RF64", b"BW64"):
        return
    try:
        wav_header(lambda pos, n: data[pos : pos + n], len(data))
    except BadWav as exc:
        raise DataError(f"bad WAV {source}: {exc}", hint=_CORRUPT_HINT) from None


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
