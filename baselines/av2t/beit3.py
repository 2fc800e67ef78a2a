"""BEiT-3 multiway text-image encoder, the multimodal extractor of EVF-SAM / EVF-SAM2.

Why here: AV2T-SAM feeds its pseudo text tokens, together with the frame's image tokens, through
EVF's frozen BEiT-3 and prompts SAM with the output at position 0 (the vision [CLS]). Written
from the architecture (BEiT-3 paper; torchscale's layout read to map checkpoint keys), no
torchscale dependency:

* vision tokens: [CLS] + 16×16 patches of the frame (224², bicubic, mean/std 0.5); text tokens:
  embeddings (real ids through ``text_embed`` or, for AV2T-SAM, the pseudo tokens directly);
* each modality has its own learned positions starting at index 2 (fairseq convention);
* every block: pre-norm self-attention over *all* tokens jointly (early fusion), then a pre-norm
  FFN; the norms, the q/k/v/out projections and the FFN are per modality (``vision`` / ``text``
  experts), split at the vision/text boundary; Sub-LN inside attention and FFN; final norm.

:func:`load_evf_beit3` maps an EVF-SAM(2) checkpoint (``mm_extractor.beit3.*``, torchscale names)
or a plain BEiT-3 checkpoint onto these modules; a key that maps nowhere or a module weight left
unset is an error, so a partial load never passes silently.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from avsbench_kit.errors import ConfigError

#: the published sizes (BEiT-3 paper; EVF-SAM's ``mm_extractor_scale``)
SIZES = {
    "base": dict(layers=12, hidden=768, heads=12, ffn_dim=3072),
    "large": dict(layers=24, hidden=1024, heads=16, ffn_dim=4096),
}
#: EVF checkpoint keys deliberately not loaded: the masked-image-modelling token of BEiT-3
#: pre-training, never used when encoding a whole frame
UNUSED_KEYS = ("vision_embed.mask_token",)
#: prefixes under which a BEiT-3 state dict is found (EVF full model, unilm wrapper, bare)
PREFIXES = ("mm_extractor.beit3.", "beit3.", "")
#: the other two parts of an EVF-SAM / EVF-SAM2 checkpoint: the projector to SAM's prompt width
#: (Linear-ReLU-Linear in a one-element ModuleList) and the whole SAM / SAM2 model
EVF_PROJECTOR = "text_hidden_fcs.0."
EVF_SAM = "visual_model."


@dataclass(frozen=True)
class BEiT3Config:
    layers: int = 24
    hidden: int = 1024
    heads: int = 16
    ffn_dim: int = 4096
    img_size: int = 224
    patch_size: int = 16
    vocab_size: int = 64010
    text_positions: int = 1024
    eps: float = 1e-5

    @property
    def num_patches(self) -> int:
        return (self.img_size // self.patch_size) ** 2


def beit3_config(section: dict[str, Any]) -> BEiT3Config:
    """``text_encoder.beit3`` -> :class:`BEiT3Config`: ``size`` picks a published size, each of
    ``layers/hidden/heads/ffn_dim/img_size`` (when not null) overrides it."""
    size = section.get("size", "large")
    if size not in SIZES:
        from avsbench_kit.registry import did_you_mean

        raise ConfigError(f"text_encoder.beit3.size={size!r} is not one of {', '.join(SIZES)}",
                          hint=did_you_mean(str(size), list(SIZES)))
    values: dict[str, int] = dict(SIZES[size])
    for key in ("layers", "hidden", "heads", "ffn_dim", "img_size"):
        v = section.get(key)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ConfigError(f"text_encoder.beit3.{key}={v!r} must be a positive integer or null",
                              hint=f"null keeps the {size} size")
        values[key] = v
    cfg = replace(BEiT3Config(), **values)
    if cfg.hidden % cfg.heads:
        raise ConfigError(f"text_encoder.beit3.hidden={cfg.hidden} is not divisible by heads={cfg.heads}",
                          hint="pick heads dividing hidden (large: 1024/16, base: 768/12)")
    if cfg.img_size % cfg.patch_size:
        raise ConfigError(f"text_encoder.beit3.img_size={cfg.img_size} is not a multiple of {cfg.patch_size}",
                          hint="EVF uses 224")
    return cfg


class Multiway(nn.Module):
    """One module per modality; tokens before ``split`` go to ``vision``, the rest to ``text``."""

    def __init__(self, make) -> None:
        super().__init__()
        self.vision, self.text = make(), make()

    def forward(self, x: torch.Tensor, split: int) -> torch.Tensor:
        if split >= x.shape[1]:
            return self.vision(x)
        if split <= 0:
            return self.text(x)
        return torch.cat([self.vision(x[:, :split]), self.text(x[:, split:])], dim=1)


class SubLNFeedForward(nn.Module):
    """fc_in -> GELU -> LayerNorm (Sub-LN) -> fc_out."""

    def __init__(self, hidden: int, ffn_dim: int, eps: float) -> None:
        super().__init__()
        self.fc_in, self.sub_norm = nn.Linear(hidden, ffn_dim), nn.LayerNorm(ffn_dim, eps=eps)
        self.fc_out = nn.Linear(ffn_dim, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_out(self.sub_norm(F.gelu(self.fc_in(x))))


class MultiwayBlock(nn.Module):
    """Pre-norm block: joint self-attention (per-modality projections), per-modality FFN."""

    def __init__(self, cfg: BEiT3Config) -> None:
        super().__init__()
        d, self.heads = cfg.hidden, cfg.heads

        def norm(width: int = d) -> Multiway:
            return Multiway(lambda: nn.LayerNorm(width, eps=cfg.eps))

        def linear() -> Multiway:
            return Multiway(lambda: nn.Linear(d, d))

        self.attn_norm, self.q, self.k, self.v = norm(), linear(), linear(), linear()
        self.attn_sub_norm, self.out = norm(), linear()
        self.ffn_norm = norm()
        self.ffn = Multiway(lambda: SubLNFeedForward(d, cfg.ffn_dim, cfg.eps))

    def forward(self, x: torch.Tensor, split: int, pad: torch.Tensor | None) -> torch.Tensor:
        b, n, d = x.shape
        h = self.attn_norm(x, split)
        q, k, v = (proj(h, split).view(b, n, self.heads, d // self.heads).transpose(1, 2)
                   for proj in (self.q, self.k, self.v))
        mask = None if pad is None else ~pad[:, None, None, :]  # True = attend
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2).reshape(b, n, d)
        x = x + self.out(self.attn_sub_norm(a, split), split)
        return x + self.ffn(self.ffn_norm(x, split), split)


class BEiT3(nn.Module):
    """The multiway encoder; :meth:`forward` returns all token states ``[N, n_vision+n_text, D]``."""

    def __init__(self, cfg: BEiT3Config) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.hidden
        self.patch_embed = nn.Conv2d(3, d, cfg.patch_size, cfg.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.text_embed = nn.Embedding(cfg.vocab_size, d)
        self.pos_vision = nn.Embedding(cfg.num_patches + 1 + 2, d)  # [CLS] + patches, from index 2
        self.pos_text = nn.Embedding(cfg.text_positions, d)
        self.blocks = nn.ModuleList(MultiwayBlock(cfg) for _ in range(cfg.layers))
        self.out_norm = Multiway(lambda: nn.LayerNorm(d, eps=cfg.eps))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Random init (tests, or before a checkpoint overwrites everything)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        for p in (self.cls_token, self.text_embed.weight, self.pos_vision.weight, self.pos_text.weight):
            nn.init.trunc_normal_(p, std=0.02)
        # Sub-LN's scaling of the residual-branch weights (keeps a deep random stack stable)
        gain = math.sqrt(math.log(2 * self.cfg.layers))
        for blk in self.blocks:
            for name, p in blk.named_parameters():
                if name.endswith("weight") and re.match(r"(v|out|ffn)\.", name) and "norm" not in name:
                    p.data.mul_(gain)

    def embed_image(self, images: torch.Tensor) -> torch.Tensor:
        """Frames ``[N,3,H,W]`` in [0,1] -> vision tokens ``[N, 1+patches, D]`` with positions."""
        size = self.cfg.img_size
        x = F.interpolate(images.float(), size=(size, size), mode="bicubic", align_corners=False)
        x = (x.clamp(0, 1) - 0.5) / 0.5
        x = self.patch_embed(x.to(self.patch_embed.weight.dtype)).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return x + self.pos_vision.weight[2: 2 + x.shape[1]]

    def embed_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """Text token *embeddings* ``[N,L,D]`` (ids go through ``text_embed`` first) + positions."""
        if tokens.shape[1] + 2 > self.pos_text.num_embeddings:
            raise ValueError(f"at most {self.pos_text.num_embeddings - 2} text tokens")
        return tokens + self.pos_text.weight[2: 2 + tokens.shape[1]]

    def forward(self, images: torch.Tensor | None, text: torch.Tensor | None,
                text_padding: torch.Tensor | None = None) -> torch.Tensor:
        """``images`` [N,3,H,W] in [0,1]; ``text`` ids [N,L] or embeddings [N,L,D]; padding [N,L]."""
        parts, pad = [], None
        if images is not None:
            parts.append(self.embed_image(images))
        split = parts[0].shape[1] if parts else 0
        if text is not None:
            emb = self.text_embed(text) if text.dtype in (torch.long, torch.int) else text
            parts.append(self.embed_text(emb.to(self.cls_token.dtype)))
            if text_padding is not None:
                pad = F.pad(text_padding.bool(), (split, 0), value=False)
        if not parts:
            raise ValueError("BEiT-3 needs images, text or both")
        x = torch.cat(parts, dim=1)
        for blk in self.blocks:
            x = blk(x, split, pad)
        return self.out_norm(x, split)


# ---- checkpoint key mapping -----------------------------------------------------------------
_WAY = {"A": "vision", "B": "text"}
_RULES: tuple[tuple[str, str], ...] = (
    (r"vision_embed\.proj\.(weight|bias)", r"patch_embed.\1"),
    (r"vision_embed\.cls_token", "cls_token"),
    (r"text_embed\.weight", "text_embed.weight"),
    (r"encoder\.embed_positions\.A\.weight", "pos_vision.weight"),
    (r"encoder\.embed_positions\.B\.weight", "pos_text.weight"),
    (r"encoder\.layers\.(\d+)\.self_attn\.(q|k|v)_proj\.([AB])\.(weight|bias)", r"blocks.\1.\2.{\3}.\4"),
    (r"encoder\.layers\.(\d+)\.self_attn\.out_proj\.([AB])\.(weight|bias)", r"blocks.\1.out.{\2}.\3"),
    (r"encoder\.layers\.(\d+)\.self_attn\.inner_attn_ln\.([AB])\.(weight|bias)", r"blocks.\1.attn_sub_norm.{\2}.\3"),
    (r"encoder\.layers\.(\d+)\.self_attn_layer_norm\.([AB])\.(weight|bias)", r"blocks.\1.attn_norm.{\2}.\3"),
    (r"encoder\.layers\.(\d+)\.final_layer_norm\.([AB])\.(weight|bias)", r"blocks.\1.ffn_norm.{\2}.\3"),
    (r"encoder\.layers\.(\d+)\.ffn\.([AB])\.fc1\.(weight|bias)", r"blocks.\1.ffn.{\2}.fc_in.\3"),
    (r"encoder\.layers\.(\d+)\.ffn\.([AB])\.fc2\.(weight|bias)", r"blocks.\1.ffn.{\2}.fc_out.\3"),
    (r"encoder\.layers\.(\d+)\.ffn\.([AB])\.ffn_layernorm\.(weight|bias)", r"blocks.\1.ffn.{\2}.sub_norm.\3"),
    (r"encoder\.layer_norm\.([AB])\.(weight|bias)", r"out_norm.{\1}.\2"),
)


def map_key(key: str) -> str | None:
    """torchscale BEiT-3 key (no prefix) -> this module's key; None when no rule matches."""
    for pattern, target in _RULES:
        m = re.fullmatch(pattern, key)
        if m:
            out = m.expand(target)
            return re.sub(r"\{([AB])\}", lambda w: _WAY[w.group(1)], out)
    return None


