"""One SAM (v1, the ``segment-anything`` package) for every SAM-ViT baseline and the ``sam_image`` cache.

The SAM-based AVS papers (SAMA-AVS, ST-BAVA, AV2T-SAM's SAM1 variant) reach inside SAM: an additive
audio prompt before every ViT block (SAMA-style adapters) and a mask-decoder call with their own
dense and sparse prompts on a *batch* of frames. The package exposes neither (its decoder repeats the
image embedding once per prompt), so this module rebuilds the two forward paths from the package's
own sub-modules and never edits the package.

Weights: a local SAM checkpoint (``sam_vit_h_4b8939.pth`` ...) for ``vit_b|vit_l|vit_h``, or random
weights that are a function of (variant, size, image size, ``init_seed``) only — the ``sam_image``
encoder builds with the same rule, so a random cache and a random model match. ``size="small"`` is a
4-block, 96-wide ViT for CPU tests and demos (random only: no checkpoint has that shape).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from avsbench_kit.errors import ConfigError, DataError
from avsbench_kit.models.preprocess import IMAGENET_MEAN, IMAGENET_STD, register_pixel_stats, resize_normalise

#: the ViT variants of the SAM release (embed dim, depth, heads, global-attention blocks)
SAM1_VARIANTS: dict[str, dict[str, Any]] = {
    "vit_b": {"embed_dim": 768, "depth": 12, "num_heads": 12, "global_attn": (2, 5, 8, 11), "window": 14},
    "vit_l": {"embed_dim": 1024, "depth": 24, "num_heads": 16, "global_attn": (5, 11, 17, 23), "window": 14},
    "vit_h": {"embed_dim": 1280, "depth": 32, "num_heads": 16, "global_attn": (7, 15, 23, 31), "window": 14},
}
#: ``size="small"``: the same layout shrunk for CPU (random weights only)
SMALL_VIT = {"embed_dim": 96, "depth": 4, "num_heads": 4, "global_attn": (1, 3), "window": 4}
SIZES = ("full", "small")
NATIVE_SIZE = 1024  # the released checkpoints' input size (absolute position embedding grid 64x64)
PATCH = 16
PROMPT_DIM = 256


def check_image_size(image_size: Any, key: str = "image_size") -> int:
    """SAM's ViT patchifies by 16 and its decoder upsamples by 4: other sizes break inside."""
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size <= 0 \
            or image_size % PATCH:
        raise ConfigError(f"{key}={image_size!r} is not a positive multiple of 16",
                          hint="SAM's ViT uses 16x16 patches: e.g. 128 (CPU) or 1024 (SAM's native size)")
    return image_size


def vit_config(variant: str, size: str) -> dict[str, Any]:
    """The encoder layout of ``variant`` at ``size`` (``small`` shrinks any variant the same way)."""
    if variant not in SAM1_VARIANTS:
        from avsbench_kit.registry import did_you_mean

        raise ConfigError(f"unknown SAM variant {variant!r}", hint=did_you_mean(variant, list(SAM1_VARIANTS)))
    if size not in SIZES:
        raise ConfigError(f"SAM size={size!r} is not one of {', '.join(SIZES)}",
                          hint="full = the released architecture; small = a 4-block ViT for CPU tests")
    return dict(SMALL_VIT if size == "small" else SAM1_VARIANTS[variant])


def resolve_checkpoint(spec: str | Path | None) -> Path | None:
    """A local SAM ``.pth`` or None; never downloads (runs stay offline and reproducible)."""
    if spec is None or str(spec) == "":
        return None
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ConfigError(f"SAM checkpoint {spec} does not exist",
                          hint="pass a local sam_vit_{b,l,h}_*.pth (from the segment-anything release) "
                               "or leave the checkpoint empty for random weights")
    return path


def build_sam(variant: str, size: str, image_size: int) -> nn.Module:
    """A ``segment_anything.modeling.Sam`` with the package's own modules (random weights)."""
    from segment_anything.modeling import (ImageEncoderViT, MaskDecoder, PromptEncoder, Sam,
                                           TwoWayTransformer)

    vit = vit_config(variant, size)
    grid = image_size // PATCH
    return Sam(
        image_encoder=ImageEncoderViT(
            img_size=image_size, patch_size=PATCH, embed_dim=vit["embed_dim"], depth=vit["depth"],
            num_heads=vit["num_heads"], mlp_ratio=4, out_chans=PROMPT_DIM, qkv_bias=True,
            norm_layer=partial(nn.LayerNorm, eps=1e-6), use_rel_pos=True,
            global_attn_indexes=tuple(vit["global_attn"]), window_size=vit["window"]),
        prompt_encoder=PromptEncoder(embed_dim=PROMPT_DIM, image_embedding_size=(grid, grid),
                                     input_image_size=(image_size, image_size), mask_in_chans=16),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3, transformer_dim=PROMPT_DIM, iou_head_depth=3, iou_head_hidden_dim=256,
            transformer=TwoWayTransformer(depth=2, embedding_dim=PROMPT_DIM, mlp_dim=2048, num_heads=8)),
        pixel_mean=[255 * m for m in IMAGENET_MEAN], pixel_std=[255 * s for s in IMAGENET_STD])


