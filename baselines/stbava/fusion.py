"""The ST-BAVA fusion: L blocks that update visual tokens and one audio token per frame together.

Shapes: visual X [B,T,N,C] (N = h·w pixels of the stride-16 map), audio a [B,T,C] (one token per
second), visual PE p_v [N,C], audio PE p_a = the initial audio embedding [B,T,C].

One block (paper Fig. 2b, released ``AVFusionBlock``), every step "add, then LayerNorm":
1. pre-MLP on each modality;
2. audio update (visual -> audio): temporal attention (per pixel, across the T frames: queries
   X+p_v, keys a+p_a, values a; mean over pixels), spatial attention (per frame, queries X+p_v,
   the frame's audio token as key/value; mean over pixels), MLP;
3. visual update (audio -> visual) with the **same two attention modules**: temporal (per pixel,
   queries a+p_a, keys X+p_v, values X), spatial (per frame, query a+p_a, keys X+p_v over the
   pixels, values X; broadcast back over the pixels), MLP.
After the last block the audio gets a residual from its initial embedding.

Ablations: ``temporal=False`` drops both temporal attentions; ``bidirectional=False`` drops the
audio update (step 2), leaving audio -> visual attention only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _mlp(dim: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


class MultiHeadAttention(nn.Module):
    """Multi-head attention over the second-to-last axis, with broadcastable leading axes.

    Inputs are projected *before* they are broadcast, so a token shared by many pixels (the audio
    token of a frame) is projected once, not once per pixel.
    """

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads, self.dropout = heads, dropout
        self.q, self.k, self.v, self.out = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """query [..., Lq, C], key/value [..., Lk, C] -> [..., Lq, C] (leading axes broadcast)."""
        q, k, v = self.q(query), self.k(key), self.v(value)
        lead = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])

        def heads(x: torch.Tensor) -> torch.Tensor:  # [..., L, C] -> [..., H, L, C/H]
            x = x.expand(*lead, *x.shape[-2:])
            return x.unflatten(-1, (self.heads, -1)).transpose(-3, -2)

        o = F.scaled_dot_product_attention(heads(q), heads(k), heads(v),
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out(o.transpose(-3, -2).flatten(-2))


class TemporalAttention(nn.Module):
    """Attention along the frame axis, independently at every pixel (the pixels are a batch axis).

    The released code relied on ``nn.MultiheadAttention``'s sequence-first default to get this
    axis; here the transpose is explicit: [B,T,N,C] -> [B,N,T,C], sequence = T.
    """

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(dim, heads, dropout)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """query/key/value [B,T,N,C] (N may be 1: broadcast over the pixels) -> [B,T,N',C]."""
        out = self.attn(query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2))
        return out.transpose(1, 2)


class SpatialAttention(nn.Module):
    """Attention over the pixels of one frame (batch axes B and T)."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(dim, heads, dropout)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """query [B,T,Nq,C], key/value [B,T,Nk,C] -> [B,T,Nq,C]."""
        return self.attn(query, key, value)


class STBAVABlock(nn.Module):
    """One ST-BAVA block (see the module docstring)."""

    def __init__(self, dim: int = 256, heads: int = 8, dropout: float = 0.1, mlp_hidden: int = 256,
                 *, temporal: bool = True, bidirectional: bool = True) -> None:
        super().__init__()
        self.temporal_on, self.bidirectional = temporal, bidirectional
        # the two attention modules, used by BOTH directions (weights shared)
        self.temporal = TemporalAttention(dim, heads, dropout) if temporal else None
        self.spatial = SpatialAttention(dim, heads, dropout)
        self.pre_v, self.pre_a, self.post_v = (_mlp(dim, mlp_hidden) for _ in range(3))
        self.post_a = _mlp(dim, mlp_hidden) if bidirectional else None
        norms = ["pre_v", "pre_a", "post_v", "v_spatial"] + (["v_temporal"] if temporal else [])
        if bidirectional:
            norms += ["post_a", "a_spatial"] + (["a_temporal"] if temporal else [])
        self.norms = nn.ModuleDict({k: nn.LayerNorm(dim) for k in norms})
        self.drop = nn.Dropout(dropout)

    def _add(self, x: torch.Tensor, y: torch.Tensor, norm: str) -> torch.Tensor:
        return self.norms[norm](x + self.drop(y))

    def forward(self, x: torch.Tensor, a: torch.Tensor, pos_v: torch.Tensor,
                pos_a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B,T,N,C], a [B,T,C], pos_v [N,C], pos_a [B,T,C] -> updated (x, a)."""
        x = self._add(x, self.pre_v(x), "pre_v")
        a = self._add(a, self.pre_a(a), "pre_a")
        xq = x + pos_v                      # visual queries/keys carry the visual PE
        a4 = a.unsqueeze(2)                 # [B,T,1,C]
        aq = (a + pos_a).unsqueeze(2)
        if self.post_a is not None:         # visual -> audio (bidirectional)
            if self.temporal is not None:
                upd = self.temporal(xq, aq, a4).mean(dim=2)      # per pixel over T, then mean over pixels
                a = self._add(a, upd, "a_temporal")
                a4, aq = a.unsqueeze(2), (a + pos_a).unsqueeze(2)
            upd = self.spatial(xq, a4, a4).mean(dim=2)           # one audio key per frame
            a = self._add(a, upd, "a_spatial")
            a = self._add(a, self.post_a(a), "post_a")
            a4, aq = a.unsqueeze(2), (a + pos_a).unsqueeze(2)
        # audio -> visual, same attention modules
        if self.temporal is not None:
            x = self._add(x, self.temporal(aq, xq, x), "v_temporal")
            xq = x + pos_v
        upd = self.spatial(aq, xq, x)                            # [B,T,1,C]: pooled over the pixels
        x = self._add(x, upd.expand_as(x), "v_spatial")
        x = self._add(x, self.post_v(x), "post_v")
        return x, a


class STBAVA(nn.Module):
    """L ST-BAVA blocks and the final audio residual."""

    def __init__(self, layers: int, dim: int = 256, heads: int = 8, dropout: float = 0.1,
                 mlp_hidden: int = 256, *, temporal: bool = True, bidirectional: bool = True) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            STBAVABlock(dim, heads, dropout, mlp_hidden, temporal=temporal, bidirectional=bidirectional)
            for _ in range(layers))

    def forward(self, visual: torch.Tensor, audio: torch.Tensor,
                pos_v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """visual [B,T,C,h,w], audio [B,T,C] (its own PE), pos_v [C,h,w] -> fused (visual, audio)."""
        b, t, c, h, w = visual.shape
        x = visual.flatten(3).transpose(2, 3)            # [B,T,N,C]
        pv = pos_v.flatten(1).transpose(0, 1)            # [N,C]
        a = audio
        for blk in self.blocks:
            x, a = blk(x, a, pv, audio)
        a = a + audio
        return x.transpose(2, 3).reshape(b, t, c, h, w), a
