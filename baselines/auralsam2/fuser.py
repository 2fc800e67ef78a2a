"""AuralFuser: SAM2's raw FPN pyramid + audio(+text) tokens -> three dense maps, three sparse vectors.

Per pyramid level i (fine fpn0 -> coarse fpn2), written from the paper's §3.2 and the method
notes (``shared/spec/methods/auralsam2.md`` §3):

1. a patch embedding (conv, kernel = stride = 4 / 2 / 1 at image_size / 4, 8, 16) brings every
   level to the stride-16 grid of SAM2's image embedding, plus a fixed 2-D sine PE;
2. from level 1 on, the previous level's fused map is added and smoothed by a 1x1 conv (top-down
   pyramid), then the PE is added again;
3. PVT-v2-style visual blocks (spatial-reduction attention, depth-wise conv in the MLP), per frame;
4. 1-D transformer blocks over the clip's audio (+text) token sequence (all seconds see each other);
5. TPAVI-style bidirectional fusion over *all* frames at once (no softmax, normalised by the number
   of keys, zero-initialised BatchNorm so each fusion starts as the identity).

The dense prompt of level i is its fused visual map, the sparse prompt of frame t its fused audio
token t. Small projection heads give the 128-d embeddings AudioCon contrasts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

#: how the fixed 1-D sine PE is added to the audio(+text) tokens
AUDIO_PE = ("single", "per_token", "none")


def sine_pe_2d(dim: int, h: int, w: int, temperature: float = 10000.0) -> torch.Tensor:
    """Normalised 2-D sine PE [1, dim, h, w] (half the channels encode y, half x)."""
    half = dim // 2
    y = (torch.arange(1, h + 1, dtype=torch.float32) / (h + 1e-6) * 2 * math.pi)[:, None]
    x = (torch.arange(1, w + 1, dtype=torch.float32) / (w + 1e-6) * 2 * math.pi)[:, None]
    freq = temperature ** (2 * (torch.arange(half) // 2).float() / half)

    def enc(pos: torch.Tensor) -> torch.Tensor:  # [n, 1] -> [n, half]
        v = pos / freq
        return torch.stack((v[:, 0::2].sin(), v[:, 1::2].cos()), dim=2).flatten(1)

    ey = enc(y)[:, None, :].expand(h, w, half)
    ex = enc(x)[None, :, :].expand(h, w, half)
    return torch.cat((ey, ex), dim=2).permute(2, 0, 1).unsqueeze(0).contiguous()


def sine_pe_1d(dim: int, length: int, temperature: float = 10000.0) -> torch.Tensor:
    """Fixed 1-D sine PE [length, dim]."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = temperature ** (2 * (torch.arange(dim) // 2).float() / dim)
    v = pos / freq
    out = torch.zeros(length, dim)
    out[:, 0::2], out[:, 1::2] = v[:, 0::2].sin(), v[:, 1::2].cos()
    return out


class SRAttention(nn.Module):
    """Multi-head attention whose keys/values come from a ``sr``-times strided copy of the map."""

    def __init__(self, dim: int, heads: int, sr: int, qkv_bias: bool, attn_drop: float,
                 drop: float) -> None:
        super().__init__()
        self.heads, self.sr, self.attn_drop = heads, sr, attn_drop
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(drop)
        if sr > 1:
            self.reduce = nn.Conv2d(dim, dim, kernel_size=sr, stride=sr)
            self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        n, length, c = x.shape
        q = self.q(x).view(n, length, self.heads, c // self.heads).transpose(1, 2)
        src = x
        if self.sr > 1:
            grid = x.transpose(1, 2).reshape(n, c, h, w)
            src = self.norm(self.reduce(grid).flatten(2).transpose(1, 2))
        k, v = self.kv(src).view(n, -1, 2, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(n, length, c)))


class ConvMLP(nn.Module):
    """PVT-v2 MLP: Linear -> depth-wise 3x3 conv on the token grid -> GELU -> Linear."""

    def __init__(self, dim: int, ratio: float, drop: float) -> None:
        super().__init__()
        hidden = int(dim * ratio)
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.dw = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        n, length, _ = x.shape
        y = self.fc1(x)
        y = self.dw(y.transpose(1, 2).reshape(n, -1, h, w)).flatten(2).transpose(1, 2)
        return self.drop(self.fc2(self.drop(F.gelu(y))))


