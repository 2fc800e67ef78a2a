"""One SAM2 for every SAM2-based baseline, with the hook points the AVS papers need.

The four SAM2 papers (AV2T-SAM, AuralSAM2, SAM2-LOVE, ST-BAVA ports) all reach *inside* SAM2:
raw FPN levels (AuralSAM2), extra sparse prompt tokens in the mask decoder (EVF-SAM style:
AV2T-SAM, SAM2-LOVE), additive per-block prompts in the Hiera encoder (SAMA-style adapters) and
memory propagation over frames. The PyPI ``sam2`` package exposes none of these as arguments, so
this module rebuilds the few forward paths it needs from SAM2's own sub-modules — it never edits
the package.

Image features may come from a ``sam2_image`` cache (float16 on disk) or be computed on the fly; with
``round_features="float16"`` the on-the-fly path rounds exactly like the cache, so a model trained
on cached features predicts identically from frames.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from avsbench_kit.errors import ConfigError, DataError
from avsbench_kit.registry import did_you_mean

#: short config name -> sam2 package config path
SAM2_CONFIGS: dict[str, str] = {
    **{f"sam2.1_hiera_{s}": f"configs/sam2.1/sam2.1_hiera_{s}.yaml" for s in ("t", "s", "b+", "l")},
    **{f"sam2_hiera_{s}": f"configs/sam2/sam2_hiera_{s}.yaml" for s in ("t", "s", "b+", "l")},
}
#: SAM2's image normalisation (ImageNet statistics, as in SAM2's own transforms)
PIXEL_MEAN = (0.485, 0.456, 0.406)
PIXEL_STD = (0.229, 0.224, 0.225)
#: canonical cache level names: raw FPN levels (256 ch, strides 4/8/16) and forward_image's
#: conv_s0/conv_s1-projected high-res levels (32 / 64 ch)
RAW_LEVELS = ("fpn0", "fpn1", "fpn2")
PROJECTED_LEVELS = ("conv_s0", "conv_s1")
NO_OBJ_SCORE = -1024.0  # SAM2's placeholder logit for "no object"
_HUB_ID = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.+-]+$")


def check_image_size(image_size: int) -> int:
    """SAM2's Hiera trunk downsamples by 32, so other sizes break deep inside the encoder."""
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size <= 0 \
            or image_size % 32:
        raise ConfigError(
            f"image_size={image_size!r} is not a positive multiple of 32",
            hint="SAM2's Hiera encoder downsamples by 32: use e.g. image_size=128, 256, 512 or 1024",
        )
    return image_size


def sam2_config_path(name: str) -> str:
    """``sam2.1_hiera_t`` -> ``configs/sam2.1/sam2.1_hiera_t.yaml`` (also accepts the full path)."""
    if name in SAM2_CONFIGS:
        return SAM2_CONFIGS[name]
    if name in SAM2_CONFIGS.values():
        return name
    raise ConfigError(f"unknown SAM2 config {name!r}", hint=did_you_mean(name, list(SAM2_CONFIGS)))


def resolve_checkpoint(spec: str | Path | None) -> Path | None:
    """A local ``.pt`` path, or a hub id already present in the local Hugging Face cache.

    Never downloads: the user fetches weights once, and runs stay offline and reproducible.
    """
    if spec is None or str(spec) == "":
        return None
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    text = str(spec)
    if _HUB_ID.match(text) and not path.exists():
        from sam2.build_sam import HF_MODEL_ID_TO_FILENAMES

        filename = HF_MODEL_ID_TO_FILENAMES.get(text, (None, None))[1]
        if filename is None:
            raise ConfigError(
                f"unknown SAM2 hub id {text!r}",
                hint=did_you_mean(text, list(HF_MODEL_ID_TO_FILENAMES)) + " or pass a local .pt path",
            )
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(text, filename)
        except Exception:  # no hub client, or a broken cache: treat as not cached
            cached = None
        if isinstance(cached, str) and Path(cached).is_file():
            return Path(cached)
        raise ConfigError(
            f"SAM2 checkpoint {text!r} is not in the local Hugging Face cache (no download here)",
            hint=f"download it once: `huggingface-cli download {text} {filename}`, "
                 f"then pass sam2.checkpoint={text} or the local path of {filename}",
        )
    raise ConfigError(
        f"SAM2 checkpoint {text} does not exist",
        hint="pass a local .pt file (e.g. sam2.1_hiera_tiny.pt) or leave sam2.checkpoint empty for "
             "random weights",
    )


