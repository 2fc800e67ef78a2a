"""The VGGish log-mel front end (numpy), as AVSBench used it to make ``audio_log_mel`` pickles.

Spec (official_protocols.md §1.6): mono = mean over channels, resample to 16 kHz, magnitude STFT
with a periodic Hann window of 25 ms, hop 10 ms, FFT length = next power of two, 64 mel bands on
the HTK mel scale between 125 and 7500 Hz (triangles in the mel domain, DC bin zeroed),
``log(mel + 0.01)``, then non-overlapping 0.96 s examples of 96 frames x 64 bands.

Resampling uses soxr here (AVSBench used resampy), which changes values slightly for non-16 kHz
input; the resampler is part of the encoder's preprocessing fingerprint.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class FrontEnd:
    sample_rate: int = 16000
    window_s: float = 0.025
    hop_s: float = 0.010
    mel_bands: int = 64
    fmin: float = 125.0
    fmax: float = 7500.0
    log_offset: float = 0.01
    example_s: float = 0.96
    example_hop_s: float = 0.96

    def __post_init__(self) -> None:
        if not (0 <= self.fmin < self.fmax <= self.sample_rate / 2):
            raise ValueError(f"need 0 <= fmin < fmax <= sample_rate/2, got {self.fmin}, {self.fmax}, {self.sample_rate}")
        if self.window_samples < 2 or self.hop_samples < 1 or self.example_frames < 1 or self.example_hop_frames < 1:
            raise ValueError("window, hop and example lengths must be positive")

    @property
    def window_samples(self) -> int:
        return int(round(self.sample_rate * self.window_s))

    @property
    def hop_samples(self) -> int:
        return int(round(self.sample_rate * self.hop_s))

    @property
    def fft_length(self) -> int:
        return 1 << int(np.ceil(np.log2(self.window_samples)))

    @property
    def example_frames(self) -> int:
        return int(round(self.example_s / self.hop_s))

    @property
    def example_hop_frames(self) -> int:
        return int(round(self.example_hop_s / self.hop_s))

    @property
    def min_samples(self) -> int:
        """Samples needed for exactly one example."""
        return self.window_samples + (self.example_frames - 1) * self.hop_samples

    def as_dict(self) -> dict:
        return asdict(self)


def frames(x: np.ndarray, length: int, hop: int) -> np.ndarray:
    """Non-padded framing along axis 0: ``[N, ...] -> [1 + (N - length) // hop, length, ...]``."""
    n = x.shape[0]
    count = 1 + (n - length) // hop if n >= length else 0
    if count == 0:
        return np.zeros((0, length) + x.shape[1:], dtype=x.dtype)
    windows = np.lib.stride_tricks.sliding_window_view(x, length, axis=0)  # [N-length+1, ..., length]
    windows = windows[: (count - 1) * hop + 1 : hop]
    return np.moveaxis(windows, -1, 1).copy()


def periodic_hann(n: int) -> np.ndarray:
    """Hann window of period n (not symmetric): what TF's VGGish front end uses."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale."""
    return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)


def mel_matrix(fe: FrontEnd, num_bins: int) -> np.ndarray:
    """``[num_bins, mel_bands]`` triangular weights, built in the mel domain; DC row zeroed."""
    bin_mel = hz_to_mel(np.linspace(0.0, fe.sample_rate / 2.0, num_bins))
    edges = np.linspace(hz_to_mel(fe.fmin), hz_to_mel(fe.fmax), fe.mel_bands + 2)
    lo, mid, hi = edges[:-2], edges[1:-1], edges[2:]
    rising = (bin_mel[:, None] - lo[None, :]) / (mid - lo)[None, :]
    falling = (hi[None, :] - bin_mel[:, None]) / (hi - mid)[None, :]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0
    return weights


def stft_magnitude(x: np.ndarray, fe: FrontEnd) -> np.ndarray:
    """``[S] -> [frames, fft_length // 2 + 1]`` magnitudes (no centre padding)."""
    win = frames(np.asarray(x, dtype=np.float64), fe.window_samples, fe.hop_samples)
    return np.abs(np.fft.rfft(win * periodic_hann(fe.window_samples), fe.fft_length))


def log_mel(x: np.ndarray, fe: FrontEnd) -> np.ndarray:
    """16 kHz mono ``[S]`` -> ``[frames, mel_bands]`` log-mel (float64)."""
    spec = stft_magnitude(x, fe)
    return np.log(spec @ mel_matrix(fe, spec.shape[1]) + fe.log_offset)


def prepare_waveform(wave: np.ndarray, sr: int, fe: FrontEnd, resampler: str = "soxr") -> np.ndarray:
    """``[S]`` at ``sr`` -> float64 ``[S']`` at the front end's rate (resampled if needed)."""
    wave = np.asarray(wave, dtype=np.float32)
    if sr != fe.sample_rate:
        if resampler != "soxr":
            raise ValueError(f"unknown resampler {resampler!r}")
        from avsbench_kit.data.audio import resample

        wave = resample(wave, sr, fe.sample_rate)
    return wave.astype(np.float64)


def examples(wave: np.ndarray, sr: int, fe: FrontEnd = FrontEnd(), resampler: str = "soxr") -> np.ndarray:
    """Mono waveform -> float32 ``[N, 96, 64]`` examples. Audio shorter than one example is
    zero-padded to one example (silence), so every clip gives at least one."""
    x = prepare_waveform(wave, sr, fe, resampler)
    if x.shape[0] < fe.min_samples:
        x = np.pad(x, (0, fe.min_samples - x.shape[0]))
    mel = log_mel(x, fe)
    return frames(mel, fe.example_frames, fe.example_hop_frames).astype(np.float32)


def fit_examples(ex: np.ndarray, count: int, pad: str) -> np.ndarray:
    """Truncate or pad ``[N, ...]`` to ``count`` examples: ``repeat_last`` (AVSBench S4/MS3
    pickles) or ``zero`` (AVSS)."""
    if ex.shape[0] >= count:
        return ex[:count]
    missing = count - ex.shape[0]
    if pad == "repeat_last" and ex.shape[0] > 0:
        filler = np.repeat(ex[-1:], missing, axis=0)
    elif pad in ("zero", "repeat_last"):
        filler = np.zeros((missing,) + ex.shape[1:], dtype=ex.dtype)
    else:
        raise ValueError(f"unknown pad rule {pad!r}")
    return np.concatenate([ex, filler], axis=0)
