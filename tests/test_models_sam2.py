"""The one SAM2 layer: sizes, checkpoints, cache parity, adapter injection, decoder, memory."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from avsbench_kit.errors import ConfigError, DataError
from avsbench_kit.models.sam2 import (ImageFeatures, SAM2Wrapper, check_image_size, classify_levels,
                                     hiera_block_dims)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def sam128() -> SAM2Wrapper:
    return SAM2Wrapper("sam2.1_hiera_t", None, 128, init_seed=0, round_features="float16")


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.rand(2, 3, 100, 140, generator=g)


def _prompt(n: int, k: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, k, 256, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("size", [128, 256])
def test_builds_and_decodes_at_size(size: int, sam128: SAM2Wrapper, images: torch.Tensor) -> None:
    sam = sam128 if size == 128 else SAM2Wrapper("sam2.1_hiera_t", None, size)
    x = sam.preprocess(images)
    assert x.shape == (2, 3, size, size)
    with torch.no_grad():
        feats = sam.features(x)
        assert [tuple(t.shape[1:]) for t in feats.levels] == [
            (256, size // 4, size // 4), (256, size // 8, size // 8), (256, size // 16, size // 16)]
        out = sam.decode(feats, _prompt(2), multimask=True, output_size=(48, 40))
    assert out.masks.shape == (2, 48, 40)
    assert out.low_res_multimasks.shape == (2, 3, size // 4, size // 4)
    assert out.ious.shape == (2, 3) and out.object_score_logits.shape == (2, 1)
    assert torch.isfinite(out.masks).all()


@pytest.mark.parametrize("bad", [100, 0, 96 + 1, True, "128"])
def test_image_size_not_multiple_of_32_fails_clearly(bad) -> None:
    with pytest.raises(ConfigError, match="multiple of 32") as err:
        SAM2Wrapper("sam2.1_hiera_t", None, bad)
    assert "image_size" in err.value.hint


def test_unknown_config_suggests_names() -> None:
    with pytest.raises(ConfigError, match="unknown SAM2 config") as err:
        check_image_size(128) and SAM2Wrapper("sam2.1_hiera_tt", None, 128)
    assert "sam2.1_hiera_t" in err.value.hint


def test_checkpoint_is_loaded_and_bad_checkpoints_fail(tmp_path, sam128: SAM2Wrapper,
                                                       monkeypatch) -> None:
    good = tmp_path / "tiny.pt"
    torch.save({"model": sam128.model.state_dict()}, good)
    other = SAM2Wrapper("sam2.1_hiera_t", None, 128, init_seed=1)
    w0 = sam128.model.sam_mask_decoder.iou_token.weight
    assert not torch.equal(other.model.sam_mask_decoder.iou_token.weight, w0)  # seeds differ
    loaded = SAM2Wrapper("sam2.1_hiera_t", good, 128, init_seed=1)
    assert torch.equal(loaded.model.sam_mask_decoder.iou_token.weight, w0)
    assert loaded.describe()["checkpoint"] == str(good)

    with pytest.raises(ConfigError, match="does not exist"):
        SAM2Wrapper("sam2.1_hiera_t", tmp_path / "missing.pt", 128)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(DataError, match="corrupt.pt"):
        SAM2Wrapper("sam2.1_hiera_t", corrupt, 128)
    partial = tmp_path / "partial.pt"
    sd = dict(sam128.model.state_dict())
    sd.pop("no_mem_embed")
    torch.save({"model": sd}, partial)
    with pytest.raises(ConfigError, match="does not fit sam2.config"):
        SAM2Wrapper("sam2.1_hiera_t", partial, 128)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    with pytest.raises(ConfigError, match="not in the local Hugging Face cache") as err:
        SAM2Wrapper("sam2.1_hiera_t", "facebook/sam2.1-hiera-tiny", 128)
    assert "huggingface-cli download facebook/sam2.1-hiera-tiny" in err.value.hint
    with pytest.raises(ConfigError, match="needs pretrained SAM2 weights"):
        SAM2Wrapper("sam2.1_hiera_t", None, 128, require_checkpoint=True)


def test_cached_and_on_the_fly_features_give_identical_logits(sam128: SAM2Wrapper,
                                                              images: torch.Tensor) -> None:
    prompt = _prompt(2, seed=3)
    with torch.no_grad():
        fly = sam128.features(sam128.preprocess(images))
        on_disk = fly.to_cache()  # what a sam2_image cache stores (float16)
        assert all(t.dtype == torch.float16 for t in on_disk.values())
        cached = sam128.from_cache({k: v.float() for k, v in on_disk.items()})  # reader: float32
        a = sam128.decode(fly, prompt, output_size=64)
        b = sam128.decode(cached, prompt, output_size=64)
    assert torch.equal(a.masks, b.masks) and torch.equal(a.ious, b.ious)

    # without rounding the two paths differ only by float16 precision
    with torch.no_grad():
        raw = ImageFeatures(tuple(sam128.image_encoder(sam128.preprocess(images))["backbone_fpn"]))
        c = sam128.decode(raw, prompt, output_size=64)
    assert torch.allclose(a.masks, c.masks, atol=0.05, rtol=0.05)


def test_forward_image_levels_decode_like_raw_levels(sam128: SAM2Wrapper,
                                                     images: torch.Tensor) -> None:
    x = sam128.preprocess(images)
    with torch.no_grad():
        raw = sam128.image_encoder_outputs(x)["backbone_fpn"]
        projected = sam128.forward_image(x)["backbone_fpn"]
        assert projected[0].shape[1] == 32 and projected[1].shape[1] == 64
        # names are the cache's business: classify by shape, ignore positional encodings
        feats = classify_levels({"hr_a": projected[0], "hr_b": projected[1], "top": projected[2],
                                 "vision_pos_enc_2": torch.zeros_like(projected[2])}, 128)
        assert feats.projected
        out_p = sam128.decode(feats, _prompt(2))
        out_r = sam128.decode(ImageFeatures(tuple(raw)), _prompt(2))
    assert torch.allclose(out_p.masks, out_r.masks, atol=1e-5)
    with pytest.raises(ConfigError, match="image_size=256"):
        classify_levels({"a": raw[0], "b": raw[1], "c": raw[2]}, 256)


def test_decoder_takes_extra_sparse_tokens_like_a_direct_call(sam128: SAM2Wrapper,
                                                              images: torch.Tensor) -> None:
    with torch.no_grad():
        feats = sam128.features(sam128.preprocess(images))
        prompt = _prompt(2, k=2, seed=5)
        out = sam128.decode(feats, prompt, multimask=True, output_size=96)
        # independent wiring: SAM2's decoder called by hand with sparse = the extra tokens only,
        # dense = no_mask_embed, image embedding + no_mem_embed, conv_s0/s1 high-res maps
        dec, pe = sam128.mask_decoder, sam128.prompt_encoder
        dense = pe.no_mask_embed.weight.view(1, -1, 1, 1).expand(2, -1, 8, 8)
        low, ious, _, _ = dec(
            image_embeddings=feats.levels[2] + sam128.model.no_mem_embed.view(1, -1, 1, 1),
            image_pe=pe.get_dense_pe(), sparse_prompt_embeddings=prompt,
            dense_prompt_embeddings=dense, multimask_output=True, repeat_image=False,
            high_res_features=[dec.conv_s0(feats.levels[0]), dec.conv_s1(feats.levels[1])])
        best = low[torch.arange(2), ious.argmax(-1)][:, None]
        expect = F.interpolate(best, size=(96, 96), mode="bilinear", align_corners=False)[:, 0]
        other = sam128.decode(feats, _prompt(2, k=2, seed=6), output_size=96)
        single = sam128.decode(feats, prompt, multimask=False)
    assert torch.allclose(out.low_res_multimasks, low, atol=1e-6)
    assert torch.allclose(out.masks, expect, atol=1e-5)
    assert not torch.allclose(out.masks, other.masks)  # the prompt reaches the masks
    assert single.ious.shape == (2, 1) and single.masks.shape == (2, 128, 128)
    with pytest.raises(ValueError, match="extra sparse prompts"):
        sam128.decode(feats, torch.zeros(2, 1, 64))


def test_block_prompts_zero_equal_plain_encoder_nonzero_differ(sam128: SAM2Wrapper,
                                                               images: torch.Tensor) -> None:
    x = sam128.preprocess(images)
    dims = sam128.block_dims
    with torch.no_grad():
        plain = sam128.image_encoder(x)["backbone_fpn"]
        zero = sam128.image_encoder_outputs(x, [torch.zeros(2, c) for c in dims])["backbone_fpn"]
        g = torch.Generator().manual_seed(7)
        rand = sam128.image_encoder_outputs(x, [torch.randn(2, c, generator=g) for c in dims])
        # a prompt on the very last block only still changes the last level
        last = [torch.zeros(2, c) for c in dims]
        last[-1] = torch.ones(2, dims[-1])
        only_last = sam128.image_encoder_outputs(x, last)["backbone_fpn"]
    assert all(torch.equal(a, b) for a, b in zip(plain, zero))
    assert all((a - b).abs().max() > 1e-3 for a, b in zip(plain, rand["backbone_fpn"]))
    assert (only_last[2] - plain[2]).abs().max() > 1e-4
    with pytest.raises(ValueError, match="block prompts"):
        sam128.image_encoder_outputs(x, [torch.zeros(2, c) for c in dims[:-1]])


def test_block_dims_formula_matches_hiera(sam128: SAM2Wrapper) -> None:
    assert sam128.block_dims == hiera_block_dims(96, (1, 2, 7, 2))
    large = hiera_block_dims(144, (2, 6, 36, 4))  # Hiera-L: the widths AV2T-SAM's adapters use
    assert len(large) == 48
    assert [large.count(c) for c in (144, 288, 576, 1152)] == [3, 6, 36, 3]


def test_memory_propagation_shapes(sam128: SAM2Wrapper, images: torch.Tensor) -> None:
    with torch.no_grad():
        frames = [sam128.features(sam128.preprocess(images.roll(t, dims=-1))) for t in range(3)]
        out = sam128.propagate(frames, {0: _prompt(2)}, output_size=32)
        mid = sam128.propagate(frames, {1: _prompt(2)}, output_size=(16, 24))
    assert out.masks.shape == (2, 3, 32, 32) and torch.isfinite(out.masks).all()
    assert mid.masks.shape == (2, 3, 16, 24) and torch.isfinite(mid.masks).all()
    assert out.low_res_masks.shape == (2, 3, 1, 32, 32) and out.low_res_multimasks.shape == (2, 3, 3, 32, 32)
    assert out.ious.shape == (2, 3, 3) and out.object_score_logits.shape == (2, 3)


def test_sam2_image_cache_encoder_matches_the_wrapper_bit_for_bit(sam128: SAM2Wrapper) -> None:
    """The toolkit's sam2_image encoder (random init, same seed rule) writes exactly what the
    wrapper computes on the fly, rounded to float16 — so cache and frames are interchangeable."""
    import avsbench_kit.features.base as base
    import numpy as np

    frames = np.random.default_rng(0).random((2, 3, 96, 112)).astype(np.float32)
    enc = base.build_encoder("sam2_image", ("model_config=configs/sam2.1/sam2.1_hiera_t.yaml",
                                            "image_size=128", "seed=0",
                                            "levels=[fpn0,fpn1,fpn2,conv_s0,conv_s1]"))
    cached = enc.encode([{"frames": frames}])[0]
    x = sam128.preprocess(torch.from_numpy(frames))
    with torch.no_grad():
        raw = sam128.features(x).to_cache()
        proj = sam128.forward_image(x)["backbone_fpn"]
    ours = {**raw, "conv_s0": proj[0].half(), "conv_s1": proj[1].half()}
    for name, value in ours.items():
        assert np.array_equal(cached[name], value.numpy()), name


def test_one_weights_policy_for_the_cache_encoder_and_the_layer(tmp_path, monkeypatch) -> None:
    """A hub id is only read from the local HF cache (no download, no random fallback), for the
    sam2_image encoder exactly as for a baseline; a hub id of another architecture is refused."""
    from avsbench_kit.features.base import build_encoder

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = build_encoder("sam2_image", ("weights=facebook/sam2.1-hiera-tiny", "image_size=64"))
    with pytest.raises(ConfigError, match="not in the local Hugging Face cache"):
        enc.model
    with pytest.raises(ConfigError, match="made for configs/sam2.1/sam2.1_hiera_t.yaml") as err:
        SAM2Wrapper("sam2.1_hiera_s", "facebook/sam2.1-hiera-tiny", 128)
    assert "sam2.1_hiera_t" in err.value.hint
