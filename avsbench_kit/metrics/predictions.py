"""Prediction folders for ``avskit eval``: naming, scanning, decoding, validation.

Layout: ``DIR/<sample_key>/<frame_index>.{npy,npz,png}`` — one file per scored frame; the
sample key is the manifest's, the frame index is the 0-based position in the manifest's
``frames`` list (AVSS: indices ``num_frames..9`` may hold the predictions of the padded frames).

Binary tasks (S4, MS3, Ref-AVS):
* ``.npy`` / ``.npz``: float logits ``[H,W]`` or ``[1,H,W]``, any float dtype (float64 is rounded to
  float32, the dtype the official code scores); NaN and ±inf are rejected (clip logits instead,
  e.g. to ±1e4 — float16 overflows to inf above 65504). A bool array is a mask (see PNG).
* ``.png``: a mask. Grey or palette PNGs: foreground = value >= 128, or value == 1 when the
  file's largest value is 1 (0/1 masks); 1-bit PNGs as they are. Foreground becomes logit
  +1e4 and background -1e4 (sigmoid exactly 1 and 0), so every threshold of the F curve is
  defined: a mask passes all thresholds up to 1.0 on its foreground and only threshold 0
  elsewhere. RGB(A) PNGs must be grey (R = G = B).

AVSS: integer class maps ``[H,W]`` (``.npy``/``.npz`` of any integer dtype, or a grey/palette PNG
of class indices 0..70, or an RGB PNG in the AVSS palette) or float logits ``[71,H,W]``
(argmax of the float32 softmax, as officially).

numpy, PIL and torch are imported inside the functions (the CLI imports this module lazily anyway).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from avsbench_kit.errors import DataError

SUFFIXES = (".npy", ".npz", ".png")
#: Logit magnitude given to mask foreground (+) and background (-).
MASK_LOGIT = 1e4
#: ``--pred`` values that name a reference predictor instead of a folder.
REFERENCE_PREDICTORS = ("empty", "full", "gt")
RESIZE_MODES = ("nearest", "bilinear")
NAMING = "DIR/<sample_key>/<frame_index>.{npy,npz,png} (frame index = position in the manifest's frames list, from 0)"


@dataclass
class PredictionIndex:
    """What a prediction folder holds: ``files[sample_key][frame_index] = path``, plus strays."""

    root: Path
    files: dict[str, dict[int, str]] = field(default_factory=dict)  # str paths: Path objects cost ~10 µs each
    stray: list[tuple[str, str]] = field(default_factory=list)  # (path, why it is not a prediction)


def scan(root: str | Path) -> PredictionIndex:
    """Index ``root`` (two directory levels, no file is opened)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"prediction folder {root} does not exist" if not root.exists() else f"{root} is not a folder",
            hint=f"--pred takes a folder laid out as {NAMING}, or one of {', '.join(REFERENCE_PREDICTORS)}",
        )
    index = PredictionIndex(root)
    with os.scandir(root) as top:
        entries = sorted(top, key=lambda e: e.name)
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            index.stray.append((entry.path, "a file directly in the prediction folder (expected sample sub-folders)"))
            continue
        frames: dict[int, str] = {}
        with os.scandir(entry.path) as sub:
            names = sorted(e.name for e in sub)
        for name in names:
            if name.startswith("."):
                continue
            path = os.path.join(entry.path, name)
            stem, dot, suffix = name.rpartition(".")
            suffix = "." + suffix.lower() if dot else ""
            if suffix not in SUFFIXES or not stem.isdigit() or str(int(stem)) != stem:
                index.stray.append((path, "not named <frame_index>.npy|.npz|.png"))
                continue
            k = int(stem)
            if k in frames:
                index.stray.append((path, f"a second file for frame {k} (also {os.path.basename(frames[k])})"))
                continue
            frames[k] = path
        index.files[entry.name] = frames
    return index


# ---------------------------------------------------------------------------------------------
# decoding
# ---------------------------------------------------------------------------------------------
def _suffix(path: str | Path) -> str:
    return os.path.splitext(os.fspath(path))[1].lower()


