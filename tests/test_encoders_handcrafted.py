"""The parameter-free stand-ins for CLAP/CLIP: they must carry pitch, panning and colour."""

from __future__ import annotations

import numpy as np
import pytest

from avsbench_kit.errors import ConfigError
from avsbench_kit.features import build_encoder
from avsbench_kit.features.vggish_frontend import FrontEnd, hz_to_mel


def _tone(hz: float, seconds: float = 1.0, sr: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _band_of(hz: float, fe: FrontEnd = FrontEnd()) -> int:
    """Index of the mel band whose centre is nearest to ``hz``."""
    lo, hi = hz_to_mel(fe.fmin), hz_to_mel(fe.fmax)
    centres = np.linspace(lo, hi, fe.mel_bands + 2)[1:-1]
    return int(np.argmin(np.abs(centres - hz_to_mel(hz))))


def test_logmel_stats_follows_pitch_per_frame_and_keeps_panning():
    enc = build_encoder("logmel_stats")
    left = np.concatenate([_tone(300.0), _tone(2200.0), np.zeros(16000, np.float32)])
    stereo = np.stack([left, np.zeros_like(left)])  # everything on the left channel
    (out,) = enc.encode([{"audio": stereo, "sample_rate": 16000, "num_frames": 3}])
    emb = out["emb"]
    assert emb.shape == (3, 128) and emb.dtype == np.float32
    assert abs(int(np.argmax(emb[0, :64])) - _band_of(300.0)) <= 1
    assert abs(int(np.argmax(emb[1, :64])) - _band_of(2200.0)) <= 1
    silent = np.log(0.01)
    np.testing.assert_allclose(emb[:, 64:], silent, atol=1e-6)  # right channel is silent
    np.testing.assert_allclose(emb[2], silent, atol=1e-6)       # third second is silent


def test_logmel_stats_mono_resamples_and_pads_short_audio():
    enc = build_encoder("logmel_stats", ["channels=mono"])
    wave = _tone(1000.0, seconds=1.5, sr=48000)
    (out,) = enc.encode([{"audio": wave, "sample_rate": 48000, "num_frames": 2}])
    assert out["emb"].shape == (2, 64)
    assert abs(int(np.argmax(out["emb"][0])) - _band_of(1000.0)) <= 1
    assert out["emb"][1].max() > np.log(0.01) + 1  # half a second of tone, then zero padding


def test_rgb_hist_counts_colours_as_sqrt_fractions():
    enc = build_encoder("rgb_hist")
    frame = np.zeros((3, 10, 10), np.float32)
    frame[0, :, :5] = 1.0          # left half red (bin r=3,g=0,b=0)
    frame[2, :, 5:] = 0.6          # right half dark blue (bin r=0,g=0,b=2)
    frames = np.stack([frame, np.zeros_like(frame)])
    (out,) = enc.encode([{"frames": frames, "num_frames": 2}])
    emb = out["emb"]
    assert emb.shape == (2, 64)
    red, blue, black = (3 * 4 + 0) * 4 + 0, 0 * 16 + 0 * 4 + 2, 0
    np.testing.assert_allclose(emb[0, [red, blue]], np.sqrt(0.5), rtol=1e-6)
    assert emb[0].sum() == pytest.approx(2 * np.sqrt(0.5))
    assert emb[1, black] == 1.0 and emb[1].sum() == 1.0
    (raw,) = build_encoder("rgb_hist", ["transform=none"]).encode([{"frames": frames, "num_frames": 2}])
    assert raw["emb"][0].sum() == pytest.approx(1.0)


def test_rgb_hist_grid_adds_cell_histograms_after_the_frame_one():
    frame = np.zeros((3, 8, 8), np.float32)
    frame[0, :, :4] = 1.0          # left half red, right half black
    frames = frame[None]
    (whole,) = build_encoder("rgb_hist").encode([{"frames": frames, "num_frames": 1}])
    grid = build_encoder("rgb_hist", ["grid=2"])
    (cells,) = grid.encode([{"frames": frames, "num_frames": 1}])
    emb = cells["emb"]
    assert grid.output_spec()["emb"].shape == ("T", 5, 64) and emb.shape == (1, 5, 64)
    np.testing.assert_array_equal(emb[:, 0], whole["emb"])  # token 0 = the frame ("CLS")
    red, black = (3 * 4 + 0) * 4 + 0, 0
    assert emb[0, 1, red] == 1.0 and emb[0, 3, red] == 1.0  # left cells (row-major: 1, 3)
    assert emb[0, 2, black] == 1.0 and emb[0, 4, black] == 1.0
    # grid=0 keeps the fingerprint of caches made before the key existed; a grid changes it
    assert "grid" not in build_encoder("rgb_hist").preprocessing()
    assert grid.fingerprint() != build_encoder("rgb_hist").fingerprint()
    with pytest.raises(ConfigError, match="grid"):
        build_encoder("rgb_hist", ["grid=-1"])


def test_parameter_free_fingerprints_and_validation():
    a, b = build_encoder("rgb_hist"), build_encoder("rgb_hist", ["bins=8"])
    assert a.fingerprint() != b.fingerprint() and b.output_spec()["emb"].shape == ("T", 512)
    assert a.fingerprint_parts()["weights"] == {"kind": "parameter-free"}
    assert build_encoder("rgb_hist", ["batch_size=2"]).fingerprint() == a.fingerprint()
    assert build_encoder("logmel_stats").fingerprint() != build_encoder("logmel_stats", ["channels=mono"]).fingerprint()
    with pytest.raises(ConfigError):
        build_encoder("rgb_hist", ["bins=32"])
    with pytest.raises(ConfigError):
        build_encoder("logmel_stats", ["channels=stereo"])
