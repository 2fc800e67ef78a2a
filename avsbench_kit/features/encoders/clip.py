"""CLIP: image tower (projected embedding per frame, as AV2T-SAM uses ViT-B/32) and text tower
(token features + mask + projected sentence embedding).

Real weights: a hub id (``openai/clip-vit-base-patch32``) or a local dir; the image processor /
tokenizer come from the same place. Random ``small`` config: 2-layer 32-wide towers at 32x32
pixels, patch 8, with the offline CLIP-style BPE tokenizer.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from avsbench_kit.features.base import Encoder, FieldSpec, choice, positive
from avsbench_kit.features.encoders.hf import DualEncoderText, from_pretrained, local_config, seeded
from avsbench_kit.features.tokenizer import offline_tokenizer, special_ids, tokenizer_digest

VOCAB = 600
SMALL_VISION = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
                "image_size": 32, "patch_size": 8}
SMALL_TEXT = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
SMALL_PROJECTION = 32
#: OpenAI CLIP's preprocessing (bicubic resize of the short side, centre crop, CLIP mean/std)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def small_clip_config(max_length: int) -> dict[str, Any]:
    text = {**SMALL_TEXT, "vocab_size": VOCAB, "max_position_embeddings": max(int(max_length), 8),
            **special_ids("clip")}
    return {"vision": SMALL_VISION, "text": text, "projection_dim": SMALL_PROJECTION,
            "tokenizer": tokenizer_digest("clip", VOCAB),
            "processor": {"size": SMALL_VISION["image_size"], "resample": "bicubic", "mean": CLIP_MEAN, "std": CLIP_STD}}


def load_clip(enc: Encoder, want: str) -> tuple[Any, Any]:
    """(CLIPModel, image processor or tokenizer) for real weights or the seeded small config."""
    from transformers import AutoImageProcessor, AutoTokenizer, CLIPConfig, CLIPImageProcessor, CLIPModel

    if enc.weights:
        rev = str(enc.cfg.get("revision") or "")
        model = from_pretrained(CLIPModel.from_pretrained, enc.weights, rev)
        if want == "image":
            helper = from_pretrained(AutoImageProcessor.from_pretrained, enc.weights, rev, what="image processor")
        else:
            helper = from_pretrained(AutoTokenizer.from_pretrained, enc.weights, rev, what="tokenizer")
        return model.eval(), helper
    small = small_clip_config(int(enc.cfg.get("max_length", 77)))
    config = CLIPConfig(text_config=small["text"], vision_config=small["vision"], projection_dim=small["projection_dim"])
    model = seeded(int(enc.cfg["seed"]), lambda: CLIPModel(config))
    if want == "image":
        size = small["processor"]["size"]
        helper = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size},
                                    image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD))
    else:
        helper = offline_tokenizer("clip", VOCAB)
    return model.eval(), helper


def frames_of(batch: list[dict[str, Any]]) -> tuple[list[Any], list[int]]:
    """All frames of a batch of clips as a flat list of [3, H, W] tensors, and the count per clip."""
    import torch

    images, counts = [], []
    for unit in batch:
        frames = torch.as_tensor(unit["frames"], dtype=torch.float32)
        images.extend(list(frames))
        counts.append(frames.shape[0])
    return images, counts


def split_rows(array: np.ndarray, counts: list[int]) -> list[np.ndarray]:
    out, start = [], 0
    for n in counts:
        out.append(np.ascontiguousarray(array[start:start + n]))
        start += n
    return out


class ClipImageEncoder(Encoder):
    name = "clip"
    modality = "image"
    key_by = "clip"
    needs = ("frames",)
    code_version = "1"

    def validate(self) -> None:
        choice(self.cfg, "config", ("small",))
        positive(self.cfg, "batch_size")
        positive(self.cfg, "shard_size")

    def random_config(self) -> dict[str, Any]:
        small = small_clip_config(77)
        return {k: small[k] for k in ("vision", "projection_dim", "processor")}

    def output_spec(self) -> dict[str, FieldSpec]:
        dim = local_config(self.weights).get("projection_dim", "D") if self.weights else SMALL_PROJECTION
        return {"emb": FieldSpec(("T", dim), "float32")}

    def _load(self) -> Any:
        return load_clip(self, "image")

    def _encode(self, model: Any, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from avsbench_kit.features.encoders.hf import pooled_output

        net, processor = model
        images, counts = frames_of(batch)
        pixels = processor(images=images, do_rescale=False, return_tensors="pt")["pixel_values"]
        emb = pooled_output(net.get_image_features(pixel_values=self.on_device(pixels))).float().cpu().numpy()
        return [{"emb": part} for part in split_rows(emb, counts)]


class ClipTextEncoder(DualEncoderText):
    name = "clip_text"
    code_version = "1"

    def small_config(self, max_length: int) -> dict[str, Any]:
        return small_clip_config(max_length)

    def _load(self) -> Any:
        return load_clip(self, "text")
