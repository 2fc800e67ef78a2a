"""ViT patch + CLS tokens per frame ``[T, 1 + N, D]`` (SAM2-LOVE: ViT-B/16 at 224, 197 x 768).

Real weights: ``google/vit-base-patch16-224`` (hub id or local dir; its own image processor).
Random ``small`` config: 2 layers, 32 wide, 32x32 pixels, patch 8 -> [T, 17, 32]. Stored in
``dtype`` (float16 by default: 197 x 768 tokens per frame add up).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from avsbench_kit.features.base import Encoder, FieldSpec, choice, positive
from avsbench_kit.features.encoders.hf import from_pretrained, local_config, seeded

SMALL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
         "image_size": 32, "patch_size": 8}
SMALL_PROCESSOR = {"size": 32, "resample": "bilinear", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}


class ViTEncoder(Encoder):
    name = "vit"
    modality = "image"
    key_by = "clip"
    needs = ("frames",)
    code_version = "1"

    def validate(self) -> None:
        choice(self.cfg, "config", ("small",))
        choice(self.cfg, "dtype", ("float16", "float32"))
        positive(self.cfg, "batch_size")
        positive(self.cfg, "shard_size")

    def random_config(self) -> dict[str, Any]:
        return {"vit": SMALL, "processor": SMALL_PROCESSOR}

    def output_spec(self) -> dict[str, FieldSpec]:
        if self.weights:
            cfg = local_config(self.weights)
            if cfg:
                tokens = 1 + (cfg["image_size"] // cfg["patch_size"]) ** 2
                return {"tokens": FieldSpec(("T", tokens, cfg["hidden_size"]), self.cfg["dtype"])}
            return {"tokens": FieldSpec(("T", "N", "D"), self.cfg["dtype"])}
        tokens = 1 + (SMALL["image_size"] // SMALL["patch_size"]) ** 2
        return {"tokens": FieldSpec(("T", tokens, SMALL["hidden_size"]), self.cfg["dtype"])}

    def _load(self) -> Any:
        from transformers import AutoImageProcessor, ViTConfig, ViTImageProcessor, ViTModel

        if self.weights:
            rev = str(self.cfg.get("revision") or "")
            model = from_pretrained(lambda p, **kw: ViTModel.from_pretrained(p, add_pooling_layer=False, **kw),
                                    self.weights, rev)
            processor = from_pretrained(AutoImageProcessor.from_pretrained, self.weights, rev, what="image processor")
        else:
            model = seeded(int(self.cfg["seed"]), lambda: ViTModel(ViTConfig(**SMALL), add_pooling_layer=False))
            size = SMALL_PROCESSOR["size"]
            processor = ViTImageProcessor(size={"height": size, "width": size}, image_mean=SMALL_PROCESSOR["mean"],
                                          image_std=SMALL_PROCESSOR["std"])
        return model.eval(), processor

    def _encode(self, model: Any, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from avsbench_kit.features.encoders.clip import frames_of, split_rows

        net, processor = model
        images, counts = frames_of(batch)
        pixels = processor(images=images, do_rescale=False, return_tensors="pt")["pixel_values"]
        hidden = net(pixel_values=self.on_device(pixels)).last_hidden_state
        tokens = hidden.float().cpu().numpy().astype(np.dtype(self.cfg["dtype"]))
        return [{"tokens": part} for part in split_rows(tokens, counts)]
