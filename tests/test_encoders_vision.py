"""Image and CLAP-audio encoders: per-frame outputs in frame order, SAM2 levels against SAM2's own
``forward_image``, float16 storage, config validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avsbench_kit.errors import ConfigError
from avsbench_kit.features import build_encoder


def _frames(seed: int, t: int = 3, h: int = 40, w: int = 56) -> torch.Tensor:
    return torch.rand(t, 3, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name,field", [("clip", "emb"), ("vit", "tokens")])
def test_image_encoders_keep_frame_order_and_batch_independence(name, field):
    enc = build_encoder(name)
    a, b = _frames(0), _frames(1, t=2, h=64, w=48)
    out_a, out_b = enc.encode([{"frames": a, "num_frames": 3}, {"frames": b, "num_frames": 2}])
    spec = enc.output_spec()[field]
    assert out_a[field].shape == (3,) + tuple(spec.shape[1:]) and out_b[field].shape[0] == 2
    assert out_a[field].dtype == np.dtype(spec.dtype)
    (rev,) = enc.encode([{"frames": a.flip(0), "num_frames": 3}])
    np.testing.assert_allclose(rev[field][::-1], out_a[field], rtol=1e-3, atol=1e-3)
    assert not np.allclose(out_a[field][0], out_a[field][1], atol=1e-3)


@pytest.fixture(scope="module")
def sam2_small():
    return build_encoder("sam2_image", ["image_size=64", "levels=[fpn0,fpn1,fpn2,conv_s0,conv_s1]"])


@pytest.mark.slow
def test_sam2_levels_match_forward_image_and_raw_fpn(sam2_small):
    frames = _frames(2, t=2, h=50, w=70)
    (out,) = sam2_small.encode([{"frames": frames, "num_frames": 2}])
    model = sam2_small.model
    x = sam2_small.preprocess(frames)
    with torch.inference_mode():
        raw = model.image_encoder(x)["backbone_fpn"]
        fwd = model.forward_image(x)["backbone_fpn"]
    expected = {"fpn0": raw[0], "fpn1": raw[1], "fpn2": raw[2], "conv_s0": fwd[0], "conv_s1": fwd[1]}
    for level, ref in expected.items():
        assert out[level].dtype == np.float16
        assert out[level].shape == tuple(ref.shape)
        np.testing.assert_allclose(out[level].astype(np.float32), ref.numpy(), rtol=2e-3, atol=2e-3)
    assert out["fpn0"].shape[1:] == (256, 16, 16) and out["conv_s0"].shape[1:] == (32, 16, 16)


def test_sam2_preprocessing_resizes_and_normalises(sam2_small):
    x = sam2_small.preprocess(torch.full((1, 3, 30, 90), 0.485))
    assert x.shape == (1, 3, 64, 64)
    assert torch.allclose(x[0, 0], torch.zeros(64, 64), atol=1e-6)  # ImageNet mean maps to 0


@pytest.mark.parametrize("bad", ["image_size=100", "levels=[fpn3]", "levels=[fpn0,fpn0]", "dtype=int8"])
def test_sam2_bad_config(bad):
    with pytest.raises(ConfigError):
        build_encoder("sam2_image", [bad])


def test_sam2_fingerprint_covers_size_and_levels():
    base = build_encoder("sam2_image")
    assert base.cfg["image_size"] == 256 and base.cfg["model_config"].endswith("sam2.1_hiera_t.yaml")
    assert build_encoder("sam2_image", ["image_size=128"]).fingerprint() != base.fingerprint()
    assert build_encoder("sam2_image", ["levels=[fpn0,fpn1,fpn2]"]).fingerprint() != base.fingerprint()


def test_clap_audio_segments_follow_frames():
    from avsbench_kit.features.encoders.clap import segments

    sr = 8000
    wave = np.zeros((2, 3 * sr), dtype=np.float32)
    wave[0, sr:2 * sr] = 1.0
    segs = segments(wave, sr, 4, 1.0, "mono")
    assert len(segs) == 4 and all(s.shape == (sr,) for s in segs)
    assert segs[0].max() == 0 and segs[1].min() == 0.5 and segs[3].max() == 0  # last one zero-padded
    cat = segments(wave, sr, 3, 1.0, "concat")
    assert cat[1].shape == (2 * sr,) and cat[1][:sr].min() == 1.0 and cat[1][sr:].max() == 0.0

    enc = build_encoder("clap")
    t = np.arange(3 * 16000) / 16000
    tone = np.where(t < 1, 0.0, 0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
    (out,) = enc.encode([{"audio": tone, "sample_rate": 16000, "num_frames": 3}])
    assert out["emb"].shape == (3, 32) and out["emb"].dtype == np.float32
    assert not np.allclose(out["emb"][0], out["emb"][1], atol=1e-4)  # silence vs tone
    np.testing.assert_allclose(out["emb"][1], out["emb"][2], atol=1e-2)  # the same steady tone
    with pytest.raises(ConfigError):
        build_encoder("clap", ["segment_s=6.0", "channels=concat"])
