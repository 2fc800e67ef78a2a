"""Ground-truth masks decoded exactly as each benchmark's official loader decodes them.

Metrics and loaders both go through :func:`decode_gt`, so a mask is never read two ways. The
rules (official_protocols.md §1.5, §2, §3, §4.3, quirk 9):

* ``s4``: PIL ``convert('1')`` — Floyd–Steinberg dithering of grey levels, done by PIL itself;
* ``ms3``: PIL ``convert('P')`` then index / 255 — grey levels pass through as fractions;
* ``refavs``: ``cv2.imread`` (BGR) → ``cv2.resize`` to 256×256 (bilinear) → grey → ``> 0``;
* ``avss``: RGB → class index by exact palette match (unknown colours → 0), NEAREST to 224×224.

PIL, numpy and cv2 are imported inside the functions: the CLI imports this package at start-up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from avsbench_kit.errors import DataError

TASKS = ("s4", "ms3", "avss", "refavs")

#: Ref-AVS evaluates at 256×256, AVSS at 224×224 (fixed by the official loaders).
REFAVS_SIZE = 256
AVSS_SIZE = 224

#: The 71-colour AVSS label palette (class index -> RGB), copied from the spec's
#: ``protocol_constants.npz`` (``avss_palette_u8``); a test checks it still equals that file.
AVSS_PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128), (128, 0, 128),
    (0, 128, 128), (128, 128, 128), (64, 0, 0), (192, 0, 0), (64, 128, 0), (192, 128, 0),
    (64, 0, 128), (192, 0, 128), (64, 128, 128), (192, 128, 128), (0, 64, 0), (128, 64, 0),
    (0, 192, 0), (128, 192, 0), (0, 64, 128), (128, 64, 128), (0, 192, 128), (128, 192, 128),
    (64, 64, 0), (192, 64, 0), (64, 192, 0), (192, 192, 0), (64, 64, 128), (192, 64, 128),
    (64, 192, 128), (192, 192, 128), (0, 0, 64), (128, 0, 64), (0, 128, 64), (128, 128, 64),
    (0, 0, 192), (128, 0, 192), (0, 128, 192), (128, 128, 192), (64, 0, 64), (192, 0, 64),
    (64, 128, 64), (192, 128, 64), (64, 0, 192), (192, 0, 192), (64, 128, 192), (192, 128, 192),
    (0, 64, 64), (128, 64, 64), (0, 192, 64), (128, 192, 64), (0, 64, 192), (128, 64, 192),
    (0, 192, 192), (128, 192, 192), (64, 64, 64), (192, 64, 64), (64, 192, 64), (192, 192, 64),
    (64, 64, 192), (192, 64, 192), (64, 192, 192), (192, 192, 192), (32, 0, 0), (160, 0, 0),
    (32, 128, 0), (160, 128, 0), (32, 0, 128), (160, 0, 128), (32, 128, 128),
)
NUM_AVSS_CLASSES = len(AVSS_PALETTE)


def avss_palette() -> np.ndarray:
    """The AVSS palette as a fresh ``uint8 [71, 3]`` array."""
    return np.asarray(AVSS_PALETTE, dtype=np.uint8)


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")


def _bad(source: str, exc: BaseException | str) -> DataError:
    return DataError(
        f"cannot decode mask {source}: {exc}",
        hint="the file is not a readable PNG (truncated or corrupt): restore it from the official "
        "release, or re-run `avskit prepare` with --skip-bad to exclude its sample",
    )


def _open_pil(data: bytes, source: str):
    """Open and fully decode with PIL (``Image.open`` is lazy: truncation shows up on load)."""
    import io

    from PIL import Image

    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError... for bad files
        raise _bad(source, exc) from exc
    return img


def _palette_index(rgb: np.ndarray) -> np.ndarray:
    """Class index of every pixel by exact colour match; colours outside the palette -> 0.

    The official code builds a one-hot over the palette and takes its argmax, so an unmatched
    colour (all-zero one-hot) becomes class 0; palette colours are distinct, so a match is unique.
    """
    codes = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    pal = avss_palette().astype(np.int64)
    pal_codes = (pal[:, 0] << 16) | (pal[:, 1] << 8) | pal[:, 2]
    order = np.argsort(pal_codes)
    sorted_codes = pal_codes[order]
    pos = np.searchsorted(sorted_codes, codes).clip(0, len(sorted_codes) - 1)
    hit = sorted_codes[pos] == codes
    return np.where(hit, order[pos], 0).astype(np.int64)


def decode_gt_bytes(data: bytes, task: str, source: str = "<bytes>") -> np.ndarray:
    """Decode an encoded mask (PNG bytes) with ``task``'s official rule; ``source`` names it in errors.

    Returns float32 ``[H, W]`` (s4: {0,1}; ms3: index/255; refavs: {0,1} at 256×256) or, for
    avss, an int64 class map ``[224, 224]``.
    """
    _check_task(task)
    if task == "refavs":
        import cv2

        buf = np.frombuffer(data, dtype=np.uint8)
        try:
            img = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
        except cv2.error as exc:
            raise _bad(source, exc) from exc
        if img is None:
            raise _bad(source, "OpenCV could not decode it")
        img = cv2.resize(img, (REFAVS_SIZE, REFAVS_SIZE))
        grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        return (grey > 0).astype(np.float32)

    img = _open_pil(data, source)
    try:
        if task == "s4":
            return np.asarray(img.convert("1"), dtype=np.float32)
        if task == "ms3":
            index = np.asarray(img.convert("P"), dtype=np.uint8)
            return index.astype(np.float32) / np.float32(255.0)
        # avss
        from PIL import Image

        rgb = img.convert("RGB")
        if rgb.size != (AVSS_SIZE, AVSS_SIZE):
            rgb = rgb.resize((AVSS_SIZE, AVSS_SIZE), Image.NEAREST)
        return _palette_index(np.asarray(rgb, dtype=np.uint8))
    except DataError:
        raise
    except Exception as exc:
        raise _bad(source, exc) from exc


def decode_gt(path: str | Path, task: str) -> np.ndarray:
    """Decode the GT mask file at ``path`` with ``task``'s official rule (see :func:`decode_gt_bytes`)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(
            f"cannot read mask {path}: {exc.strerror or exc}",
            hint="the manifest points at a file that is gone: re-run `avskit prepare`",
        ) from exc
    return decode_gt_bytes(data, task, str(path))


