"""SAM2-LOVE's multimodal fusion: tri-modal sequence -> one (or K) ``[seg]`` token(s).

Per frame i the encoder sees ``[seg]_K ; audio ; [aud] ; text ; [vis] ; vision_i ; [his]`` and the
``[seg]`` output is read at positions 0..K-1. *Token propagation*: the ``[seg]`` output of frame i is
the ``[seg]`` input of frame i+1, so the token that finally prompts SAM2 has seen the whole clip.
*Token accumulation*: ``[his]`` holds the projected CLS tokens of the frames seen so far and lets the
token look back at early frames. Modalities switched off are dropped from the sequence (their
indicator token too), so an ``audio=off`` model has no audio parameters and reads no audio.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

POSITIONALS = ("sinusoidal", "learned", "none")
INDICATORS = ("fixed", "learnable")
AUDIO_TOKENS = ("clip", "frame")
HIS_SOURCES = ("projected", "separate")


def projection(in_dim: int, width: int) -> nn.Sequential:
    """The paper's per-modality Linear–ReLU–Linear projection to the fusion width."""
    return nn.Sequential(nn.Linear(in_dim, width), nn.ReLU(), nn.Linear(width, width))


def sinusoid(n: int, width: int, device: torch.device | None = None) -> torch.Tensor:
    """[n, width] fixed sinusoidal encodings of positions 0..n-1 (any length, no parameters)."""
    pos = torch.arange(n, dtype=torch.float32, device=device)[:, None]
    freq = torch.exp(torch.arange(0, width, 2, dtype=torch.float32, device=device)
                     * (-math.log(10000.0) / width))
    out = torch.zeros(n, width, device=device)
    out[:, 0::2] = torch.sin(pos * freq)
    out[:, 1::2] = torch.cos(pos * freq)[:, : width // 2]
    return out


@dataclass
class FusionConfig:
    """Every fusion choice the paper leaves open (defaults documented in docs/baselines.md)."""

    layers: int = 6
    width: int = 256
    heads: int = 8
    ffn: int = 1024
    dropout: float = 0.0
    positional: str = "sinusoidal"   # within-modality index encodings: sinusoidal | learned | none
    max_positions: int = 256          # table size of positional=learned
    indicators: str = "fixed"         # [aud]/[vis]: fixed (seeded, frozen) | learnable
    seg_tokens: int = 1
    propagation: bool = True
    accumulation: bool = True
    his_source: str = "projected"     # projected (vision MLP of the CLS) | separate (own MLP)
    his_includes_current: bool = False
    audio_tokens: str = "clip"        # clip: all seconds every frame | frame: second i only


class FusionTransformer(nn.Module):
    """The bidirectional fusion encoder plus the tokens and projections it owns.

    ``audio_dim`` / ``text_dim`` = 0 means that modality is off: no projection, no indicator,
    nothing from it in the sequence.
    """

    def __init__(self, cfg: FusionConfig, audio_dim: int, text_dim: int, vision_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.seg_token = nn.Parameter(torch.randn(cfg.seg_tokens, w) * 0.02)
        self.audio_proj = projection(audio_dim, w) if audio_dim else None
        self.text_proj = projection(text_dim, w) if text_dim else None
        self.vision_proj = projection(vision_dim, w)
        self.his_proj = projection(vision_dim, w) \
            if cfg.accumulation and cfg.his_source == "separate" else None
        # type embeddings tell the five segments apart independently of their length
        self.type_embed = nn.Parameter(torch.randn(5, w) * 0.02)  # seg, audio, text, vision, his
        ind = torch.randn(2, w) * 0.02
        if cfg.indicators == "learnable":
            self.indicator_tokens = nn.Parameter(ind)
        else:
            self.register_buffer("indicator_tokens", ind)
        self.pos_embed = nn.Parameter(torch.randn(cfg.max_positions, w) * 0.02) \
            if cfg.positional == "learned" else None
        layer = nn.TransformerEncoderLayer(w, cfg.heads, cfg.ffn, cfg.dropout, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(w)

    @property
    def uses_audio(self) -> bool:
        return self.audio_proj is not None

    @property
    def uses_text(self) -> bool:
        return self.text_proj is not None

    def _pos(self, n: int, device: torch.device) -> torch.Tensor:
        if self.cfg.positional == "none" or n == 0:
            return torch.zeros(n, self.cfg.width, device=device)
        if self.pos_embed is not None:
            if n > self.pos_embed.shape[0]:
                raise ValueError(f"{n} tokens exceed fusion.max_positions={self.pos_embed.shape[0]}")
            return self.pos_embed[:n]
        return sinusoid(n, self.cfg.width, device)

    def _segment(self, x: torch.Tensor, kind: int) -> torch.Tensor:
        """Add the segment's type embedding and within-segment positions: [B,N,w]."""
        return x + self.type_embed[kind] + self._pos(x.shape[1], x.device)

    def forward(self, vision: torch.Tensor, audio: torch.Tensor | None = None,
                text: torch.Tensor | None = None, text_mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """vision [B,T,N,Dv] (token 0 = CLS), audio [B,T,Da], text [B,L,Dt] + mask [B,L] (True =
        real token) -> final ``[seg]`` [B,K,w] and the per-frame ``[seg]`` outputs (T of [B,K,w])."""
        cfg = self.cfg
        b, t = vision.shape[:2]
        k = cfg.seg_tokens
        dev = vision.device
        vis = self.vision_proj(vision.float())                       # [B,T,N,w]
        cls = vis[:, :, 0] if self.his_proj is None else self.his_proj(vision[:, :, 0].float())
        if self.audio_proj is not None:
            if audio is None:
                raise ValueError("this fusion uses audio but got none")
            aud = self.audio_proj(audio.float())                     # [B,T,w]
        if self.text_proj is not None:
            if text is None:
                raise ValueError("this fusion uses text but got none")
            txt = self._segment(self.text_proj(text.float()), 2)
            pad = torch.zeros(b, txt.shape[1], dtype=torch.bool, device=dev) if text_mask is None \
                else ~text_mask.bool()
        seg = self.seg_token.unsqueeze(0).expand(b, -1, -1)
        outputs: list[torch.Tensor] = []
        for i in range(t):
            parts, pads = [self._segment(seg, 0)], [torch.zeros(b, k, dtype=torch.bool, device=dev)]
            if self.audio_proj is not None:
                a = aud if cfg.audio_tokens == "clip" else aud[:, i: i + 1]
                parts += [self._segment(a, 1), self.indicator_tokens[0].expand(b, 1, -1)]
                pads += [torch.zeros(b, a.shape[1] + 1, dtype=torch.bool, device=dev)]
            if self.text_proj is not None:
                parts.append(txt)
                pads.append(pad)
            v = self._segment(vis[:, i], 3)
            parts += [self.indicator_tokens[1].expand(b, 1, -1), v]
            pads += [torch.zeros(b, v.shape[1] + 1, dtype=torch.bool, device=dev)]
            if cfg.accumulation:
                last = i + 1 if cfg.his_includes_current else i
                if last > 0:
                    parts.append(self._segment(cls[:, :last], 4))
                    pads.append(torch.zeros(b, last, dtype=torch.bool, device=dev))
            seq, mask = torch.cat(parts, 1), torch.cat(pads, 1)
            out = self.norm(self.encoder(seq, src_key_padding_mask=mask))[:, :k]
            outputs.append(out)
            if cfg.propagation:
                seg = out
        final = outputs[-1] if cfg.propagation else torch.stack(outputs, 0).mean(0)
        return final, outputs
