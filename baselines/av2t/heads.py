"""AV2T-SAM's trainable heads: CLAP⊙CLIP fusion, pseudo text tokens, EVF projector, adapters."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

PROMPT_FEATURES = ("clip_x_clap", "clap", "clip")
FEATURE_NORMS = ("l2", "bn_l2")


class PromptFeature(nn.Module):
    """L2-normalise CLAP audio / CLIP image features, project each to ``width``, fuse by
    element-wise product (``clip_x_clap``), or keep one modality (``clap`` / ``clip`` ablations).

    Only the projections a mode uses exist, so ``clip`` has no audio parameters at all.
    """

    def __init__(self, mode: str, audio_dim: int, image_dim: int, width: int = 512,
                 norm: str = "l2") -> None:
        super().__init__()
        if mode not in PROMPT_FEATURES:
            raise ValueError(f"unknown prompt feature {mode!r}")
        if norm not in FEATURE_NORMS:
            raise ValueError(f"unknown feature norm {norm!r}")
        self.mode, self.norm = mode, norm
        self.audio_proj = nn.Linear(audio_dim, width) if mode != "clip" else None
        self.image_proj = nn.Linear(image_dim, width) if mode != "clap" else None
        # bn_l2 (not in the paper): standardise each input dimension with running statistics
        # before the L2 norm, for encoders whose embeddings all point the same way
        self.audio_bn = nn.BatchNorm1d(audio_dim, affine=False) \
            if norm == "bn_l2" and self.audio_proj is not None else None
        self.image_bn = nn.BatchNorm1d(image_dim, affine=False) \
            if norm == "bn_l2" and self.image_proj is not None else None
        for layer in (self.audio_proj, self.image_proj):
            if layer is not None:  # the released projector uses Kaiming-normal weights
                nn.init.kaiming_normal_(layer.weight)

    @property
    def uses_audio(self) -> bool:
        return self.audio_proj is not None

    @property
    def uses_image(self) -> bool:
        return self.image_proj is not None

    @staticmethod
    def _normalise(x: torch.Tensor, bn: nn.BatchNorm1d | None) -> torch.Tensor:
        x = x.float()
        if bn is not None:
            use_batch = bn.training and x.shape[0] > 1  # one frame has no batch statistics
            x = F.batch_norm(x, bn.running_mean, bn.running_var, training=use_batch,
                             momentum=bn.momentum, eps=bn.eps)
            if use_batch:
                bn.num_batches_tracked.add_(1)
        return F.normalize(x, dim=-1)

    def forward(self, audio: torch.Tensor | None, image: torch.Tensor | None) -> torch.Tensor:
        a = self.audio_proj(self._normalise(audio, self.audio_bn)) \
            if self.audio_proj is not None else None
        v = self.image_proj(self._normalise(image, self.image_bn)) \
            if self.image_proj is not None else None
        if a is not None and v is not None:
            return a * v
        return a if a is not None else v  # type: ignore[return-value]


class PseudoTokens(nn.Module):
    """Fused feature -> K pseudo text-token embeddings of the frozen text encoder's width."""

    def __init__(self, width: int, hidden: int, num_tokens: int = 3) -> None:
        super().__init__()
        self.num_tokens, self.hidden = num_tokens, hidden
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.ReLU(),
                                 nn.Linear(width, num_tokens * hidden))

    def forward(self, fused: torch.Tensor) -> torch.Tensor:
        return self.mlp(fused).view(fused.shape[0], self.num_tokens, self.hidden)


def text_hidden_fcs(hidden: int, out_dim: int = 256) -> nn.Sequential:
    """EVF-SAM's projector from the text encoder's pooled output to one SAM prompt token."""
    return nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))


class AdapterGenerator(nn.Module):
    """One Linear–GELU–Linear per image-encoder block: fused feature -> that block's input width
    (the SAM2 variant of AV2T-SAM's ``AudioPromptGenerator``)."""

    def __init__(self, width: int, block_dims: Sequence[int]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, int(c)))
            for c in block_dims)

    def forward(self, fused: torch.Tensor) -> list[torch.Tensor]:
        return [blk(fused) for blk in self.blocks]