def empty_gt(task: str, size: tuple[int, int]) -> np.ndarray:
    """The all-background map of a frame without a GT file (class 0 for avss)."""
    _check_task(task)
    if task == "avss":
        return np.zeros((AVSS_SIZE, AVSS_SIZE), dtype=np.int64)
    if task == "refavs":
        return np.zeros((REFAVS_SIZE, REFAVS_SIZE), dtype=np.float32)
    return np.zeros(size, dtype=np.float32)


def _native_size(row: dict[str, Any], read) -> tuple[int, int]:
    """(H, W) of the clip's first frame: the GT size of S4/MS3 frames with no mask file."""
    import io

    from PIL import Image

    first = row["frames"][0] if row["frames"] else ""
    if not first:
        return (AVSS_SIZE, AVSS_SIZE)
    try:
        with Image.open(io.BytesIO(read(first))) as img:
            w, h = img.size
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"cannot read frame {first}: {exc}", hint="restore the file or prepare with --skip-bad") from exc
    return (h, w)


def stack_gt(row: dict[str, Any], task: str, read, source_prefix: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Masks ``[T, H, W]`` and annotated flags ``[T]`` of one row, files fetched by ``read(rel) -> bytes``.

    Shared by the folder reader and the shard reader so both decode identically.
    """
    _check_task(task)
    decoded: list[np.ndarray | None] = []
    for rel in row["masks"]:
        decoded.append(decode_gt_bytes(read(rel), task, source_prefix + rel) if rel else None)
    present = [m for m in decoded if m is not None]
    if present:
        size = present[0].shape
    elif task in ("s4", "ms3"):
        size = _native_size(row, read)
    else:
        size = (0, 0)  # ignored by empty_gt for avss/refavs
    for rel, m in zip(row["masks"], decoded):
        if m is not None and m.shape != present[0].shape:
            raise DataError(
                f"mask {source_prefix + rel} is {m.shape[1]}x{m.shape[0]}, the clip's first mask is "
                f"{present[0].shape[1]}x{present[0].shape[0]}",
                hint="all GT masks of a clip must have one size: restore the file from the official release",
            )
    masks = [m if m is not None else empty_gt(task, size) for m in decoded]
    dtype = np.int64 if task == "avss" else np.float32
    out = np.stack(masks) if masks else np.zeros((0, *size), dtype=dtype)
    return out.astype(dtype, copy=False), np.asarray(row["annotated"], dtype=bool)


def check_rel(rel: str, source: str) -> str:
    """Refuse manifest paths that leave the dataset root (absolute or with ``..``)."""
    from pathlib import PurePosixPath

    p = PurePosixPath(rel)
    if not rel or p.is_absolute() or ".." in p.parts:
        raise DataError(
            f"manifest path {rel!r} of {source} is not inside the dataset root",
            hint="manifests hold paths relative to the root only: re-run `avskit prepare`",
        )
    return rel


class FolderReader:
    """``read(rel) -> bytes`` over a dataset root; picklable (DataLoader workers), torch-free."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def __call__(self, rel: str) -> bytes:
        check_rel(rel, str(self.root))
        path = self.root / rel
        try:
            return path.read_bytes()
        except OSError as exc:
            raise DataError(
                f"cannot read {path}: {exc.strerror or exc}",
                hint="the manifest points at a file that is gone: restore it or re-run `avskit prepare`",
            ) from exc


def sample_gt(row: dict[str, Any], root: str | Path, task: str) -> tuple[np.ndarray, np.ndarray]:
    """All GT masks of a manifest row (zeros where no GT file) and its annotated flags ``[T]``."""
    return stack_gt(row, task, FolderReader(root), source_prefix=str(Path(root)) + "/")
