"""The frozen SAM2 image encoder's outputs per frame, stored in float16.

Levels (choose with ``levels``), for an ``image_size`` S input (multiple of 32):
* ``fpn0``, ``fpn1``, ``fpn2``: the raw ``image_encoder`` FPN levels, 256 channels at S/4, S/8,
  S/16 (what AuralSAM2 feeds its fuser);
* ``conv_s0`` (32 ch, S/4) and ``conv_s1`` (64 ch, S/8): what ``forward_image`` hands the mask
  decoder as high-res features; together with ``fpn2`` (= ``vision_features``) they are the
  ``forward_image`` outputs that prompt-based baselines (AV2T-SAM, SAM2-LOVE) use.
Positional encodings are a deterministic function of the size and are not stored.

Preprocessing as SAM2's own transforms: bilinear resize (antialiased) to S x S, ImageNet mean/std.
Weights: a SAM2 checkpoint (``.pt`` with a "model" state dict) matching ``model_config``, or a hub
id (``facebook/sam2.1-hiera-tiny``); empty = random init of ``model_config`` with ``seed``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from avsbench_kit.errors import ConfigError, DataError
from avsbench_kit.features.base import Encoder, FieldSpec, choice, positive

LEVELS = {  # name: (channels, stride)
    "fpn0": (256, 4),
    "fpn1": (256, 8),
    "fpn2": (256, 16),
    "conv_s0": (32, 4),
    "conv_s1": (64, 8),
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class SAM2ImageEncoder(Encoder):
    name = "sam2_image"
    modality = "image"
    key_by = "clip"
    needs = ("frames",)
    code_version = "1"

    def validate(self) -> None:
        choice(self.cfg, "config", ("small", "full"))
        choice(self.cfg, "dtype", ("float16", "float32"))
        positive(self.cfg, "batch_size")
        positive(self.cfg, "shard_size")
        size = self.cfg["image_size"]
        if not isinstance(size, int) or size <= 0 or size % 32:
            raise ConfigError(f"image_size={size!r} must be a positive multiple of 32 (SAM2's constraint)",
                              hint="e.g. image_size=256 (CPU) or image_size=1024 (SAM2's native size)")
        levels = self.cfg["levels"]
        bad = [lv for lv in levels if lv not in LEVELS] if isinstance(levels, list) else [levels]
        if bad or not levels or len(set(levels)) != len(levels):
            raise ConfigError(f"levels={levels!r}: each must be one of {list(LEVELS)}, without repeats",
                              hint="raw FPN: levels=[fpn0,fpn1,fpn2]; forward_image: levels=[conv_s0,conv_s1,fpn2]")

    def random_config(self) -> dict[str, Any]:
        return {"model_config": self.cfg["model_config"]}

    def output_spec(self) -> dict[str, FieldSpec]:
        size = int(self.cfg["image_size"])
        return {lv: FieldSpec(("T", LEVELS[lv][0], size // LEVELS[lv][1], size // LEVELS[lv][1]), self.cfg["dtype"],
                              role="level") for lv in self.cfg["levels"]}

    def _checkpoint(self) -> str | None:
        if not self.weights:
            return None
        from avsbench_kit.features.base import resolve_weights_path

        path = resolve_weights_path(self.weights)
        if path is not None:
            return str(path)
        from sam2.build_sam import HF_MODEL_ID_TO_FILENAMES

        if self.weights not in HF_MODEL_ID_TO_FILENAMES:
            raise ConfigError(f"unknown SAM2 hub id {self.weights!r}", hint="known: " + ", ".join(HF_MODEL_ID_TO_FILENAMES))
        config, filename = HF_MODEL_ID_TO_FILENAMES[self.weights]
        if config != self.cfg["model_config"]:
            raise ConfigError(f"{self.weights} needs model_config={config}", hint=f"pass model_config={config}")
        try:
            from huggingface_hub import hf_hub_download

            return hf_hub_download(repo_id=self.weights, filename=filename)
        except Exception as exc:
            raise DataError(f"cannot fetch {self.weights}/{filename}: {str(exc).splitlines()[0]}",
                            hint="offline, download the checkpoint elsewhere and pass weights=/path/to/file.pt") from None

    def _load(self) -> Any:
        import torch
        from sam2.build_sam import build_sam2

        ckpt = self._checkpoint()
        overrides = [f"++model.image_size={int(self.cfg['image_size'])}"]
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(self.cfg["seed"]))
                model = build_sam2(self.cfg["model_config"], ckpt, device="cpu", hydra_overrides_extra=overrides)
        except (RuntimeError, KeyError) as exc:
            raise DataError(f"cannot build SAM2 from {self.cfg['model_config']} / {ckpt}: {str(exc).splitlines()[0]}",
                            hint="the checkpoint must match model_config (e.g. sam2.1_hiera_tiny.pt with "
                                 "configs/sam2.1/sam2.1_hiera_t.yaml)") from None
        return model.eval()

    def preprocess(self, frames: Any) -> Any:
        """``[N, 3, H, W]`` in [0, 1] -> normalised ``[N, 3, S, S]``."""
        import torch
        import torch.nn.functional as F

        size = int(self.cfg["image_size"])
        x = torch.as_tensor(frames, dtype=torch.float32)
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        return (x - mean) / std

    def _encode(self, model: Any, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        import torch

        frames = [self.preprocess(u["frames"]) for u in batch]
        counts = [f.shape[0] for f in frames]
        x = torch.cat(frames)
        out = model.image_encoder(x)
        fpn = out["backbone_fpn"]
        arrays: dict[str, torch.Tensor] = {}
        for lv in self.cfg["levels"]:
            if lv.startswith("fpn"):
                arrays[lv] = fpn[int(lv[3])]
            elif lv == "conv_s0":
                arrays[lv] = model.sam_mask_decoder.conv_s0(fpn[0])
            else:
                arrays[lv] = model.sam_mask_decoder.conv_s1(fpn[1])
        dtype = np.dtype(self.cfg["dtype"])
        numpy = {lv: t.float().numpy().astype(dtype) for lv, t in arrays.items()}
        result, start = [], 0
        for n in counts:
            result.append({lv: np.ascontiguousarray(a[start:start + n]) for lv, a in numpy.items()})
            start += n
        return result
