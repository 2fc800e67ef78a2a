"""Frame augmentation: frames and masks move together, per-sample seeded decisions, the config
checks, and the refusal next to caches the augmentation would invalidate."""

from __future__ import annotations

import pytest
import torch

from avsbench_kit.data.augment import augment_batch, augment_config, check_augment_allowed, is_enabled
from avsbench_kit.errors import ConfigError
from avsbench_kit.features import FeatureRequest


def scene_batch(b=8, t=3, size=48, mask_size=None, seed=0):
    """Frames whose red channel *is* the class map (a few rectangles of class 1..3), masks = that map
    (optionally at another resolution), the last time step padding (zeros)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.zeros(b, t, size, size)
    for i in range(b):
        for c in (1, 2, 3):
            # on a 4-pixel grid, so nearest resizing to half or double size is exact
            y, x = (4 * torch.randint(0, (size - 12) // 4, (2,), generator=g)).tolist()
            h, w = (4 * torch.randint(2, 4, (2,), generator=g)).tolist()
            labels[i, :-1, y:y + h, x:x + w] = c
    frames = torch.zeros(b, t, 3, size, size)
    frames[:, :, 0] = labels / 3
    frames[:, :-1, 1] = torch.linspace(0, 1, size)  # a horizontal ramp: shows flips and crops
    masks = labels
    if mask_size:
        masks = torch.nn.functional.interpolate(labels, size=(mask_size, mask_size), mode="nearest")
    annotated = torch.ones(b, t, dtype=torch.bool)
    annotated[:, -1] = False
    return {"key": [f"k{i}" for i in range(b)], "frames": frames, "masks": masks, "annotated": annotated,
            "features": {"vggish": torch.randn(b, t, 128, generator=g)}, "is_null": torch.zeros(b, dtype=torch.bool)}


def test_off_by_default_and_config_errors():
    batch = scene_batch()
    assert augment_batch(batch, None, torch.Generator()) is batch
    assert augment_batch(batch, {"hflip": 0, "scale_crop": [1.0, 1.0]}, torch.Generator()) is batch
    assert not is_enabled({}) and is_enabled({"hflip": 0.5}) and is_enabled({"scale_crop": [0.8, 1.0]})
    assert augment_config({"hflip": 1, "scale_crop": [0.8, 1]}) == {"hflip": 1.0, "scale_crop": [0.8, 1.0]}
    for bad, key in (({"hflip": 1.5}, "augment.hflip"), ({"hflip": True}, "augment.hflip"),
                     ({"scale_crop": [0.9, 0.8]}, "augment.scale_crop"), ({"scale_crop": [0, 1]}, "augment.scale_crop"),
                     ({"scale_crop": 0.8}, "augment.scale_crop"), ({"rotate": 10}, "augment.rotate")):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            augment_config(bad)


def test_flip_is_exact_and_per_sample():
    batch = scene_batch(b=16)
    out = augment_batch(batch, {"hflip": 0.5}, torch.Generator().manual_seed(0))
    flipped = []
    for i in range(16):
        same = torch.equal(out["frames"][i], batch["frames"][i]) and torch.equal(out["masks"][i], batch["masks"][i])
        mirrored = (torch.equal(out["frames"][i], batch["frames"][i].flip(-1))
                    and torch.equal(out["masks"][i], batch["masks"][i].flip(-1)))
        assert same != mirrored, i
        flipped.append(mirrored)
    assert 0 < sum(flipped) < 16  # per-sample decisions
    for key in ("key", "annotated", "features", "is_null"):
        assert out[key] is batch[key]
    assert not torch.equal(batch["frames"], out["frames"])  # the input batch is not modified in place...
    assert torch.equal(batch["frames"], scene_batch(b=16)["frames"])  # ...it still holds the original


@pytest.mark.parametrize("mask_size", [None, 96, 24])
def test_scale_crop_moves_frames_and_masks_together(mask_size):
    batch = scene_batch(b=8, size=48, mask_size=mask_size)
    out = augment_batch(batch, {"hflip": 0.5, "scale_crop": [0.5, 0.8]}, torch.Generator().manual_seed(3))
    frames, masks = out["frames"], out["masks"]
    assert frames.shape == batch["frames"].shape and masks.shape == batch["masks"].shape
    # masks keep exact class ids (nearest), frames changed for every sample (every one is cropped)
    assert set(masks.unique().tolist()) <= {0.0, 1.0, 2.0, 3.0}
    for i in range(8):
        assert not torch.allclose(frames[i], batch["frames"][i])
    # the class read back from the frame's red channel agrees with the mask almost everywhere
    red = torch.nn.functional.interpolate(frames[:, :-1, 0], size=masks.shape[-2:], mode="nearest")
    from_frames = (red * 3).round()
    fg = masks[:, :-1] > 0

    def agreement(other):  # on the objects' pixels; bilinear frames blur their borders a little
        return ((from_frames == other) & fg).sum().item() / fg.sum().item()

    assert agreement(masks[:, :-1]) > 0.85
    assert agreement(masks[:, :-1].roll(1, dims=0)) < 0.3  # another sample's mask: a real check
    assert agreement(masks[:, :-1].flip(-1)) < 0.3  # a mask left unflipped would fail
    assert not frames[:, -1].any() and not masks[:, -1].any()  # padded steps stay zero


@pytest.mark.parametrize("hflip", [0.0, 1.0])
def test_scale_crop_geometry_by_hand(hflip):
    """Output pixel j of a crop with side s at position u reads input pixel
    round(u (1 - s) W + (j + 1/2) s - 1/2) (mirrored index when flipped), per axis."""
    size, s = 16, 0.5
    g = torch.Generator().manual_seed(0)
    masks = torch.randint(0, 11, (2, 1, size, size), generator=g).float()
    batch = {"frames": torch.rand(2, 1, 3, size, size, generator=g), "masks": masks}
    out = augment_batch(batch, {"hflip": hflip, "scale_crop": [s, s]}, torch.Generator().manual_seed(5))
    draws = torch.rand(2, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    j = torch.arange(size, dtype=torch.float64)
    for i in range(2):
        _, _, ux, uy = draws[i].tolist()
        cols = j.flip(0) if hflip else j
        xs = torch.round(ux * (1 - s) * size + (cols + 0.5) * s - 0.5).long()
        ys = torch.round(uy * (1 - s) * size + (j + 0.5) * s - 0.5).long()
        assert torch.equal(out["masks"][i, 0], masks[i, 0][ys][:, xs])


def test_seeded():
    batch = scene_batch()
    cfg = {"hflip": 0.5, "scale_crop": [0.7, 1.0]}
    a = augment_batch(batch, cfg, torch.Generator().manual_seed(7))
    b = augment_batch(batch, cfg, torch.Generator().manual_seed(7))
    c = augment_batch(batch, cfg, torch.Generator().manual_seed(8))
    assert torch.equal(a["frames"], b["frames"]) and torch.equal(a["masks"], b["masks"])
    assert not torch.equal(a["frames"], c["frames"])


def test_needs_frames():
    batch = scene_batch()
    del batch["frames"]
    with pytest.raises(ConfigError, match="needs raw frames"):
        augment_batch(batch, {"hflip": 0.5}, torch.Generator())


@pytest.mark.parametrize("encoder", ["sam2_image", "vit", "clip", "rgb_hist"])
def test_image_caches_are_refused(encoder):
    with pytest.raises(ConfigError, match=f"the {encoder} feature cache is spatial") as err:
        check_augment_allowed([FeatureRequest("vggish"), FeatureRequest(encoder)])
    assert "augment.hflip=0" in err.value.hint
    assert "\n" not in err.value.message


def test_audio_and_text_caches_are_allowed_stereo_only_without_flips():
    check_augment_allowed([FeatureRequest("vggish"), FeatureRequest("distilroberta"), FeatureRequest("clap")])
    stereo = FeatureRequest("vggish", ("channels=stereo",))
    with pytest.raises(ConfigError, match="mirrors left and right"):
        check_augment_allowed([stereo], {"hflip": 0.5})
    check_augment_allowed([stereo], {"hflip": 0.0, "scale_crop": [0.8, 1.0]})
