"""The two image backbones ST-BAVA runs on, behind one small interface.

* ``SAMBackbone``: SAM ViT (``avsbench_kit.models.sam1``) — the paper's backbone.
* ``SAM2Backbone``: SAM2 Hiera through the shared SAM2 wrapper (a port: the paper has no SAM2 run).

Both give the stride-16 image embedding [N,256,h,w] (optionally with SAMA-style block prompts),
their per-block widths (adapter sizes), their prompt encoder's random-Fourier matrix (the default
visual PE), and a mask-decoder call with a dense prompt (the fused visual map) and sparse tokens
(the fused audio) returning all multimask logits [N,M,4h,4w] and predicted IoUs [N,M].
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from avsbench_kit.errors import DataError
from baselines.base import feature_request


def _frames(batch: dict, what: str) -> torch.Tensor:
    if "frames" not in batch:
        raise DataError(f"batch {batch.get('key', [])[:2]}... has neither {what} nor frames",
                        hint="build batches with the baseline's feature_requests() and "
                             "with_frames=baseline.needs_frames")
    return batch["frames"]


class _Backbone(nn.Module):
    """What both backbones share: a frozen wrapper ``self.sam``, an optional image cache, and the
    encoder run on frames (without gradients unless block prompts need them)."""

    kind = ""
    cache: str | None = None

    @property
    def checkpoint(self) -> str | None:
        return self.sam.checkpoint

    def describe(self) -> dict:
        return {self.kind: self.sam.describe()}

    def needs_frames(self, prompted: bool) -> bool:
        return prompted or not self.cache

    def pe_matrix(self) -> torch.Tensor:
        return self.sam.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix

    def decoder_modules(self) -> list[nn.Module]:
        return [self.sam.mask_decoder]

    def _on_frames(self, batch: dict, prompts: Sequence[torch.Tensor] | None) -> tuple[Any, int, int]:
        """The wrapper's features of all B·T frames, and (B, T)."""
        frames = _frames(batch, f"the {self.cache!r} cache" if self.cache else "raw frames")
        b, t = frames.shape[:2]
        images = self.sam.preprocess(frames.flatten(0, 1))
        if prompts is not None:
            return self.sam.features(images, prompts), b, t
        with torch.no_grad():
            return self.sam.features(images), b, t


class SAMBackbone(_Backbone):
    """SAM ViT image encoder (frozen) + mask decoder; embeddings computed from frames (a SAM image
    cache does not exist yet: at CPU sizes the encoder is cheap, see docs/baselines.md)."""

    kind = "sam"

    def __init__(self, cfg: dict, image_size: int) -> None:
        super().__init__()
        from avsbench_kit.models.sam1 import SAM1Wrapper

        self.sam = SAM1Wrapper(cfg["variant"], cfg.get("checkpoint"), image_size, size=cfg["size"],
                               init_seed=int(cfg.get("init_seed", 0)))
        self.block_dims = list(self.sam.block_dims)

    def feature_requests(self) -> list:
        return []

    def unreachable_decoder_modules(self) -> list[nn.Module]:
        """Decoder parts no loss on the multimask logits reaches: the IoU head and the single-mask
        output's hypernetwork (frozen, so the trainable count is honest)."""
        dec = self.sam.mask_decoder
        return [dec.iou_prediction_head, dec.output_hypernetworks_mlps[0]]

    def encode(self, batch: dict, prompts: Sequence[torch.Tensor] | None) -> tuple[torch.Tensor, Any]:
        """[B,T,256,h,w] image embeddings (no extras for SAM)."""
        emb, b, t = self._on_frames(batch, prompts)
        return emb.unflatten(0, (b, t)), None

    def decode(self, embed: torch.Tensor, extras: Any, rows: torch.Tensor, cols: torch.Tensor,
               sparse: torch.Tensor, dense: torch.Tensor, pe: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.sam.decode(embed[rows, cols], sparse, dense, image_pe=pe, multimask=True)


class SAM2Backbone(_Backbone):
    """SAM2 Hiera image encoder (frozen) + mask decoder; features from a ``sam2_image`` cache or
    from frames. The decoder's image embedding gets ``no_mem_embed`` as SAM2 does on an un-tracked
    frame; the fusion sees the raw stride-16 level."""

    kind = "sam2"

    def __init__(self, cfg: dict, image_size: int, cache: str | None, levels: Sequence[str] | None,
                 cache_overrides: Sequence[str]) -> None:
        super().__init__()
        from avsbench_kit.models.sam2 import SAM2Wrapper

        self.sam = SAM2Wrapper(cfg["config"], cfg.get("checkpoint"), image_size,
                               init_seed=int(cfg.get("init_seed", 0)),
                               round_features=cfg.get("round_features"))
        self.init_seed = int(cfg.get("init_seed", 0))
        self.cache, self.levels = cache, list(levels or ())
        self.cache_overrides = list(cache_overrides or ())
        self.block_dims = list(self.sam.block_dims)

    def cache_projected(self) -> bool:
        """Whether cached high-res levels already went through conv_s0/conv_s1 (then frozen)."""
        return bool(self.cache) and "fpn0" not in self.levels

    def feature_requests(self) -> list:
        if not self.cache:
            return []
        from avsbench_kit.models.sam2 import sam2_config_path

        s = self.sam
        out = [f"model_config={sam2_config_path(s.config_name)}", f"image_size={s.image_size}",
               f"seed={self.init_seed}"]
        if s.checkpoint:
            out.append(f"weights={s.checkpoint}")
        if self.levels:
            out.append("levels=[" + ",".join(self.levels) + "]")
        return [feature_request(self.cache, tuple(out) + tuple(self.cache_overrides))]

    def unreachable_decoder_modules(self) -> list[nn.Module]:
        """As for SAM, plus the object-score head (its score is not used) and, with a cache of
        ``forward_image`` levels, conv_s0/conv_s1 (applied when the cache was made)."""
        dec = self.sam.mask_decoder
        out = [dec.iou_prediction_head, dec.output_hypernetworks_mlps[0]]
        out += [dec.pred_obj_score_head] if getattr(dec, "pred_obj_score_head", None) is not None else []
        return out + ([dec.conv_s0, dec.conv_s1] if self.cache_projected() else [])

    def encode(self, batch: dict, prompts: Sequence[torch.Tensor] | None) -> tuple[torch.Tensor, Any]:
        """[B,T,256,h,w] stride-16 features + the ImageFeatures of all B·T frames (for decoding)."""
        if prompts is None and self.cache and self.cache in batch.get("features", {}):
            levels = batch["features"][self.cache]
            b, t = next(iter(levels.values())).shape[:2]
            feats = self.sam.from_cache({k: v.flatten(0, 1) for k, v in levels.items()})
        else:
            feats, b, t = self._on_frames(batch, prompts)
        return feats.levels[2].unflatten(0, (b, t)), (feats, t)

    def decode(self, embed: torch.Tensor, extras: Any, rows: torch.Tensor, cols: torch.Tensor,
               sparse: torch.Tensor, dense: torch.Tensor, pe: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        from avsbench_kit.models.sam2 import ImageFeatures

        feats, t = extras
        idx = rows * t + cols
        picked = ImageFeatures(tuple(level[idx] for level in feats.levels), feats.projected)
        image_embed, high_res = self.sam.decoder_inputs(picked)
        out = self.sam.decode_embeddings(image_embed, high_res, sparse, dense=dense, image_pe=pe,
                                         multimask=True)
        return out.low_res_multimasks, out.ious.float()
