"""VGGish: the log-mel front end against independent computations, the torchvggish state-dict
layout (strict), the TF channels-last flatten, stereo, log-mel input, PCA, padding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avsbench_kit.errors import ConfigError, DataError
from avsbench_kit.features import build_encoder
from avsbench_kit.features.encoders.vggish import FULL, build_vggish, load_state_dict_strict
from avsbench_kit.features.vggish_frontend import (
    FrontEnd,
    examples,
    fit_examples,
    hz_to_mel,
    mel_matrix,
    stft_magnitude,
)

#: the torchvggish checkpoint's keys and shapes (vggish-10086976.pth), from the spec
RELEASED = {
    "features.0": (64, 1), "features.3": (128, 64), "features.6": (256, 128), "features.8": (256, 256),
    "features.11": (512, 256), "features.13": (512, 512),
    "embeddings.0": (4096, 12288), "embeddings.2": (4096, 4096), "embeddings.4": (128, 4096),
}


def test_stft_matches_torch_stft():
    fe = FrontEnd()
    x = np.random.default_rng(0).standard_normal(4000)
    ours = stft_magnitude(x, fe)
    window = torch.hann_window(fe.window_samples, periodic=True, dtype=torch.float64)
    # a 400-sample window zero-padded on the right to 512 = TF's frame-then-pad-the-FFT
    ref = torch.stft(torch.from_numpy(x), n_fft=fe.fft_length, hop_length=fe.hop_samples,
                     window=torch.nn.functional.pad(window, (0, fe.fft_length - fe.window_samples)),
                     center=False, return_complex=True).abs().T.numpy()
    assert fe.fft_length == 512 and ours.shape == (1 + (4000 - 400) // 160, 257)
    np.testing.assert_allclose(ours[: ref.shape[0]], ref, rtol=1e-9, atol=1e-9)


def test_mel_matrix_triangles_peak_at_band_centres():
    fe = FrontEnd()
    m = mel_matrix(fe, 257)
    assert m.shape == (257, 64) and np.all(m >= 0) and np.all(m <= 1) and np.all(m[0] == 0)
    freqs = np.linspace(0, 8000, 257)
    assert np.all(m[freqs < fe.fmin] == 0) and np.all(m[freqs > fe.fmax] == 0)
    centres_mel = np.linspace(hz_to_mel(fe.fmin), hz_to_mel(fe.fmax), 66)[1:-1]
    peak_mel = hz_to_mel(freqs[np.argmax(m, axis=0)])
    bin_mel_step = np.max(np.diff(hz_to_mel(freqs)))
    assert np.all(np.abs(peak_mel - centres_mel) <= bin_mel_step)


def test_examples_count_padding_and_tone_band():
    fe = FrontEnd()
    sr = 16000
    t = np.arange(5 * sr) / sr
    ex = examples(0.5 * np.sin(2 * np.pi * 1000 * t), sr, fe)
    assert ex.shape == (5, 96, 64) and ex.dtype == np.float32
    centres_hz = 700 * (np.exp(np.linspace(hz_to_mel(125), hz_to_mel(7500), 66)[1:-1] / 1127) - 1)
    assert abs(centres_hz[int(np.argmax(ex[0].mean(0)))] - 1000) < 60
    assert examples(np.zeros(800), sr, fe).shape == (1, 96, 64)  # short clip -> one (silent) example
    silent = examples(np.zeros(sr), sr, fe)
    np.testing.assert_allclose(silent, np.log(0.01), rtol=1e-6)
    # 44.1 kHz input is resampled: the same tone lands in the same band
    t44 = np.arange(2 * 44100) / 44100
    ex44 = examples(0.5 * np.sin(2 * np.pi * 1000 * t44), 44100, fe)
    assert int(np.argmax(ex44[0].mean(0))) == int(np.argmax(ex[0].mean(0)))


def test_fit_examples_rules():
    ex = np.arange(2 * 3, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(fit_examples(ex, 4, "repeat_last")[2:], [ex[1], ex[1]])
    np.testing.assert_array_equal(fit_examples(ex, 4, "zero")[2:], np.zeros((2, 3)))
    np.testing.assert_array_equal(fit_examples(ex, 1, "zero"), ex[:1])


def _released_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with exactly the released keys and shapes (values are random)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, (out_f, in_f) in RELEASED.items():
        if name.startswith("features"):
            state[f"{name}.weight"] = torch.randn(out_f, in_f, 3, 3, generator=g) * 0.05
        else:
            state[f"{name}.weight"] = torch.randn(out_f, in_f, generator=g) * 0.01
        state[f"{name}.bias"] = torch.randn(out_f, generator=g) * 0.01
    return state


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    path = tmp_path_factory.mktemp("vggish") / "vggish-10086976.pth"
    state = _released_state()
    torch.save(state, path)
    return path, state


def test_full_architecture_has_the_released_layout():
    model = build_vggish(FULL)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = {}
    for name, (out_f, in_f) in RELEASED.items():
        expected[f"{name}.weight"] = (out_f, in_f, 3, 3) if name.startswith("features") else (out_f, in_f)
        expected[f"{name}.bias"] = (out_f,)
    assert shapes == expected


def test_strict_load_accepts_released_layout_and_names_problems(released, tmp_path):
    path, state = released
    enc = build_encoder("vggish", [f"weights={path}"])
    net, _ = enc.model
    for key, value in state.items():
        assert torch.equal(net.state_dict()[key], value)
    assert enc.fingerprint_parts()["weights"]["kind"] == "file"

    bad = dict(state)
    bad.pop("embeddings.4.bias")
    bad["extra.weight"] = torch.zeros(1)
    bad["features.0.weight"] = torch.zeros(64, 1, 5, 5)
    bad_path = tmp_path / "bad.pth"
    torch.save(bad, bad_path)
    with pytest.raises(DataError) as err:
        load_state_dict_strict(build_vggish(FULL), str(bad_path))
    msg = err.value.message
    assert str(bad_path) in msg and "embeddings.4.bias" in msg and "extra.weight" in msg and "features.0.weight" in msg


def test_flatten_is_channels_last_like_tensorflow():
    torch.manual_seed(0)
    model = build_vggish(FULL).eval()
    captured = {}
    model.embeddings[0].register_forward_hook(lambda m, inp, out: captured.update(x=inp[0]))
    x = torch.randn(2, 1, 96, 64)
    with torch.no_grad():
        model(x)
        conv = model.features(x)  # [N, C, H, W] = [2, 512, 6, 4]
    n, c, h, w = conv.shape
    flat = captured["x"]
    for ci, hi, wi in [(0, 0, 0), (5, 1, 3), (511, 5, 2), (100, 3, 0)]:
        assert torch.equal(flat[:, (hi * w + wi) * c + ci], conv[:, ci, hi, wi])


def _unit(wave, sr=16000, frames=5):
    return {"audio": wave, "sample_rate": sr, "num_frames": frames, "clip": "c"}


def test_stereo_channels_and_mono_duplication():
    rng = np.random.default_rng(1)
    stereo = build_encoder("vggish", ["channels=stereo"])
    mono_file = (0.1 * rng.standard_normal((1, 3 * 16000))).astype(np.float32)
    two = (0.1 * rng.standard_normal((2, 3 * 16000))).astype(np.float32)
    out_mono, out_two = stereo.encode([_unit(mono_file), _unit(two)])
    assert out_mono["emb"].shape == (5, 2, 128)
    np.testing.assert_array_equal(out_mono["emb"][:, 0], out_mono["emb"][:, 1])
    # each channel of a stereo file is encoded on its own: equals encoding that channel as mono
    mono = build_encoder("vggish")
    (left,) = mono.encode([_unit(two[:1])])
    np.testing.assert_allclose(out_two["emb"][:, 0], left["emb"], rtol=1e-5, atol=1e-6)
    assert not np.allclose(out_two["emb"][:, 0], out_two["emb"][:, 1])
    # 3 s of audio for 5 frames: examples 3 and 4 repeat example 2 (AVSBench's padding)
    np.testing.assert_array_equal(left["emb"][3], left["emb"][2])


def test_log_mel_input_matches_wav_input():
    rng = np.random.default_rng(2)
    wave = (0.2 * rng.standard_normal((1, 5 * 16000))).astype(np.float32)
    from_wav = build_encoder("vggish").encode([_unit(wave)])[0]["emb"]
    log_mel = examples(wave[0], 16000)[:, None]  # [5, 1, 96, 64], what the AVSBench pickles hold
    unit = {"log_mel": torch.from_numpy(log_mel), "num_frames": 5, "clip": "c"}
    from_pkl = build_encoder("vggish", ["input=log_mel"]).encode([unit])[0]["emb"]
    np.testing.assert_allclose(from_pkl, from_wav, rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError):
        build_encoder("vggish", ["input=log_mel", "channels=stereo"])


def test_pca_postprocessing(tmp_path):
    path = tmp_path / "pca.pth"
    means = torch.full((128, 1), 0.25, dtype=torch.float64)
    torch.save({"pca_eigen_vectors": torch.eye(128, dtype=torch.float64), "pca_means": means}, path)
    wave = (0.2 * np.random.default_rng(3).standard_normal((1, 16000 * 2))).astype(np.float32)
    raw = build_encoder("vggish").encode([_unit(wave, frames=2)])[0]["emb"]
    pca = build_encoder("vggish", ["pca=true", f"pca_weights={path}"]).encode([_unit(wave, frames=2)])[0]["emb"]
    expected = np.round((np.clip(raw.astype(np.float64) - 0.25, -2, 2) + 2) * 255 / 4)
    np.testing.assert_allclose(pca, expected, atol=1.0)  # rounding ties may differ by one step
    assert np.mean(pca == expected) > 0.95
    with pytest.raises(ConfigError):
        build_encoder("vggish", ["pca=true"])


def test_random_init_is_seeded_and_fingerprinted():
    wave = (0.2 * np.random.default_rng(4).standard_normal((1, 16000))).astype(np.float32)
    a, b = build_encoder("vggish"), build_encoder("vggish")
    c = build_encoder("vggish", ["seed=1"])
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    ea, eb, ec = (e.encode([_unit(wave, frames=1)])[0]["emb"] for e in (a, b, c))
    np.testing.assert_array_equal(ea, eb)
    assert not np.allclose(ea, ec)
    parts = a.fingerprint_parts()
    assert parts["weights"]["kind"] == "random init" and parts["weights"]["seed"] == 0
    assert build_encoder("vggish", ["fmin=100.0"]).fingerprint() != a.fingerprint()
    assert build_encoder("vggish", ["batch_size=3"]).fingerprint() == a.fingerprint()  # speed only


def test_bad_front_end_is_a_config_error():
    with pytest.raises(ConfigError):
        build_encoder("vggish", ["fmax=9000.0"])
    with pytest.raises(ConfigError):
        build_encoder("vggish", ["pad=mirror"])
