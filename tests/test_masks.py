"""GT decoding: each benchmark's official rule, checked against independent computations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from avsbench_kit.data.masks import AVSS_PALETTE, avss_palette, decode_gt, decode_gt_bytes, sample_gt
from avsbench_kit.errors import DataError
from shared_data import shared_file



def _png(path: Path, arr: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode=mode).save(path) if mode else Image.fromarray(arr).save(path)
    return path


def _grey_ramp(h: int = 40, w: int = 48) -> np.ndarray:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=(h, w), dtype=np.uint8)
    arr[:5] = 0
    arr[5:10] = 255
    arr[10:15] = 128
    return arr


# ---- palette ----------------------------------------------------------------------------------
def test_palette_equals_spec_constants():
    spec = np.load(shared_file("spec/protocol_constants.npz"))["avss_palette_u8"]
    assert spec.dtype == np.uint8
    np.testing.assert_array_equal(avss_palette(), spec)


def test_palette_follows_the_bit_reversed_voc_rule():
    # class j: bits 0,3,6 -> red from the MSB down, bits 1,4,7 -> green, bits 2,5 -> blue
    def colour(j: int) -> tuple[int, int, int]:
        rgb = [0, 0, 0]
        for level in range(8):
            for ch in range(3):
                rgb[ch] |= ((j >> (3 * level + ch)) & 1) << (7 - level)
        return tuple(rgb)

    assert len(AVSS_PALETTE) == 71
    assert [colour(j) for j in range(71)] == list(AVSS_PALETTE)
    assert len(set(AVSS_PALETTE)) == 71


# ---- s4 / ms3: PIL rules ------------------------------------------------------------------------
def test_s4_dithers_like_pil_and_matches_to_tensor(tmp_path):
    from torchvision.transforms.functional import to_tensor

    p = _png(tmp_path / "m.png", _grey_ramp())
    got = decode_gt(p, "s4")
    ref = to_tensor(Image.open(p).convert("1"))[0].numpy()  # the official loader's two calls
    assert got.dtype == np.float32 and got.shape == (40, 48)
    np.testing.assert_array_equal(got, ref)
    assert set(np.unique(got)) <= {0.0, 1.0}
    # rows of constant grey 128 are dithered (a mix of 0 and 1), not thresholded to one value
    assert 0.2 < got[10:15].mean() < 0.8
    np.testing.assert_array_equal(got[:5], 0.0)
    np.testing.assert_array_equal(got[5:10], 1.0)


def test_ms3_passes_grey_levels_through_as_fractions(tmp_path):
    from torchvision.transforms.functional import to_tensor

    arr = _grey_ramp()
    p = _png(tmp_path / "m.png", arr)
    got = decode_gt(p, "ms3")
    np.testing.assert_array_equal(got, arr.astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(got, to_tensor(Image.open(p).convert("P"))[0].numpy())


def test_ms3_rgb_mask_goes_through_pil_palette_conversion(tmp_path):
    from torchvision.transforms.functional import to_tensor

    rgb = np.stack([_grey_ramp()] * 3, axis=-1)
    p = _png(tmp_path / "rgb.png", rgb)
    np.testing.assert_array_equal(decode_gt(p, "ms3"), to_tensor(Image.open(p).convert("P"))[0].numpy())


# ---- refavs: cv2 bilinear to 256 then > 0 --------------------------------------------------------
def test_refavs_resizes_bilinear_and_thresholds_above_zero(tmp_path):
    arr = np.zeros((180, 320), np.uint8)
    arr[50:90, 100:200] = 1  # a barely-grey object still counts (> 0, not > 127)
    arr[120, :] = 255  # a 1-px line survives the bilinear downscale
    p = _png(tmp_path / "00000.png", arr)
    got = decode_gt(p, "refavs")
    assert got.shape == (256, 256) and got.dtype == np.float32
    assert set(np.unique(got)) == {0.0, 1.0}
    # independent: nearest-neighbour samples of the object are a subset of the bilinear result
    ys = np.minimum(((np.arange(256) + 0.5) * 180 / 256).astype(int), 179)
    xs = np.minimum(((np.arange(256) + 0.5) * 320 / 256).astype(int), 319)
    nearest = arr[np.ix_(ys, xs)] > 0
    assert np.all(got[nearest] == 1.0)
    assert got.sum() >= nearest.sum()  # bilinear + "> 0" dilates, never shrinks
    assert got[:, :].sum() < 256 * 256 / 2
    # row 120 of 180 lands near row 170.7 of 256: some row there is fully on
    assert got[168:174].max(axis=0).all()


def test_refavs_reads_colour_files_as_bgr_grey(tmp_path):
    import cv2

    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[10:30, 10:30, 2] = 3  # only blue, faint: BGR2GRAY gives 0.114*3 -> 0 after rounding
    rgb[40:60, 40:60, 0] = 200
    p = _png(tmp_path / "c.png", rgb)
    got = decode_gt(p, "refavs")
    grey = cv2.cvtColor(cv2.resize(cv2.imread(str(p)), (256, 256)), cv2.COLOR_BGR2GRAY)
    np.testing.assert_array_equal(got, (grey > 0).astype(np.float32))
    assert got[200, 200] == 1.0


# ---- avss: palette index, NEAREST to 224 --------------------------------------------------------
def test_avss_palette_match_unknown_colour_and_nearest_resize(tmp_path):
    rng = np.random.default_rng(1)
    idx = rng.integers(0, 71, size=(448, 448))
    rgb = avss_palette()[idx]
    rgb[:20, :20] = (1, 2, 3)  # not a palette colour -> class 0
    idx[:20, :20] = 0
    p = _png(tmp_path / "0.png", rgb)
    got = decode_gt(p, "avss")
    assert got.dtype == np.int64 and got.shape == (224, 224)
    # PIL NEAREST for an exact factor 2 samples source pixel 2*i + 1
    np.testing.assert_array_equal(got, idx[1::2, 1::2])


def test_avss_native_224_is_an_exact_lookup(tmp_path):
    idx = np.arange(224 * 224).reshape(224, 224) % 71
    p = _png(tmp_path / "0.png", avss_palette()[idx])
    np.testing.assert_array_equal(decode_gt(p, "avss"), idx)


# ---- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize("task", ["s4", "ms3", "refavs", "avss"])
def test_bad_png_names_the_file(tmp_path, task):
    good = _png(tmp_path / "good.png", np.full((64, 64), 255, np.uint8))
    data = good.read_bytes()
    truncated = tmp_path / "truncated_mask.png"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage_mask.png"
    garbage.write_bytes(b"not a png at all" * 10)
    for bad in (truncated, garbage):
        with pytest.raises(DataError) as err:
            decode_gt(bad, task)
        assert bad.name in err.value.message
        assert err.value.hint
    with pytest.raises(DataError) as err:
        decode_gt(tmp_path / "missing.png", task)
    assert "missing.png" in err.value.message


def test_unknown_task_is_rejected():
    with pytest.raises(ValueError):
        decode_gt_bytes(b"", "davis")


# ---- sample_gt -----------------------------------------------------------------------------------
def _row(frames: list[str], masks: list[str], annotated: list[bool]) -> dict:
    return {"sample_key": "k", "frames": frames, "masks": masks, "annotated": annotated}


def test_sample_gt_zeros_where_no_file_and_flags(tmp_path):
    for k in range(3):
        _png(tmp_path / f"f{k}.png", np.zeros((30, 40, 3), np.uint8))
    m0 = _png(tmp_path / "m0.png", (np.arange(30 * 40).reshape(30, 40) % 2 * 255).astype(np.uint8))
    row = _row([f"f{k}.png" for k in range(3)], ["m0.png", "", ""], [True, False, False])
    masks, flags = sample_gt(row, tmp_path, "s4")
    assert masks.shape == (3, 30, 40) and masks.dtype == np.float32
    np.testing.assert_array_equal(masks[0], decode_gt(m0, "s4"))
    assert masks[0].sum() > 0 and not masks[1:].any()
    np.testing.assert_array_equal(flags, [True, False, False])


def test_sample_gt_without_any_mask_uses_frame_size_or_protocol_size(tmp_path):
    _png(tmp_path / "f0.png", np.zeros((30, 40, 3), np.uint8))
    row = _row(["f0.png"], [""], [False])
    assert sample_gt(row, tmp_path, "ms3")[0].shape == (1, 30, 40)
    assert sample_gt(row, tmp_path, "refavs")[0].shape == (1, 256, 256)
    masks, _ = sample_gt(row, tmp_path, "avss")
    assert masks.shape == (1, 224, 224) and masks.dtype == np.int64


def test_sample_gt_rejects_masks_of_different_sizes(tmp_path):
    _png(tmp_path / "a.png", np.zeros((30, 40), np.uint8))
    _png(tmp_path / "b.png", np.zeros((20, 40), np.uint8))
    row = _row(["a.png", "b.png"], ["a.png", "b.png"], [True, True])
    with pytest.raises(DataError) as err:
        sample_gt(row, tmp_path, "s4")
    assert "b.png" in err.value.message