def _bad(path: str | Path, what: str, hint: str) -> DataError:
    return DataError(f"prediction {path}: {what}", hint=hint)


_FLOAT_HINT = "save float logits with numpy.save (float16/float32), or a 0/255 PNG mask"


_npy_headers: dict[bytes, tuple[Any, tuple[int, ...], bool]] = {}


def _npy_header(data: bytes):
    """(dtype, shape, fortran, payload offset) of a ``.npy`` file from its first bytes, with the
    parse cached by header text (np.load parses every header with ``ast``: a third of the per-file
    cost); None if anything is unusual or the header is not wholly in ``data``."""
    import io

    import numpy as np

    if data[:6] != b"\x93NUMPY" or len(data) < 10:
        return None
    start = 10 if data[6] == 1 else 12
    hlen = int.from_bytes(data[8:start], "little")
    if len(data) < start + hlen:
        return None
    key = data[6:start + hlen]
    info = _npy_headers.get(key)
    if info is None:
        try:
            fp = io.BytesIO(data)
            version = np.lib.format.read_magic(fp)
            reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = reader(fp)
        except Exception:
            return None
        if dtype.hasobject:
            return None
        info = (dtype, tuple(shape), bool(fortran))
        if len(_npy_headers) < 64:
            _npy_headers[key] = info
    return (*info, start + hlen)


def _read_npy_fast(path: str | Path):
    """A ``.npy`` file via one read and a cached header parse; None if anything is unusual
    (np.load then reads it, with its own error messages)."""
    import numpy as np

    with open(path, "rb") as fh:
        data = fh.read()
    info = _npy_header(data)
    if info is None:
        return None
    dtype, shape, fortran, offset = info
    count = int(np.prod(shape)) if shape else 1
    if len(data) - offset < count * dtype.itemsize:
        return None
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    return arr.reshape(shape, order="F" if fortran else "C")


def read_logit_frames(paths: list[str], size: tuple[int, int], buffer):
    """One sample's binary-task frames read straight into ``buffer(dtype, (T, H, W))`` (a reused
    array), when every file is a plain ``.npy`` of float16 or float32 logits ``[H,W]`` /
    ``[1,H,W]`` at ``size`` with one dtype; None otherwise (the caller then loads file by file
    with :func:`load_binary`, which gives the checks and messages). The NaN/inf check is the
    caller's. Why: at ~40k files per Ref-AVS test, a bytes object per file, a copy into the
    stacked array and Python's file object were most of the reading cost."""
    import numpy as np

    out = None
    for i, path in enumerate(paths):
        if not path.endswith(".npy"):
            return None
        fd = os.open(path, os.O_RDONLY)
        try:
            info = _npy_header(os.pread(fd, 256, 0))
            if info is None:
                return None
            dtype, shape, fortran, offset = info
            if fortran or shape not in (size, (1, *size)):
                return None
            if out is None:
                if dtype not in (np.dtype(np.float16), np.dtype(np.float32)):
                    return None
                out = buffer(dtype, (len(paths), *size))
            elif dtype != out.dtype:
                return None
            row = out[i]
            if os.preadv(fd, [memoryview(row).cast("B")], offset) != row.nbytes:
                return None
        finally:
            os.close(fd)
    return out


def _read_array(path: str | Path):
    import numpy as np

    try:
        if _suffix(path) == ".npy":
            arr = _read_npy_fast(path)
            return arr if arr is not None else np.load(path, allow_pickle=False)
        with np.load(path, allow_pickle=False) as z:
            names = list(z.files)
            if "logits" in names:
                return z["logits"]
            if len(names) != 1:
                raise _bad(path, f"holds arrays {names}", "store one array, or name it 'logits'")
            return z[names[0]]
    except DataError:
        raise
    except Exception as exc:  # numpy raises ValueError/OSError/zipfile errors for bad files
        raise _bad(path, f"cannot be read ({type(exc).__name__}: {exc})", _FLOAT_HINT) from exc


def _read_png(path: str | Path):
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            arr = np.asarray(img)
    except Exception as exc:
        raise _bad(path, f"cannot be read as PNG ({exc})", "rewrite it as a grey 0/255 PNG") from exc
    return mode, arr