class PVTBlock(nn.Module):
    """Pre-norm PVT-v2 block over one frame's token grid."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, sr: int, qkv_bias: bool,
                 drop: float, attn_drop: float) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = SRAttention(dim, heads, sr, qkv_bias, attn_drop, drop)
        self.mlp = ConvMLP(dim, mlp_ratio, drop)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), h, w)
        return x + self.mlp(self.norm2(x), h, w)


class TokenBlock(nn.Module):
    """Pre-norm transformer block over a clip's 1-D token sequence (the paper's "OneD" block)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, drop: float, attn_drop: float) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=attn_drop, batch_first=True)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(drop),
                                 nn.Linear(hidden, dim), nn.Dropout(drop))

    def forward(self, x: torch.Tensor, pad: torch.Tensor | None = None) -> torch.Tensor:
        y = self.norm1(x)
        x = x + self.attn(y, y, y, key_padding_mask=pad, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class BiFusion(nn.Module):
    """TPAVI-style bidirectional dot-product fusion without softmax (divided by the key count).

    Visual queries are all pixels of all T frames of a clip (one sequence), keys/values all audio
    (+text) tokens; and the reverse. Each direction ends in Linear + BatchNorm whose scale starts at
    zero, so the block is the identity at initialisation, then a residual LayerNorm.
    """

    def __init__(self, dim: int, inter: int) -> None:
        super().__init__()
        self.v_theta, self.a_phi, self.a_g = (nn.Linear(dim, inter) for _ in range(3))
        self.a_theta, self.v_phi, self.v_g = (nn.Linear(dim, inter) for _ in range(3))
        self.v_out, self.a_out = nn.Linear(inter, dim), nn.Linear(inter, dim)
        self.v_bn, self.a_bn = nn.BatchNorm1d(dim), nn.BatchNorm1d(dim)
        for bn in (self.v_bn, self.a_bn):
            nn.init.zeros_(bn.weight)
            nn.init.zeros_(bn.bias)
        self.v_norm, self.a_norm = nn.LayerNorm(dim), nn.LayerNorm(dim)

    @staticmethod
    def _bn(bn: nn.BatchNorm1d, y: torch.Tensor) -> torch.Tensor:
        return bn(y.transpose(1, 2)).transpose(1, 2)

    def forward(self, v: torch.Tensor, a: torch.Tensor,
                a_keep: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """v [B, T*h*w, C], a [B, L, C]; ``a_keep`` [B, L] (False = token left out as a key)."""
        ka, va = self.a_phi(a), self.a_g(a)
        if a_keep is not None:
            keep = a_keep.to(a.dtype)[..., None]
            ka, va = ka * keep, va * keep
            n_a = keep.sum(1, keepdim=True).clamp(min=1.0)
        else:
            n_a = torch.full((a.shape[0], 1, 1), float(a.shape[1]), dtype=a.dtype, device=a.device)
        y_v = (self.v_theta(v) @ ka.transpose(1, 2)) / n_a @ va
        y_a = (self.a_theta(a) @ self.v_phi(v).transpose(1, 2)) / v.shape[1] @ self.v_g(v)
        v = self.v_norm(v + self._bn(self.v_bn, self.v_out(y_v)))
        a = self.a_norm(a + self._bn(self.a_bn, self.a_out(y_a)))
        return v, a


def projection_head(dim: int, out: int) -> nn.Sequential:
    """Linear-GELU-LayerNorm-Linear head for the contrastive embeddings."""
    return nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.LayerNorm(dim), nn.Linear(dim, out))


@dataclass
class FuserConfig:
    dim: int = 256
    visual_blocks: tuple[int, int, int] = (3, 6, 12)
    audio_blocks: int = 3
    heads: int = 4
    mlp_ratio: float = 4.0
    sr_ratio: int = 4
    qkv_bias: bool = True
    drop: float = 0.1
    attn_drop: float = 0.1
    fusion_dim: int = 128
    proj_dim: int = 128
    audio_pe: str = "single"
    text_padding: str = "attend"  # attend (released code: all 25 tokens) | mask


@dataclass
class FuserOutput:
    dense: list[torch.Tensor]  # per level [B, T, C, g, g]
    sparse: list[torch.Tensor]  # per level [B, T, C] (the audio token of each frame)
    visual_embed: list[torch.Tensor]  # per level [B, T, P, g, g], L2-normalised
    audio_embed: list[torch.Tensor]  # per level [B, T, P], L2-normalised


class AuralFuser(nn.Module):
    """See the module docstring. ``levels`` are SAM2's raw FPN maps at strides 4, 8, 16."""

    STRIDES = (4, 2, 1)

    def __init__(self, cfg: FuserConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self.patch_embeds = nn.ModuleList(nn.Conv2d(256, d, kernel_size=s, stride=s) for s in self.STRIDES)
        self.smooth = nn.ModuleList(nn.Conv2d(d, d, kernel_size=1) for _ in range(2))
        self.visual_blocks = nn.ModuleList(
            nn.ModuleList(PVTBlock(d, cfg.heads, cfg.mlp_ratio, cfg.sr_ratio, cfg.qkv_bias, cfg.drop,
                                   cfg.attn_drop) for _ in range(n)) for n in cfg.visual_blocks)
        self.audio_blocks = nn.ModuleList(
            nn.ModuleList(TokenBlock(d, cfg.heads, cfg.mlp_ratio, cfg.drop, cfg.attn_drop)
                          for _ in range(cfg.audio_blocks)) for _ in range(3))
        self.fusions = nn.ModuleList(BiFusion(d, cfg.fusion_dim) for _ in range(3))
        self.visual_head = projection_head(d, cfg.proj_dim)
        self.audio_head = projection_head(d, cfg.proj_dim)

    def _audio_pe(self, length: int, device: torch.device) -> torch.Tensor:
        if self.cfg.audio_pe == "none":
            return torch.zeros(1, 1, self.cfg.dim, device=device)
        if self.cfg.audio_pe == "single":  # released code: one fixed vector added to every token
            return sine_pe_1d(self.cfg.dim, 1).to(device)[None]
        return sine_pe_1d(self.cfg.dim, length).to(device)[None]

    def forward(self, levels: tuple[torch.Tensor, torch.Tensor, torch.Tensor], tokens: torch.Tensor,
                num_audio: int, token_keep: torch.Tensor | None = None) -> FuserOutput:
        """``levels[i]`` [B, T, 256, h_i, w_i]; ``tokens`` [B, L, C] = T audio tokens then text tokens."""
        b, t = levels[0].shape[:2]
        keep = token_keep if self.cfg.text_padding == "mask" else None
        pad = None if keep is None else ~keep
        prev, a = None, tokens
        out = FuserOutput([], [], [], [])
        for i in range(3):
            x = self.patch_embeds[i](levels[i].flatten(0, 1).to(self.patch_embeds[i].weight.dtype))
            g_h, g_w = x.shape[-2:]
            pe = sine_pe_2d(self.cfg.dim, g_h, g_w).to(x)
            x = x + pe
            if prev is not None:
                x = self.smooth[i - 1](x + prev) + pe
            seq = x.flatten(2).transpose(1, 2)  # [B*T, g*g, C]
            for blk in self.visual_blocks[i]:
                seq = blk(seq, g_h, g_w)
            a = a + self._audio_pe(a.shape[1], a.device).to(a.dtype)
            for blk in self.audio_blocks[i]:
                a = blk(a, pad)
            v, a = self.fusions[i](seq.reshape(b, t * g_h * g_w, -1), a, keep)
            fused = v.reshape(b * t, g_h * g_w, -1).transpose(1, 2).reshape(b * t, -1, g_h, g_w)
            prev = fused
            out.dense.append(fused.reshape(b, t, -1, g_h, g_w))
            out.sparse.append(a[:, :num_audio])
            vis = F.normalize(self.visual_head(v), dim=-1)  # [B, T*g*g, P]
            out.visual_embed.append(vis.reshape(b, t, g_h, g_w, -1).permute(0, 1, 4, 2, 3))
            out.audio_embed.append(F.normalize(self.audio_head(a[:, :num_audio]), dim=-1))
        return out