def read_state(path: Path) -> Mapping[str, torch.Tensor]:
    """The state dict of a SAM ``.pth``; a corrupt file is a one-line error."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(f"cannot read SAM checkpoint {path}: {type(exc).__name__}",
                        hint="the file is truncated or not a SAM .pth: download it again") from None
    if isinstance(state, Mapping) and "model" in state and isinstance(state["model"], Mapping):
        state = state["model"]
    if not isinstance(state, Mapping):
        raise DataError(f"SAM checkpoint {path} holds no state dict", hint="download it again")
    return state


def built_size(state: Mapping[str, torch.Tensor]) -> int:
    """The input size a SAM state dict was made at (its absolute position grid x 16); the released
    checkpoints say 1024. Anything unreadable answers 1024 and the strict load then says what is wrong."""
    pos = state.get("image_encoder.pos_embed")
    if isinstance(pos, torch.Tensor) and pos.dim() == 4 and pos.shape[1] == pos.shape[2]:
        return int(pos.shape[1]) * PATCH
    return NATIVE_SIZE


def load_state(model: nn.Module, state: Mapping[str, torch.Tensor], source: str, variant: str) -> None:
    """Strict load; another variant's weights (or a partial state) is a one-line error."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[1 if "\n" in str(exc) else 0].strip()[:160]
        raise ConfigError(f"SAM checkpoint {source} does not fit variant={variant}: {first}",
                          hint="pass the variant the checkpoint was made for (sam_vit_h_* -> vit_h, "
                               "sam_vit_l_* -> vit_l, sam_vit_b_* -> vit_b)") from None


