"""The frozen SAM2 image encoder's outputs per frame, stored in float16.

Levels (choose with ``levels``), for an ``image_size`` S input (multiple of 32):
* ``fpn0``, ``fpn1``, ``fpn2``: the raw ``image_encoder`` FPN levels, 256 channels at S/4, S/8,
  S/16 (what AuralSAM2 feeds its fuser);
* ``conv_s0`` (32 ch, S/4) and ``conv_s1`` (64 ch, S/8): what ``forward_image`` hands the mask
  decoder as high-res features; together with ``fpn2`` (= ``vision_features``) they are the
  ``forward_image`` outputs that prompt-based baselines (AV2T-SAM, SAM2-LOVE) use.
Positional encodings are a deterministic function of the size and are not stored.

Built, preprocessed and weighted through the one SAM2 layer (``avsbench_kit.models.sam2``), so a
cache and a baseline computing features from frames agree bit for bit: bilinear resize
(antialiased) to S x S, ImageNet mean/std. Weights: a local SAM2 checkpoint (``.pt`` with a "model"
state dict) matching ``model_config``, or a hub id (``facebook/sam2.1-hiera-tiny``) already in the
local Hugging Face cache (never downloaded); empty = random init of ``model_config`` with ``seed``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from avsbench_kit.errors import ConfigError
from avsbench_kit.features.base import Encoder, FieldSpec, choice, positive

LEVELS = {  # name: (channels, stride)
    "fpn0": (256, 4),
    "fpn1": (256, 8),
    "fpn2": (256, 16),
    "conv_s0": (32, 4),
    "conv_s1": (64, 8),
}


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

    def _load(self) -> Any:
        """The one SAM2 layer (``avsbench_kit.models.sam2``): same builder, preprocessing and
        weights policy as the baselines (a local .pt or a hub id already in the HF cache; empty
        weights = random init with ``seed``, never a silent fallback)."""
        from avsbench_kit.models.sam2 import SAM2Wrapper

        return SAM2Wrapper(self.cfg["model_config"], self.weights or None, int(self.cfg["image_size"]),
                           init_seed=int(self.cfg["seed"])).eval()

    def preprocess(self, frames: Any) -> Any:
        """``[N, 3, H, W]`` in [0, 1] -> normalised ``[N, 3, S, S]`` (the layer's preprocessing)."""
        import torch

        return self.model.preprocess(torch.as_tensor(frames).to(self.model.pixel_mean.device))

    def _encode(self, model: Any, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        import torch

        device = model.pixel_mean.device
        # per clip: clips of one batch may differ in frame size until resized
        frames = [model.preprocess(torch.as_tensor(u["frames"]).to(device, non_blocking=True))
                  for u in batch]  # non_blocking: overlaps when the loader pins memory
        counts = [f.shape[0] for f in frames]
        x = torch.cat(frames)
        fpn = model.image_encoder_outputs(x)["backbone_fpn"]
        wanted = self.cfg["levels"]
        arrays = {lv: fpn[int(lv[3])] for lv in wanted if lv.startswith("fpn")}
        if "conv_s0" in wanted or "conv_s1" in wanted:
            s0, s1 = model.project_high_res(fpn[0], fpn[1])
            arrays.update({k: v for k, v in (("conv_s0", s0), ("conv_s1", s1)) if k in wanted})
        dtype = getattr(torch, self.cfg["dtype"])
        host = {lv: arrays[lv].to(dtype).cpu().numpy() for lv in wanted}  # one copy per batch
        result, start = [], 0
        for n in counts:
            result.append({lv: np.ascontiguousarray(a[start:start + n]) for lv, a in host.items()})
            start += n
        return result
