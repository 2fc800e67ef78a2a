"""The one SAM2 layer: every SAM2-based baseline and the ``sam2_image`` cache encoder use it.

The AVS papers built on SAM2 (AV2T-SAM, AuralSAM2, SAM2-LOVE, ST-BAVA ports) all reach *inside*
SAM2: raw FPN levels (AuralSAM2), extra sparse prompt tokens and dense prompts in the mask decoder
(EVF-SAM style: AV2T-SAM, SAM2-LOVE), additive prompts inside the decoder's two-way transformer
(AuralSAM2), additive per-block prompts in the Hiera encoder (SAMA-style adapters) and memory
propagation over frames with gradients. The PyPI ``sam2`` package exposes none of these as
arguments, so this module rebuilds the few forward paths it needs from SAM2's own sub-modules
(``sam2_decoder`` for the mask decoder) — it never edits the package. Without hooks every path
gives SAM2's own outputs bit for bit (tests/test_models_sam2_hooks.py).

Image features may come from a ``sam2_image`` cache (float16 on disk) or be computed on the fly; with
``round_features="float16"`` the on-the-fly path rounds exactly like the cache, so a model trained
on cached features predicts identically from frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from avsbench_kit.errors import ConfigError
from avsbench_kit.models.sam2_build import (SAM2_CONFIGS, build_sam2_model, check_image_size,  # noqa: F401
                                            hiera_block_dims, resolve_checkpoint, sam2_config_path)
from avsbench_kit.models.preprocess import register_pixel_stats, resize_normalise
from avsbench_kit.models.sam2_decoder import Injection, add_checked, run_mask_decoder

#: canonical cache level names: raw FPN levels (256 ch, strides 4/8/16) and forward_image's
#: conv_s0/conv_s1-projected high-res levels (32 / 64 ch)
RAW_LEVELS = ("fpn0", "fpn1", "fpn2")
PROJECTED_LEVELS = ("conv_s0", "conv_s1")
NO_OBJ_SCORE = -1024.0  # SAM2's placeholder logit for "no object"

__all__ = ["SAM2Wrapper", "ImageFeatures", "DecoderOutput", "TrackOutput", "Injection",
           "classify_levels", "check_image_size", "hiera_block_dims", "resolve_checkpoint",
           "sam2_config_path", "SAM2_CONFIGS", "NO_OBJ_SCORE"]


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


@dataclass
class TrackOutput:
    """Per-frame outputs of :meth:`SAM2Wrapper.propagate` over B clips of T frames."""

    masks: torch.Tensor  # [B, T, H, W] chosen mask logits at the requested size
    low_res_masks: torch.Tensor  # [B, T, 1, 4h, 4w]
    low_res_multimasks: torch.Tensor  # [B, T, M, 4h, 4w]
    ious: torch.Tensor  # [B, T, M] predicted IoUs
    object_score_logits: torch.Tensor  # [B, T]


class SAM2Wrapper(nn.Module):
    """SAM2 built from a config name (+ optional local checkpoint) at any multiple-of-32 size.

    All SAM2 parameters start frozen; a baseline unfreezes what its paper trains.
    """

    def __init__(self, config: str = "sam2.1_hiera_t", checkpoint: str | Path | None = None,
                 image_size: int = 1024, *, init_seed: int = 0,
                 round_features: str | None = None, require_checkpoint: bool = False) -> None:
        super().__init__()
        self.config_name = config
        self.image_size = check_image_size(image_size)
        sam2_config_path(config)  # unknown names fail before anything is built
        if round_features not in (None, "float16", "bfloat16"):
            raise ConfigError(f"sam2.round_features={round_features!r} is not one of float16, "
                              "bfloat16, null", hint="float16 matches the sam2_image cache")
        self.round_features = round_features
        path = resolve_checkpoint(checkpoint, config)
        if path is None and require_checkpoint:
            raise ConfigError(
                "this config needs pretrained SAM2 weights but sam2.checkpoint is empty",
                hint="pass sam2.checkpoint=/path/to/<weights>.pt (e.g. sam2_hiera_large.pt from "
                     "facebook/sam2-hiera-large), or sam2.require_checkpoint=false for random weights",
            )
        self.checkpoint = str(path) if path else None
        model = build_sam2_model(config, path, image_size, init_seed)
        for p in model.parameters():
            p.requires_grad_(False)
        self.model = model
        self.block_dims: list[int] = [blk.dim for blk in model.image_encoder.trunk.blocks]
        self.embed_size = image_size // 16
        register_pixel_stats(self)

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
        + ImageNet mean/std. The one preprocessing of the cache encoder and the baselines."""
        return resize_normalise(frames, self.image_size, self.pixel_mean, self.pixel_std)

    def image_encoder_outputs(self, images: torch.Tensor,
                              block_prompts: Sequence[torch.Tensor] | None = None) -> dict:
        """The image encoder's dict (raw 256-ch ``backbone_fpn``, ``vision_pos_enc``), optionally
        with an additive prompt before every Hiera block."""
        if block_prompts is None:
            return self.image_encoder(images)
        enc = self.image_encoder
        features, pos = enc.neck(self._trunk_with_prompts(images, block_prompts))
        if enc.scalp > 0:
            features, pos = features[: -enc.scalp], pos[: -enc.scalp]
        return {"vision_features": features[-1], "vision_pos_enc": pos, "backbone_fpn": features}

    def project_high_res(self, fpn0: torch.Tensor, fpn1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mask decoder's conv_s0/conv_s1 on raw levels 0/1 (what ``forward_image`` does)."""
        return self.mask_decoder.conv_s0(fpn0), self.mask_decoder.conv_s1(fpn1)

    def forward_image(self, images: torch.Tensor,
                      block_prompts: Sequence[torch.Tensor] | None = None) -> dict:
        """``SAM2Base.forward_image``: high-res levels projected by conv_s0/conv_s1."""
        out = self.image_encoder_outputs(images, block_prompts)
        out = {**out, "backbone_fpn": list(out["backbone_fpn"])}
        if self.model.use_high_res_features_in_sam:
            out["backbone_fpn"][:2] = self.project_high_res(*out["backbone_fpn"][:2])
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

    # ---- adapter prompts inside the Hiera trunk ----------------------------------------------
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

    # ---- mask decoder with extra sparse / dense prompts and injections -----------------------
    def decoder_inputs(self, feats: ImageFeatures, add_no_mem_embed: bool = True, *,
                       injection: Injection | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Image embedding (+ ``no_mem_embed``, as SAM2 does on an un-tracked frame) and the two
        high-res maps (through conv_s0/conv_s1 unless the cache already projected them), with
        ``injection.image`` / ``injection.high_res`` added."""
        top = feats.levels[2]
        if add_no_mem_embed:
            top = top + self.model.no_mem_embed.view(1, -1, 1, 1)
        s0, s1 = feats.levels[0], feats.levels[1]
        if not feats.projected:
            s0, s1 = self.project_high_res(s0, s1)
        return self._inject_embeddings(top, [s0, s1], injection)

    @staticmethod
    def _inject_embeddings(image_embed: torch.Tensor, high_res: list[torch.Tensor],
                           injection: Injection | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if injection is None:
            return image_embed, high_res
        hr = injection.high_res
        return (add_checked(image_embed, injection.image, "Injection.image"),
                [add_checked(high_res[0], hr[0], "Injection.high_res[0]"),
                 add_checked(high_res[1], hr[1], "Injection.high_res[1]")])

    def padding_points(self, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """SAM2's empty prompt: one point at (0, 0) with label -1 ("padding")."""
        return (torch.zeros(n, 1, 2, device=device),
                -torch.ones(n, 1, dtype=torch.int32, device=device))

    def decode(self, feats: ImageFeatures, extra_sparse: torch.Tensor | None = None, *,
               dense: torch.Tensor | None = None, injection: Injection | None = None,
               multimask: bool = True, output_size: int | tuple[int, int] | None = None,
               apply_object_score: bool = False, pad_point: bool = False,
               points: tuple[torch.Tensor, torch.Tensor] | None = None) -> DecoderOutput:
        """Image features + prompts -> mask logits on one (untracked) frame.

        ``points`` (coords [N,P,2] in input-image pixels, labels [N,P]) go through SAM2's prompt
        encoder; without them ``pad_point`` puts SAM2's padding point before the extra tokens
        (SAM2's image path does; EVF-SAM2 does not)."""
        image_embed, high_res = self.decoder_inputs(feats)
        if points is None and pad_point:
            points = self.padding_points(image_embed.shape[0], image_embed.device)
        return self.decode_embeddings(image_embed, high_res, extra_sparse, dense=dense, points=points,
                                      injection=injection, multimask=multimask,
                                      output_size=output_size, apply_object_score=apply_object_score)

    def decode_embeddings(self, image_embed: torch.Tensor, high_res: list[torch.Tensor],
                          extra_sparse: torch.Tensor | None = None, *,
                          dense: torch.Tensor | None = None,
                          image_pe: torch.Tensor | None = None,
                          points: tuple[torch.Tensor, torch.Tensor] | None = None,
                          injection: Injection | None = None, multimask: bool = True,
                          output_size: int | tuple[int, int] | None = None,
                          apply_object_score: bool = False) -> DecoderOutput:
        """One mask-decoder call.

        ``extra_sparse`` [N,K,256] is concatenated after the prompt encoder's sparse output (empty
        for points=None); ``dense`` [N,256,h,w] replaces ``no_mask_embed`` as the dense prompt;
        ``image_pe`` [1,256,h,w] replaces the prompt encoder's grid encoding (for methods that own
        their positional encoding, e.g. ST-BAVA's ``visual_pe``);
        ``injection`` is added to the embeddings and inside the two-way transformer. With
        ``multimask`` the mask of highest predicted IoU is chosen. ``apply_object_score`` replaces
        masks of "no object" frames by -1024 like SAM2's tracker (off by default: it blocks
        gradients on those frames)."""
        n = image_embed.shape[0]
        image_embed, high_res = self._inject_embeddings(image_embed, high_res, injection)
        sparse, no_mask = self.prompt_encoder(points=points, boxes=None, masks=None)
        if points is None:
            sparse = sparse.expand(n, -1, -1)
            no_mask = no_mask.expand(n, -1, -1, -1)
        if extra_sparse is not None:
            if extra_sparse.dim() != 3 or extra_sparse.shape[0] != n \
                    or extra_sparse.shape[2] != sparse.shape[2]:
                raise ValueError(f"extra sparse prompts must be [{n}, K, {sparse.shape[2]}], got "
                                 f"{tuple(extra_sparse.shape)}")
            sparse = torch.cat([sparse, extra_sparse.to(sparse.dtype)], dim=1)
        if dense is not None:
            if tuple(dense.shape) != tuple(image_embed.shape):
                raise ValueError(f"dense prompt must be {list(image_embed.shape)}, got "
                                 f"{list(dense.shape)}")
            no_mask = dense.to(image_embed.dtype)
        if image_pe is None:
            image_pe = self.prompt_encoder.get_dense_pe()
        elif tuple(image_pe.shape) != (1, *image_embed.shape[1:]):
            raise ValueError(f"image_pe must be [1, {', '.join(map(str, image_embed.shape[1:]))}], got "
                             f"{list(image_pe.shape)}")
        if injection is None or not (injection.keys or injection.tokens):
            low, ious, tokens, obj = self.mask_decoder(
                image_embeddings=image_embed, image_pe=image_pe, sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=no_mask, multimask_output=multimask, repeat_image=False,
                high_res_features=high_res)
        else:
            low, ious, tokens, obj = run_mask_decoder(self.mask_decoder, image_embed, image_pe,
                                                      sparse, no_mask, multimask, high_res, injection)
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
        masks = self._resize(low_best, output_size)[:, 0]
        return DecoderOutput(masks, low_best, low, ious, obj, token)

    def _resize(self, low: torch.Tensor, size: int | tuple[int, int] | None) -> torch.Tensor:
        size = size or self.image_size
        size = (size, size) if isinstance(size, int) else tuple(size)
        return F.interpolate(low, size=size, mode="bilinear", align_corners=False)

    # ---- memory propagation ------------------------------------------------------------------
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

    def propagate(self, frames: Sequence[ImageFeatures],
                  prompts: Mapping[int, torch.Tensor] | None = None, *,
                  dense: Mapping[int, torch.Tensor] | None = None,
                  injections: Mapping[int, Injection] | None = None,
                  cond_frames: Sequence[int] | None = None, multimask: bool = True,
                  output_size: int | tuple[int, int] | None = None,
                  object_score: bool = True, pad_point: bool = True,
                  memory_grad: bool = True) -> TrackOutput:
        """Track B clips over T frames with SAM2's memory attention + memory encoder.

        ``frames[t]`` holds the features of frame t of the B clips. ``prompts[t]`` [B,K,256] are
        extra sparse tokens, ``dense[t]`` [B,256,h,w] a dense prompt and ``injections[t]`` the
        additive injections of frame t. Conditioning frames (default: the frames with a sparse or
        dense prompt, else frame 0) are decoded first without memory, then the others in index
        order, each attending to the memories of the frames done before it. Frames without extra
        sparse tokens get SAM2's padding point when ``pad_point`` (SAM2's tracker does; AuralSAM2
        does not). ``object_score`` applies SAM2's "no object" rule (masks -> -1024 where the
        object score is negative) to the outputs and the memories. Gradients flow through
        everything (wrap in ``torch.no_grad()`` to track without them); ``memory_grad=False``
        stops them at the memory (memory attention, memory encoder, object pointers run without
        gradients): the loss then reaches the prompts through each frame's own decoder call only.
        """
        prompts, dense, injections = dict(prompts or {}), dict(dense or {}), dict(injections or {})
        t_total = len(frames)
        if t_total == 0:
            raise ValueError("propagate needs at least one frame")
        for what, table in (("prompts", prompts), ("dense", dense), ("injections", injections),
                            ("cond_frames", {t: None for t in cond_frames or ()})):
            bad = [t for t in table if not (isinstance(t, int) and 0 <= t < t_total)]
            if bad:
                raise ValueError(f"{what} names frames {bad} outside 0..{t_total - 1}")
        conds = sorted(set(cond_frames if cond_frames is not None else (set(prompts) | set(dense)) or {0}))
        if not conds:
            raise ValueError("cond_frames is empty: SAM2 needs at least one conditioning frame")
        order = conds + [t for t in range(t_total) if t not in conds]
        m = self.model
        memory: dict = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
        results: dict[int, DecoderOutput] = {}
        grad = torch.is_grad_enabled()
        for t in order:
            feats = frames[t]
            top = feats.levels[2]
            b, _, h, w = top.shape
            seq = top.flatten(2).permute(2, 0, 1)  # SAM2's (HW)BC layout
            pos = m.image_encoder.neck.position_encoding(top).to(top.dtype).flatten(2).permute(2, 0, 1)
            is_cond = t in conds
            with torch.set_grad_enabled(memory_grad and grad):
                pix = m._prepare_memory_conditioned_features(
                    frame_idx=t, is_init_cond_frame=is_cond, current_vision_feats=[seq],
                    current_vision_pos_embeds=[pos], feat_sizes=[(h, w)], output_dict=memory,
                    num_frames=t_total)
            _, high_res = self.decoder_inputs(feats, add_no_mem_embed=False)
            extra = prompts.get(t)
            points = self.padding_points(b, top.device) if extra is None and pad_point else None
            out = self.decode_embeddings(pix, high_res, extra, dense=dense.get(t), points=points,
                                         injection=injections.get(t), multimask=multimask,
                                         output_size=output_size, apply_object_score=object_score)
            with torch.set_grad_enabled(memory_grad and grad):
                hi = self._resize(out.low_res_multimasks, self.image_size)  # all, then pick: as SAM2
                if hi.shape[1] > 1:
                    hi = hi[torch.arange(b, device=hi.device), out.ious.argmax(dim=-1)].unsqueeze(1)
                maskmem, maskmem_pos = m._encode_new_memory(
                    current_vision_feats=[seq], feat_sizes=[(h, w)], pred_masks_high_res=hi,
                    object_score_logits=out.object_score_logits, is_mask_from_pts=extra is not None)
                ptr = self.object_pointer(out)
            key = "cond_frame_outputs" if is_cond else "non_cond_frame_outputs"
            memory[key][t] = {"maskmem_features": maskmem, "maskmem_pos_enc": maskmem_pos,
                              "obj_ptr": ptr, "pred_masks": out.low_res_masks}
            results[t] = out
        ordered = [results[t] for t in range(t_total)]
        return TrackOutput(
            masks=torch.stack([o.masks for o in ordered], dim=1),
            low_res_masks=torch.stack([o.low_res_masks for o in ordered], dim=1),
            low_res_multimasks=torch.stack([o.low_res_multimasks for o in ordered], dim=1),
            ious=torch.stack([o.ious for o in ordered], dim=1),
            object_score_logits=torch.stack([o.object_score_logits[:, 0] for o in ordered], dim=1))