def beit3_state(raw: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str]:
    """The BEiT-3 part of a checkpoint, keys mapped; also returns the prefix it was found under.

    Raises ConfigError when a key under the prefix maps nowhere (an unknown layout)."""
    prefix = max(PREFIXES, key=lambda p: sum(k.startswith(p + "encoder.layers.") for k in raw))
    if not any(k.startswith(prefix + "encoder.layers.") for k in raw):
        raise ConfigError("no BEiT-3 weights (…encoder.layers.*) in the checkpoint",
                          hint="give an EVF-SAM / EVF-SAM2 checkpoint (mm_extractor.beit3.*) or a BEiT-3 one")
    out, unknown = {}, []
    for key, value in raw.items():
        if not key.startswith(prefix):
            continue
        inner = key[len(prefix):]
        if prefix == "" and not re.match(r"(vision_embed|text_embed|encoder)\.", inner):
            continue  # a bare checkpoint may carry task heads next to the encoder
        if inner in UNUSED_KEYS:
            continue
        mine = map_key(inner)
        if mine is None:
            unknown.append(key)
        else:
            out[mine] = value
    if unknown:
        raise ConfigError(f"{len(unknown)} BEiT-3 checkpoint keys map to nothing, e.g. {unknown[:3]}",
                          hint="the checkpoint is not torchscale's BEiT-3 layout (relative positions, "
                               "MoE and deepnorm variants are not supported)")
    return out, prefix