class SAM1Wrapper(nn.Module):
    """SAM (v1) built from a variant name (+ optional local checkpoint) at any multiple-of-16 size.

    All SAM parameters start frozen; a baseline unfreezes what its paper trains. With a checkpoint
    the model is built at SAM's native 1024 px and the absolute position embedding is resized to
    the input grid (relative position tables are resized by the package itself).

    ``state`` is the alternative to a ``.pth``: a SAM state dict already read, e.g. the
    ``visual_model.*`` part of an EVF-SAM checkpoint (``state_source`` names it in records and
    errors); the model is built at the size that state was made at.
    """

    def __init__(self, variant: str = "vit_h", checkpoint: str | Path | None = None,
                 image_size: int = 1024, *, size: str = "full", init_seed: int = 0,
                 require_checkpoint: bool = False, state: Mapping[str, torch.Tensor] | None = None,
                 state_source: str = "state dict") -> None:
        super().__init__()
        self.variant, self.size = variant, size
        self.image_size = check_image_size(image_size)
        vit_config(variant, size)  # validate early
        path = resolve_checkpoint(checkpoint)
        if path is not None and state is not None:
            raise ConfigError(f"SAM weights given twice: checkpoint {path} and {state_source}",
                              hint="give one source of SAM weights")
        if path is None and state is None and require_checkpoint:
            raise ConfigError("this config needs pretrained SAM weights but the SAM checkpoint is empty",
                              hint=f"pass the local sam_{variant}_*.pth of the segment-anything release")
        if path is not None and size != "full":
            raise ConfigError(f"a SAM checkpoint needs size=full (got size={size})",
                              hint="size=small is a random CPU-test architecture; drop the checkpoint or "
                                   "use size=full")
        self.checkpoint = str(path) if path else None
        #: where the weights came from (a file, ``state_source``, or None = random)
        self.weights_source = self.checkpoint if path else (state_source if state is not None else None)
        if path is not None:
            state = read_state(path)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)  # random weights are a function of init_seed only
            model = build_sam(variant, size, built_size(state) if state is not None else image_size)
        if state is not None:
            load_state(model, state, str(self.weights_source), variant)
        for p in model.parameters():
            p.requires_grad_(False)
        self.model = model.eval()
        self.block_dims: list[int] = [int(blk.norm1.normalized_shape[0]) for blk in model.image_encoder.blocks]
        self.embed_size = image_size // PATCH
        register_pixel_stats(self)

    # ---- parts -------------------------------------------------------------------------------
    @property
    def image_encoder(self) -> nn.Module:
        return self.model.image_encoder

    @property
    def mask_decoder(self) -> nn.Module:
        return self.model.mask_decoder

    @property
    def prompt_encoder(self) -> nn.Module:
        return self.model.prompt_encoder

    hidden_dim = PROMPT_DIM

    def describe(self) -> dict:
        """What built these weights (for run records)."""
        return {"variant": self.variant, "size": self.size, "checkpoint": self.checkpoint,
                "weights": self.weights_source, "image_size": self.image_size}

    # ---- image encoder -----------------------------------------------------------------------
    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """[N,3,H,W] RGB in [0,1] -> SAM input: plain (antialiased bilinear) resize to image_size²
        (as ST-BAVA/SAMA-AVS do, not SAM's longest-side resize + pad) and ImageNet mean/std."""
        return resize_normalise(frames, self.image_size, self.pixel_mean, self.pixel_std)

    def _pos_embed(self, grid: tuple[int, int]) -> torch.Tensor | None:
        pos = self.image_encoder.pos_embed
        if pos is None or tuple(pos.shape[1:3]) == grid:
            return pos
        resized = F.interpolate(pos.permute(0, 3, 1, 2), size=grid, mode="bicubic", align_corners=False)
        return resized.permute(0, 2, 3, 1)

    def features(self, images: torch.Tensor,
                 block_prompts: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """Preprocessed images [N,3,S,S] -> image embeddings [N,256,S/16,S/16]; with
        ``block_prompts`` (one [N, C_j] per ViT block) ``x = block_j(x + prompt_j)`` (SAMA-AVS)."""
        enc = self.image_encoder
        if block_prompts is not None and len(block_prompts) != len(enc.blocks):
            raise ValueError(f"got {len(block_prompts)} block prompts for {len(enc.blocks)} ViT blocks")
        x = enc.patch_embed(images)
        pos = self._pos_embed(tuple(x.shape[1:3]))
        if pos is not None:
            x = x + pos
        for j, blk in enumerate(enc.blocks):
            if block_prompts is not None:
                p = block_prompts[j]
                if p.shape != (x.shape[0], x.shape[-1]):
                    raise ValueError(f"block {j} prompt has shape {tuple(p.shape)}, expected "
                                     f"({x.shape[0]}, {x.shape[-1]})")
                x = x + p.to(x.dtype).view(x.shape[0], 1, 1, -1)
            x = blk(x)
        return enc.neck(x.permute(0, 3, 1, 2))

    # ---- mask decoder ------------------------------------------------------------------------
    def dense_pe(self, grid: int | None = None) -> torch.Tensor:
        """SAM's prompt-encoder positional encoding of the image grid: [1,256,g,g]."""
        g = grid or self.embed_size
        return self.prompt_encoder.pe_layer((g, g)).unsqueeze(0)

    def decode(self, image_embed: torch.Tensor, sparse: torch.Tensor | None = None,
               dense: torch.Tensor | None = None, *, image_pe: torch.Tensor | None = None,
               multimask: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """One batched mask-decoder call: N image embeddings, N prompt sets.

        ``sparse`` [N,K,256] prompt tokens (None = none); ``dense`` [N,256,h,w] is added to the
        image embedding (None = SAM's ``no_mask_embed``); ``image_pe`` [1,256,h,w] (None = SAM's own).
        Returns low-res mask logits [N,M,4h,4w] (M = 3 with ``multimask``, else 1) and IoUs [N,M].
        """
        dec = self.mask_decoder
        n, c, h, w = image_embed.shape
        if sparse is None:
            sparse = image_embed.new_zeros(n, 0, c)
        if sparse.dim() != 3 or sparse.shape[0] != n or sparse.shape[2] != c:
            raise ValueError(f"sparse prompts must be [{n}, K, {c}], got {tuple(sparse.shape)}")
        if dense is None:
            dense = self.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(n, -1, h, w)
        if dense.shape != image_embed.shape:
            raise ValueError(f"dense prompt must be {tuple(image_embed.shape)}, got {tuple(dense.shape)}")
        pe = self.dense_pe(h) if image_pe is None else image_pe
        out_tokens = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight], dim=0)
        tokens = torch.cat([out_tokens.unsqueeze(0).expand(n, -1, -1), sparse.to(out_tokens.dtype)], dim=1)
        src = image_embed + dense
        hs, src = dec.transformer(src, pe.expand(n, -1, -1, -1), tokens)
        iou_out, mask_out = hs[:, 0], hs[:, 1:1 + dec.num_mask_tokens]
        up = dec.output_upscaling(src.transpose(1, 2).reshape(n, c, h, w))
        hyper = torch.stack([mlp(mask_out[:, i]) for i, mlp in enumerate(dec.output_hypernetworks_mlps)], 1)
        b, cu, hu, wu = up.shape
        masks = (hyper @ up.reshape(b, cu, hu * wu)).reshape(b, -1, hu, wu)
        ious = dec.iou_prediction_head(iou_out)
        keep = slice(1, None) if multimask else slice(0, 1)
        return masks[:, keep], ious[:, keep]