def _mask_to_logits(fg):
    import numpy as np

    return np.where(fg, np.float32(MASK_LOGIT), np.float32(-MASK_LOGIT)).astype(np.float32)


def _png_binary(path: str | Path):
    import numpy as np

    mode, arr = _read_png(path)
    if arr.ndim == 3:
        if arr.shape[2] == 4:
            arr = arr[..., :3]
        if not ((arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all()):
            raise _bad(path, f"is a colour ({mode}) PNG", "binary masks must be grey (0 = background, 255 = foreground)")
        arr = arr[..., 0]
    if arr.dtype == bool:
        return _mask_to_logits(arr)
    if arr.size and int(arr.max()) <= 1:  # a 0/1 mask
        return _mask_to_logits(arr == 1)
    if arr.dtype == np.uint8:
        return _mask_to_logits(arr >= 128)
    if arr.dtype == np.uint16:
        return _mask_to_logits(arr >= 32768)
    raise _bad(path, f"is a {mode} PNG", "binary masks must be 8-bit grey (0 / 255), palette or 1-bit PNGs")


_scratch = threading.local()


def all_finite(arr) -> bool:
    """No NaN/±inf in a float array (fast paths for float16 and float32)."""
    import numpy as np

    if not arr.size:
        return True
    if arr.dtype == np.float16:  # exponent bits all ones = inf/NaN (np.isfinite is slow on float16)
        buf = getattr(_scratch, "u16", None)
        if buf is None or buf.size < arr.size:
            buf = _scratch.u16 = np.empty(arr.size, np.uint16)
        bits = np.bitwise_and(arr.reshape(-1).view(np.uint16), 0x7C00, out=buf[: arr.size])
        return int(bits.max()) != 0x7C00
    return bool(np.isfinite(arr.min()) and np.isfinite(arr.max()))


def _check_finite(path: str | Path, arr) -> None:
    import numpy as np

    if all_finite(arr):
        return
    what = "NaN" if np.isnan(arr).any() else "±inf"
    raise _bad(
        path,
        f"contains {what} logits",
        "logits must be finite: fix the model output, or clip it (e.g. to ±1e4; float16 overflows to inf above 65504)",
    )


def load_binary(path: str | Path, check_finite: bool = True):
    """Logits ``[H,W]`` (numpy float32, or float16 as stored) of one binary-task prediction file.

    ``check_finite=False`` leaves the NaN/inf check to the caller (one check per stacked sample)."""
    import numpy as np

    if _suffix(path) == ".png":
        return _png_binary(path)
    arr = _read_array(path)
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise _bad(path, f"has shape {tuple(arr.shape)}", "a binary-task prediction is one frame of logits, [H,W] or [1,H,W]")
    if arr.dtype == bool:
        return _mask_to_logits(arr)
    if arr.dtype.kind != "f":
        raise _bad(path, f"has dtype {arr.dtype}", _FLOAT_HINT + " (integer arrays are ambiguous: 0/1 or 0/255?)")
    if arr.dtype != np.float16:  # float16 stays: exact in float32, and scored by table look-up
        arr = arr.astype(np.float32, copy=False)
    if check_finite:
        _check_finite(path, arr)
    return arr


def load_avss(path: str | Path, num_classes: int = 71):
    """AVSS prediction: ``("labels", int64 [H,W])`` or ``("logits", float32 [C,H,W])``."""
    import numpy as np

    hint = f"AVSS predictions are class maps (integer [H,W] .npy, or a PNG of indices 0..{num_classes - 1} or AVSS palette colours) or float logits [{num_classes},H,W]"
    if _suffix(path) == ".png":
        mode, arr = _read_png(path)
        if arr.ndim == 3:
            from avsbench_kit.data.masks import avss_palette

            rgb = arr[..., :3].astype(np.int64)
            pal = avss_palette().astype(np.int64)
            codes = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
            pal_codes = (pal[:, 0] << 16) | (pal[:, 1] << 8) | pal[:, 2]
            lookup = {int(c): i for i, c in enumerate(pal_codes)}
            uniq = np.unique(codes)
            unknown = [int(u) for u in uniq if int(u) not in lookup]
            if unknown:
                u = unknown[0]
                raise _bad(path, f"has colour ({u >> 16},{(u >> 8) & 255},{u & 255}) outside the AVSS palette", hint)
            lut_keys = np.array(sorted(lookup), dtype=np.int64)
            lut_vals = np.array([lookup[int(k)] for k in lut_keys], dtype=np.int64)
            return "labels", lut_vals[np.searchsorted(lut_keys, codes)]
        arr = arr.astype(np.int64)
    else:
        arr = _read_array(path)
        while arr.ndim > 3 and arr.shape[0] == 1:
            arr = arr[0]
        if arr.dtype.kind == "f":
            if arr.ndim != 3 or arr.shape[0] != num_classes:
                raise _bad(path, f"float array of shape {tuple(arr.shape)}", hint)
            arr = arr.astype(np.float32, copy=False)
            _check_finite(path, arr)
            return "logits", arr
        if arr.dtype.kind not in "iu":
            raise _bad(path, f"has dtype {arr.dtype}", hint)
        if arr.ndim == 3 and arr.shape[0] == 1:
            arr = arr[0]
        if arr.ndim != 2:
            raise _bad(path, f"integer array of shape {tuple(arr.shape)}", hint)
        arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
        raise _bad(path, f"has class index {int(arr.max()) if arr.max() >= num_classes else int(arr.min())}", hint)
    return "labels", arr


# ---------------------------------------------------------------------------------------------
# resolution
# ---------------------------------------------------------------------------------------------
def fit_size(arr, size: tuple[int, int], path: str | Path, resize: Optional[str], scored_as: str, labels: bool = False):
    """``arr`` (``[H,W]`` or ``[C,H,W]`` numpy) at ``size``, resampled only when ``resize`` says so."""
    import numpy as np

    have = tuple(arr.shape[-2:])
    if have == tuple(size):
        return arr, False
    if resize is None:
        raise _bad(
            path,
            f"is {have[1]}x{have[0]}, but {scored_as} is scored at {size[1]}x{size[0]}",
            f"save predictions at {size[1]}x{size[0]}, or pass --resize nearest|bilinear to resample them "
            "(that changes the numbers: report it)",
        )
    import torch

    t = torch.from_numpy(np.array(arr, dtype=np.float32)).reshape(1, -1, *have)
    mode = "nearest" if labels else resize
    kwargs = {} if mode == "nearest" else {"align_corners": False}
    out = torch.nn.functional.interpolate(t, size=tuple(size), mode=mode, **kwargs)[0]
    out = out.reshape(*arr.shape[:-2], *size).numpy()
    return (out.round().astype(np.int64) if labels else out.astype(np.float32)), True


# ---------------------------------------------------------------------------------------------
# reference predictors
# ---------------------------------------------------------------------------------------------
def reference_prediction(name: str, gt, task: str):
    """Predictions of a reference predictor for one sample's GT ``[T,H,W]`` (numpy)."""
    import numpy as np

    if task == "avss":
        if name == "empty":
            return np.zeros(gt.shape, dtype=np.int64)
        if name == "gt":
            return gt.astype(np.int64)
        raise DataError("--pred full is not defined for avss (which class would 'full' be?)",
                        hint="use --pred empty or --pred gt as AVSS anchors")
    if name == "empty":
        return np.full(gt.shape, -MASK_LOGIT, dtype=np.float32)
    if name == "full":
        return np.full(gt.shape, MASK_LOGIT, dtype=np.float32)
    if name == "gt":
        return _mask_to_logits(gt >= 0.5)
    raise ValueError(name)


def describe_missing(root: Path, key: str, frame: int) -> str:
    return f"{root}/{key}/{frame}.npy|.npz|.png"


def first(items: list[Any], n: int = 3) -> str:
    return ", ".join(str(i) for i in items[:n]) + (f" (+{len(items) - n} more)" if len(items) > n else "")