def load_state_into(model: BEiT3, state: dict[str, torch.Tensor], source: str) -> None:
    """Strict load with one-line errors naming missing keys or the first shape mismatch."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    if missing:
        raise ConfigError(f"{source}: {len(missing)} BEiT-3 weights missing, e.g. {missing[:3]}",
                          hint="the checkpoint has fewer layers than text_encoder.beit3 asks for")
    for k, v in state.items():
        if k not in own:
            raise ConfigError(f"{source}: BEiT-3 weight {k} has no place in a {model.cfg.layers}-layer model",
                              hint="set text_encoder.beit3.size/layers to the checkpoint's size")
        if tuple(v.shape) != tuple(own[k].shape):
            raise ConfigError(f"{source}: {k} is {tuple(v.shape)} in the checkpoint, {tuple(own[k].shape)} here",
                              hint="set text_encoder.beit3.size (large|base) or layers/hidden/heads/ffn_dim/"
                                   "img_size to the checkpoint's")
    model.load_state_dict(state, strict=True)


# ---- checkpoint files ---------------------------------------------------------------------
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def resolve_checkpoint(spec: str) -> Path:
    """A local file, a local directory, or a hub id already in the local HF cache (never downloads)."""
    path = Path(os.path.expanduser(spec))
    if path.exists():
        return path
    if re.fullmatch(r"[\w.-]+/[\w.-]+", spec):
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(spec, local_files_only=True))
        except Exception:  # noqa: BLE001 - any cache miss is the same answer for the user
            pass
    raise ConfigError(f"text_encoder.beit3.checkpoint={spec!r} is neither a local path nor a hub id in "
                      "the local Hugging Face cache",
                      hint="download the EVF-SAM2 weights (e.g. YxZhang/evf-sam2-multitask) on a machine "
                           "with internet and pass the directory")


def weight_files(path: Path) -> list[Path]:
    """The tensor files of a checkpoint file or HF directory (sharded via its index)."""
    if path.is_file():
        return [path]
    for name in _WEIGHT_FILES:
        index = path / f"{name}.index.json"
        if index.exists():
            import json

            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            return [path / s for s in shards]
        if (path / name).exists():
            return [path / name]
    raise ConfigError(f"{path}: no model.safetensors / pytorch_model.bin (or sharded index) in the directory",
                      hint="pass the EVF-SAM(2) checkpoint directory or one weight file")


def read_tensors(files: list[Path]) -> dict[str, torch.Tensor]:
    raw: dict[str, torch.Tensor] = {}
    for f in files:
        if f.suffix == ".safetensors":
            from safetensors.torch import load_file

            raw.update(load_file(str(f)))
        else:
            obj = torch.load(f, map_location="cpu", weights_only=True)
            raw.update(obj.get("model", obj) if isinstance(obj, dict) else obj)
    return raw


def evf_part(raw: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The keys of ``raw`` under ``prefix`` (``EVF_PROJECTOR`` or ``EVF_SAM``), prefix removed."""
    return {k[len(prefix):]: v for k, v in raw.items() if k.startswith(prefix)}


def load_evf_beit3(model: BEiT3, spec: str) -> tuple[dict[str, torch.Tensor], list[Path]]:
    """Load the BEiT-3 weights of ``spec`` into ``model``; returns the whole raw state (the caller
    may take EVF's ``text_hidden_fcs`` from it) and the files read."""
    files = weight_files(resolve_checkpoint(spec))
    raw = read_tensors(files)
    state, _ = beit3_state(raw)
    load_state_into(model, state, str(spec))
    return raw, files
