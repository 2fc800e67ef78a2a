"""Parameter-free audio and image descriptors: CPU stand-ins for CLAP and CLIP without weights.

Why they exist: with no pretrained weights on the machine, a randomly initialised CLAP gives
nearly collinear embeddings for all clips and a random CLIP carries no class information, so a
fusion model trained on them cannot learn to use audio and a "does the model use audio?" probe
measures nothing (see docs/runs.md). These two descriptors keep the *interface* of the real
encoders (one vector per frame, cached and fingerprinted the same way) while carrying the
information a pretrained encoder would: which pitches sound, and which colours are visible.

* ``logmel_stats`` (audio): the VGGish front end's log-mel bands averaged over each frame's
  ``segment_s`` of audio; ``channels: concat`` concatenates left and right (keeps panning).
* ``rgb_hist`` (image): a joint RGB histogram (``bins`` levels per channel) of each frame, as
  pixel fractions, square-rooted so that small objects are not drowned by the background.
  ``grid: g`` > 0 adds one histogram per cell of a g×g grid after the whole-frame one, ViT's
  layout (CLS + patch tokens): a model that localises from patch tokens (SAM2-LOVE's fusion)
  then has something to localise with.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from avsbench_kit.errors import ConfigError
from avsbench_kit.features.base import Encoder, FieldSpec, choice, positive
from avsbench_kit.features.vggish_frontend import FrontEnd, log_mel


class ParameterFreeEncoder(Encoder):
    """An encoder with no weights: its identity is its code and preprocessing alone."""

    def validate(self) -> None:
        choice(self.cfg, "config", ("none",))
        positive(self.cfg, "shard_size")
        positive(self.cfg, "batch_size")

    def weights_source(self) -> str:
        return "none (parameter-free)"

    def fingerprint_parts(self) -> dict[str, Any]:
        parts = super().fingerprint_parts()
        parts["weights"] = {"kind": "parameter-free"}
        return parts

    def _load(self) -> Any:
        return None  # nothing to load: the descriptor is a fixed function of the input


class LogMelStatsEncoder(ParameterFreeEncoder):
    name = "logmel_stats"
    modality = "audio"
    needs = ("audio",)
    code_version = "1"

    def validate(self) -> None:
        super().validate()
        choice(self.cfg, "channels", ("mono", "concat"))
        positive(self.cfg, "segment_s")
        try:
            self.frontend = FrontEnd(mel_bands=int(self.cfg["mel_bands"]))
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"invalid log-mel front end: {exc}") from None
        if self.cfg["segment_s"] * self.frontend.sample_rate < self.frontend.window_samples:
            raise ConfigError(f"segment_s={self.cfg['segment_s']} is shorter than one 25 ms window",
                              hint="use segment_s >= 0.025 (1.0 = one frame per second)")

    def output_spec(self) -> dict[str, FieldSpec]:
        width = self.frontend.mel_bands * (2 if self.cfg["channels"] == "concat" else 1)
        return {"emb": FieldSpec(("T", width), "float32")}

    def _encode(self, model: Any, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from avsbench_kit.data.audio import resample
        from avsbench_kit.features.encoders.clap import segments

        fe, rate = self.frontend, self.frontend.sample_rate
        length = int(round(float(self.cfg["segment_s"]) * rate))
        out = []
        for unit in batch:
            wave = resample(np.asarray(unit["audio"], dtype=np.float32), int(unit["sample_rate"]), rate)
            parts = segments(wave, rate, int(unit["num_frames"]), float(self.cfg["segment_s"]),
                             self.cfg["channels"])  # concat: left then right in one segment
            rows = [np.concatenate([log_mel(ch, fe).mean(axis=0) for ch in part.reshape(-1, length)])
                    for part in parts]
            out.append({"emb": np.stack(rows).astype(np.float32)})
        return out


class RGBHistogramEncoder(ParameterFreeEncoder):
    name = "rgb_hist"
    modality = "image"
    needs = ("frames",)
    code_version = "1"

    def validate(self) -> None:
        super().validate()
        choice(self.cfg, "transform", ("sqrt", "none"))
        positive(self.cfg, "bins")
        grid = self.cfg.get("grid", 0)
        if isinstance(grid, bool) or not isinstance(grid, int) or not 0 <= grid <= 16:
            raise ConfigError(f"grid={grid!r} must be an integer from 0 (one histogram per frame) to 16",
                              hint="e.g. grid=4: the frame's histogram + 16 cell histograms")
        if int(self.cfg["bins"]) > 16:
            raise ConfigError(f"bins={self.cfg['bins']} gives {int(self.cfg['bins']) ** 3} dimensions",
                              hint="use bins <= 16 (4 = 64 dimensions)")

    def preprocessing(self) -> dict[str, Any]:
        out = super().preprocessing()
        if not out.get("grid"):  # grid=0 is the layout from before the key: its caches stay valid
            out.pop("grid", None)
        return out

    def output_spec(self) -> dict[str, FieldSpec]:
        dim, grid = int(self.cfg["bins"]) ** 3, int(self.cfg.get("grid", 0))
        return {"emb": FieldSpec(("T", 1 + grid * grid, dim) if grid else ("T", dim), "float32")}

    def _encode(self, model: Any, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        bins, grid = int(self.cfg["bins"]), int(self.cfg.get("grid", 0))
        out = []
        for unit in batch:
            frames = np.asarray(unit["frames"], dtype=np.float32)  # [T, 3, H, W] in [0, 1]
            levels = np.clip((frames * bins).astype(np.int64), 0, bins - 1)
            code = (levels[:, 0] * bins + levels[:, 1]) * bins + levels[:, 2]  # [T, H, W]
            regions = [code]
            if grid:
                h, w = code.shape[1:]
                ys, xs = np.linspace(0, h, grid + 1).astype(int), np.linspace(0, w, grid + 1).astype(int)
                regions += [code[:, ys[i]:ys[i + 1], xs[j]:xs[j + 1]] for i in range(grid) for j in range(grid)]
            hist = np.stack([self._hist(r, bins) for r in regions], 1)  # [T, regions, bins^3]
            out.append({"emb": (hist if grid else hist[:, 0]).astype(np.float32)})
        return out

    def _hist(self, code: np.ndarray, bins: int) -> np.ndarray:
        """[T, h, w] colour codes -> [T, bins^3] pixel fractions (square-rooted by default)."""
        hist = np.stack([np.bincount(c.reshape(-1), minlength=bins ** 3) for c in code]).astype(np.float64)
        hist /= max(code[0].size, 1)
        return np.sqrt(hist) if self.cfg["transform"] == "sqrt" else hist