def _load_state(model: nn.Module, path: Path, config: str) -> None:
    """Load a SAM2 ``.pt``; a corrupt file or a config mismatch becomes a one-line user error."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(
            f"cannot read SAM2 checkpoint {path}: {type(exc).__name__}",
            hint="the file is truncated or not a SAM2 .pt: download it again",
        ) from None
    state = blob.get("model", blob) if isinstance(blob, dict) else blob
    if not isinstance(state, Mapping):
        raise DataError(f"SAM2 checkpoint {path} holds no state dict", hint="download it again")
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        first = str(exc).strip().splitlines()[-1].strip()[:160]
        raise ConfigError(
            f"SAM2 checkpoint {path} does not fit sam2.config={config}: {first}",
            hint="pass the config the checkpoint was made for (e.g. sam2.1_hiera_large.pt -> "
                 "sam2.config=sam2.1_hiera_l)",
        ) from None
    if missing or unexpected:
        raise ConfigError(
            f"SAM2 checkpoint {path} does not fit sam2.config={config}: {len(missing)} missing "
            f"keys (e.g. {list(missing)[:2]}), {len(unexpected)} unexpected (e.g. {list(unexpected)[:2]})",
            hint="pass the config the checkpoint was made for (e.g. sam2_hiera_large.pt -> "
                 "sam2.config=sam2_hiera_l)",
        )


def hiera_block_dims(embed_dim: int, stages: Sequence[int], dim_mul: float = 2.0) -> list[int]:
    """Input width of every Hiera block (a stage's first block still sees the previous width).

    These are the adapter widths of SAMA-style prompts (Hiera-L: 144x3, 288x6, 576x36, 1152x3).
    """
    dims, width = [], embed_dim
    for s, depth in enumerate(stages):
        for i in range(depth):
            dims.append(width if not (s > 0 and i == 0) else int(width / dim_mul))
        width = int(width * dim_mul)
    return dims


@dataclass
class ImageFeatures:
    """SAM2 image features of N frames: FPN levels at strides 4, 8, 16.

    ``projected`` says whether levels 0/1 already went through the mask decoder's conv_s0/conv_s1
    (``forward_image``); raw levels (256 channels each) let a baseline train those convs.
    """

    levels: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    projected: bool = False

    def __len__(self) -> int:
        return int(self.levels[2].shape[0])

    def to_cache(self) -> dict[str, torch.Tensor]:
        """The float16 dict a ``sam2_image`` cache stores for these frames."""
        names = (PROJECTED_LEVELS + RAW_LEVELS[2:]) if self.projected else RAW_LEVELS
        return {n: t.detach().to(torch.float16) for n, t in zip(names, self.levels)}


def classify_levels(levels: Mapping[str, torch.Tensor], image_size: int,
                    hidden: int = 256) -> ImageFeatures:
    """Map a cache's ``{level_name: [N,C,h,w]}`` onto FPN slots by shape, not by name.

    The cache's level names belong to the feature extractor; shapes are unambiguous (raw levels
    have 256 channels, conv_s0/conv_s1 outputs 32/64). Keys containing "pos" (positional encodings,
    recomputed here) are ignored. Raw levels win when both kinds are present.
    """
    s = image_size
    slots: dict[str, tuple[str, torch.Tensor]] = {}
    expected = {(hidden, s // 16): "top", (hidden, s // 8): "raw1", (hidden, s // 4): "raw0",
                (hidden // 4, s // 8): "proj1", (hidden // 8, s // 4): "proj0"}
    for key, value in levels.items():
        if "pos" in key.lower():
            continue
        if value.dim() != 4:
            raise ConfigError(f"sam2_image level {key!r} has shape {tuple(value.shape)}, expected "
                              "[N, C, h, w]", hint="flatten the batch and time axes first")
        c, h, w = value.shape[-3:]
        slot = expected.get((int(c), int(h)))
        if slot is None or h != w:
            raise ConfigError(
                f"sam2_image level {key!r} has shape {tuple(value.shape[-3:])}, which is no SAM2 "
                f"level at image_size={s}",
                hint=f"the cache was extracted at another image size or config: re-extract with "
                     f"image_size={s}, or set image_size to the cache's",
            )
        if slot in slots:
            raise ConfigError(f"sam2_image levels {slots[slot][0]!r} and {key!r} have the same shape",
                              hint="pass one tensor per FPN level")
        slots[slot] = (key, value)
    if "top" not in slots:
        raise ConfigError(f"sam2_image features have no stride-16 level of shape [{hidden}, "
                          f"{s // 16}, {s // 16}] (got {sorted(levels)})",
                          hint=f"re-extract sam2_image with image_size={s}")
    top = slots["top"][1]
    if "raw0" in slots and "raw1" in slots:
        return ImageFeatures((slots["raw0"][1], slots["raw1"][1], top), projected=False)
    if "proj0" in slots and "proj1" in slots:
        return ImageFeatures((slots["proj0"][1], slots["proj1"][1], top), projected=True)
    raise ConfigError(f"sam2_image features lack the high-resolution levels (got {sorted(levels)})",
                      hint="extract raw FPN levels (or forward_image outputs) at strides 4 and 8 too")


@dataclass
class DecoderOutput:
    """What one mask-decoder call gives: all candidates and the chosen mask."""

    masks: torch.Tensor  # [N, H, W] chosen mask logits at the requested size
    low_res_masks: torch.Tensor  # [N, 1, 4h, 4w] chosen mask logits
    low_res_multimasks: torch.Tensor  # [N, M, 4h, 4w]
    ious: torch.Tensor  # [N, M] predicted IoUs
    object_score_logits: torch.Tensor  # [N, 1]
    best_token: torch.Tensor  # [N, 256] mask-output token of the chosen mask (object pointer source)


class SAM2Wrapper(nn.Module):
    """SAM2 built from a config name (+ optional local checkpoint) at any multiple-of-32 size.

    All SAM2 parameters start frozen; a baseline unfreezes what its paper trains.
    """

    def __init__(self, config: str = "sam2.1_hiera_t", checkpoint: str | Path | None = None,
                 image_size: int = 1024, *, init_seed: int = 0,
                 round_features: str | None = None, require_checkpoint: bool = False) -> None:
        super().__init__()
        from sam2.build_sam import build_sam2

        self.config_name = config
        self.image_size = check_image_size(image_size)
        if round_features not in (None, "float16", "bfloat16"):
            raise ConfigError(f"sam2.round_features={round_features!r} is not one of float16, "
                              "bfloat16, null", hint="float16 matches the sam2_image cache")
        self.round_features = round_features
        path = resolve_checkpoint(checkpoint)
        if path is None and require_checkpoint:
            raise ConfigError(
                f"this config needs pretrained SAM2 weights but sam2.checkpoint is empty",
                hint="pass sam2.checkpoint=/path/to/<weights>.pt (e.g. sam2_hiera_large.pt from "
                     "facebook/sam2-hiera-large), or sam2.require_checkpoint=false for random weights",
            )
        self.checkpoint = str(path) if path else None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)  # random weights are a function of init_seed only
            model = build_sam2(sam2_config_path(config), None, device="cpu", mode="eval",
                               hydra_overrides_extra=[f"++model.image_size={image_size}"],
                               apply_postprocessing=False)
        if path is not None:
            _load_state(model, path, config)
        for p in model.parameters():
            p.requires_grad_(False)
        self.model = model
        self.block_dims: list[int] = [blk.dim for blk in model.image_encoder.trunk.blocks]
        self.embed_size = image_size // 16
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(1, 3, 1, 1), persistent=False)

    # ---- parts -------------------------------------------------------------------------------
    @property
    def image_encoder(self) -> nn.Module:
        return self.model.image_encoder

    @property
    def mask_decoder(self) -> nn.Module:
        return self.model.sam_mask_decoder

    @property
    def prompt_encoder(self) -> nn.Module:
        return self.model.sam_prompt_encoder

    @property
    def hidden_dim(self) -> int:
        return int(self.model.hidden_dim)

    def describe(self) -> dict:
        """What built these weights (for run records)."""
        return {"config": self.config_name, "checkpoint": self.checkpoint,
                "image_size": self.image_size, "round_features": self.round_features}

    # ---- (1) image features ------------------------------------------------------------------
    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """[N,3,H,W] RGB in [0,1] -> SAM2 input: plain (antialiased bilinear) resize to image_size²
        + ImageNet mean/std — the ``sam2_image`` encoder's preprocessing."""
        if frames.shape[-2:] != (self.image_size, self.image_size):  # same as the sam2_image cache
            frames = F.interpolate(frames.float(), size=(self.image_size, self.image_size),
                                   mode="bilinear", align_corners=False, antialias=True)
        return (frames - self.pixel_mean) / self.pixel_std

    def image_encoder_outputs(self, images: torch.Tensor,
                              block_prompts: Sequence[torch.Tensor] | None = None) -> dict:
        """The image encoder's dict (raw 256-ch ``backbone_fpn``, ``vision_pos_enc``), optionally
        with an additive prompt before every Hiera block (hook 3)."""
        if block_prompts is None:
            return self.image_encoder(images)
        enc = self.image_encoder
        features, pos = enc.neck(self._trunk_with_prompts(images, block_prompts))
        if enc.scalp > 0:
            features, pos = features[: -enc.scalp], pos[: -enc.scalp]
        return {"vision_features": features[-1], "vision_pos_enc": pos, "backbone_fpn": features}

    def forward_image(self, images: torch.Tensor,
                      block_prompts: Sequence[torch.Tensor] | None = None) -> dict:
        """``SAM2Base.forward_image``: high-res levels projected by conv_s0/conv_s1."""
        out = self.image_encoder_outputs(images, block_prompts)
        out = {**out, "backbone_fpn": list(out["backbone_fpn"])}
        if self.model.use_high_res_features_in_sam:
            out["backbone_fpn"][0] = self.mask_decoder.conv_s0(out["backbone_fpn"][0])
            out["backbone_fpn"][1] = self.mask_decoder.conv_s1(out["backbone_fpn"][1])
        return out

    def features(self, images: torch.Tensor,
                 block_prompts: Sequence[torch.Tensor] | None = None) -> ImageFeatures:
        """Raw FPN levels of preprocessed images, rounded like the cache when configured."""
        fpn = self.image_encoder_outputs(images, block_prompts)["backbone_fpn"]
        levels = tuple(self._round(t) for t in fpn)
        return ImageFeatures(levels, projected=False)  # type: ignore[arg-type]

    def from_cache(self, levels: Mapping[str, torch.Tensor]) -> ImageFeatures:
        """Cached ``{level_name: [N,C,h,w]}`` -> :class:`ImageFeatures` (float32)."""
        feats = classify_levels(levels, self.image_size, self.hidden_dim)
        return ImageFeatures(tuple(t.float() for t in feats.levels), feats.projected)  # type: ignore[arg-type]

    def _round(self, t: torch.Tensor) -> torch.Tensor:
        if self.round_features is None:
            return t
        return t.to(getattr(torch, self.round_features)).float()

    # ---- (3) adapter prompts -----------------------------------------------------------------
    def _trunk_with_prompts(self, images: torch.Tensor,
                            prompts: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Hiera's forward with ``x = x + prompt_j`` before block j (broadcast over H×W)."""
        trunk = self.image_encoder.trunk
        if len(prompts) != len(trunk.blocks):
            raise ValueError(f"got {len(prompts)} block prompts for {len(trunk.blocks)} Hiera blocks")
        x = trunk.patch_embed(images)
        x = x + trunk._get_pos_embed(x.shape[1:3])
        outputs = []
        last = trunk.stage_ends[-1]
        for j, blk in enumerate(trunk.blocks):
            p = prompts[j]
            if p.shape != (x.shape[0], blk.dim):
                raise ValueError(f"block {j} prompt has shape {tuple(p.shape)}, expected "
                                 f"({x.shape[0]}, {blk.dim})")
            x = blk(x + p.to(x.dtype).view(x.shape[0], 1, 1, -1))
            if j == last or (j in trunk.stage_ends and trunk.return_interm_layers):
                outputs.append(x.permute(0, 3, 1, 2))
        return outputs

    # ---- (2) mask decoder with extra sparse prompts ------------------------------------------
    def decoder_inputs(self, feats: ImageFeatures, add_no_mem_embed: bool = True
                       ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Image embedding (+ ``no_mem_embed``, as SAM2 does on an un-tracked frame) and the two
        high-res maps (through conv_s0/conv_s1 unless the cache already projected them)."""
        top = feats.levels[2]
        if add_no_mem_embed:
            top = top + self.model.no_mem_embed.view(1, -1, 1, 1)
        s0, s1 = feats.levels[0], feats.levels[1]
        if not feats.projected:
            s0, s1 = self.mask_decoder.conv_s0(s0), self.mask_decoder.conv_s1(s1)
        return top, [s0, s1]

    def decode(self, feats: ImageFeatures, extra_sparse: torch.Tensor | None = None, *,
               multimask: bool = True, output_size: int | tuple[int, int] | None = None,
               apply_object_score: bool = False) -> DecoderOutput:
        """Image features + extra prompt tokens -> mask logits (EVF-SAM2 style)."""
        image_embed, high_res = self.decoder_inputs(feats)
        return self.decode_embeddings(image_embed, high_res, extra_sparse, multimask=multimask,
                                      output_size=output_size, apply_object_score=apply_object_score)

    def decode_embeddings(self, image_embed: torch.Tensor, high_res: list[torch.Tensor],
                          extra_sparse: torch.Tensor | None = None, *,
                          points: tuple[torch.Tensor, torch.Tensor] | None = None,
                          multimask: bool = True,
                          output_size: int | tuple[int, int] | None = None,
                          apply_object_score: bool = False) -> DecoderOutput:
        """One mask-decoder call. ``extra_sparse`` [N,K,256] is concatenated after the prompt
        encoder's sparse output (empty for points=None: no padding point, as EVF-SAM2 does); the
        dense prompt is ``no_mask_embed``. With ``multimask`` the mask of highest predicted IoU is
        chosen. ``apply_object_score`` replaces masks of "no object" frames by -1024 like SAM2's
        tracker (off by default: it blocks gradients on those frames)."""
        n = image_embed.shape[0]
        sparse, dense = self.prompt_encoder(points=points, boxes=None, masks=None)
        if points is None:
            sparse = sparse.expand(n, -1, -1)
            dense = dense.expand(n, -1, -1, -1)
        if extra_sparse is not None:
            if extra_sparse.dim() != 3 or extra_sparse.shape[0] != n \
                    or extra_sparse.shape[2] != sparse.shape[2]:
                raise ValueError(f"extra sparse prompts must be [{n}, K, {sparse.shape[2]}], got "
                                 f"{tuple(extra_sparse.shape)}")
            sparse = torch.cat([sparse, extra_sparse.to(sparse.dtype)], dim=1)
        low, ious, tokens, obj = self.mask_decoder(
            image_embeddings=image_embed, image_pe=self.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
            multimask_output=multimask, repeat_image=False, high_res_features=high_res)
        if apply_object_score and self.model.pred_obj_scores:
            low = torch.where(obj[:, :, None, None] > 0, low, torch.full_like(low, NO_OBJ_SCORE))
        low = low.float()
        rows = torch.arange(n, device=low.device)
        if multimask and low.shape[1] > 1:
            best = ious.argmax(dim=-1)
            low_best = low[rows, best].unsqueeze(1)
            token = tokens[rows, best] if tokens.shape[1] > 1 else tokens[:, 0]
        else:
            low_best, token = low[:, :1], tokens[:, 0]
        size = output_size or self.image_size
        size = (size, size) if isinstance(size, int) else tuple(size)
        masks = F.interpolate(low_best, size=size, mode="bilinear", align_corners=False)[:, 0]
        return DecoderOutput(masks, low_best, low, ious, obj, token)

    # ---- (4) memory propagation --------------------------------------------------------------
    def object_pointer(self, out: DecoderOutput) -> torch.Tensor:
        """SAM2's object pointer from the chosen mask token, with its no-object handling."""
        m = self.model
        ptr = m.obj_ptr_proj(out.best_token)
        if m.pred_obj_scores:
            lam = out.object_score_logits.sigmoid() if m.soft_no_obj_ptr \
                else (out.object_score_logits > 0).float()
            if m.fixed_no_obj_ptr:
                ptr = lam * ptr
            ptr = ptr + (1 - lam) * m.no_obj_ptr
        return ptr

    def propagate(self, frames: Sequence[ImageFeatures], prompts: Mapping[int, torch.Tensor], *,
                  cond_frames: Sequence[int] | None = None, multimask: bool = True,
                  output_size: int | tuple[int, int] | None = None, object_score: bool = True,
                  pad_point: bool = True) -> torch.Tensor:
        """Track over T frames with SAM2's memory attention + memory encoder.

        ``frames[t]`` holds the features of frame t for a batch of B clips; ``prompts[t]``
        ([B,K,256]) are extra sparse tokens on frame t (typically the conditioning frame; other
        frames get SAM2's empty padding point). Conditioning frames (default: the prompted ones,
        else frame 0) are decoded first, then the others in index order, each attending to the
        memories of the frames done before it. Returns mask logits [B,T,H,W].
        ``object_score=False`` keeps the masks of "no object" frames (training needs their
        gradients); ``pad_point=False`` gives un-prompted frames no point at all.
        """
        m = self.model
        t_total = len(frames)
        conds = sorted(cond_frames if cond_frames is not None else (prompts or {0: None}))
        order = conds + [t for t in range(t_total) if t not in conds]
        memory: dict = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
        results: dict[int, torch.Tensor] = {}
        for t in order:
            feats = frames[t]
            top = feats.levels[2]
            b, c, h, w = top.shape
            seq = top.flatten(2).permute(2, 0, 1)
            pos = m.image_encoder.neck.position_encoding(top).to(top.dtype).flatten(2).permute(2, 0, 1)
            is_cond = t in conds
            pix = m._prepare_memory_conditioned_features(
                frame_idx=t, is_init_cond_frame=is_cond, current_vision_feats=[seq],
                current_vision_pos_embeds=[pos], feat_sizes=[(h, w)], output_dict=memory,
                num_frames=t_total)
            _, high_res = self.decoder_inputs(feats, add_no_mem_embed=False)
            extra = prompts.get(t)
            points = None
            if extra is None and pad_point:  # SAM2's empty prompt: one padding point
                points = (torch.zeros(b, 1, 2, device=top.device),
                          -torch.ones(b, 1, dtype=torch.int32, device=top.device))
            out = self.decode_embeddings(pix, high_res, extra, points=points, multimask=multimask,
                                         output_size=output_size, apply_object_score=object_score)
            hi = F.interpolate(out.low_res_masks, size=(self.image_size, self.image_size),
                               mode="bilinear", align_corners=False)
            maskmem, maskmem_pos = m._encode_new_memory(
                current_vision_feats=[seq], feat_sizes=[(h, w)], pred_masks_high_res=hi,
                object_score_logits=out.object_score_logits, is_mask_from_pts=is_cond)
            key = "cond_frame_outputs" if is_cond else "non_cond_frame_outputs"
            memory[key][t] = {"maskmem_features": maskmem, "maskmem_pos_enc": maskmem_pos,
                              "obj_ptr": self.object_pointer(out), "pred_masks": out.low_res_masks}
            results[t] = out.masks
        return torch.stack([results[t] for t in range(t_total)], dim=1)
