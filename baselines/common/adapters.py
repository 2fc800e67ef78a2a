"""SAMA-AVS audio adapters, shared by the SAM (v1) baselines that inject a prompt before every
encoder block: ST-BAVA (stage 2) and AV2T-SAM's SAM1 variant (its ``AudioPromptGenerator`` for
EVF-SAM has this exact shape: per block Linear+GELU, one shared Linear to the ViT width)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class AudioAdapters(nn.Module):
    """SAMA-AVS ``AudioPromptGenerator``: per encoder block a private Linear(D->hidden)+GELU, then a
    Linear(hidden->C) shared by all blocks of width C (SAM ViT: one width; Hiera: one per stage)."""

    def __init__(self, in_dim: int, hidden: int, block_dims: Sequence[int]) -> None:
        super().__init__()
        self.block_dims = [int(c) for c in block_dims]
        self.private = nn.ModuleList(nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU())
                                     for _ in self.block_dims)
        self.shared = nn.ModuleDict({str(c): nn.Linear(hidden, c) for c in sorted(set(self.block_dims))})

    def forward(self, audio: torch.Tensor) -> list[torch.Tensor]:
        """audio [N,D] -> one prompt [N,C_j] per block."""
        return [self.shared[str(c)](p(audio)) for p, c in zip(self.private, self.block_dims)]
