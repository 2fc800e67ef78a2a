"""Prompt injection inside SAM2's frozen mask decoder, and SAM2's tracking loop without prompts.

Interim home of two SAM2-layer features AuralSAM2 needs (``Injection`` into the two-way
transformer; ``propagate(..., pad_point=False)``): ``baselines/common/sam2_wrapper.py`` does not
have them yet. The SAM2 layer (``avsbench_kit/models/sam2.py``) provides the same names; this
module goes away when it lands.

The decoder path is SAM2's ``MaskDecoder.predict_masks`` + ``TwoWayTransformer.forward`` with
additions before block 0, block 1 and the final token->image attention: a dense map is added to
the image keys (and so also to the image embedding returned to the upscaler), a vector to the four
mask-output tokens (queries 2..5 with ``pred_obj_scores``). No prompt-encoder tokens at all (no
padding point), dense prompt = ``no_mask_embed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F

from baselines.common.sam2_wrapper import DecoderOutput, ImageFeatures, SAM2Wrapper

POINTS = (0, 1, "final")


@dataclass
class Injection:
    """Additive prompts for one decoder call (keys: 0, 1 or "final")."""

    keys: dict = field(default_factory=dict)  # {point: [N, 256, h, w]} added to the image keys
    tokens: dict = field(default_factory=dict)  # {point: [N, 4 or 1, 256]} added to the mask tokens


@dataclass
class TrackOutput:
    masks: torch.Tensor  # [B, T, H, W] chosen mask logits at output_size
    low_res_masks: torch.Tensor  # [B, T, 1, 4h, 4w]
    low_res_multimasks: torch.Tensor  # [B, T, M, 4h, 4w]
    ious: torch.Tensor  # [B, T, M]
    object_score_logits: torch.Tensor  # [B, T]


def _two_way(transformer, src: torch.Tensor, pos: torch.Tensor, tokens: torch.Tensor,
             inj: Injection, mask_slice: slice) -> tuple[torch.Tensor, torch.Tensor]:
    """``TwoWayTransformer.forward`` with the injections."""
    keys = src.flatten(2).permute(0, 2, 1)
    key_pe = pos.flatten(2).permute(0, 2, 1)
    queries = tokens

    def add(point, queries, keys):
        if point in inj.keys:
            keys = keys + inj.keys[point].flatten(2).permute(0, 2, 1).to(keys.dtype)
        if point in inj.tokens:
            extra = torch.zeros_like(queries)
            extra[:, mask_slice] = inj.tokens[point].to(queries.dtype)
            queries = queries + extra
        return queries, keys

    for i, layer in enumerate(transformer.layers):
        queries, keys = add(i, queries, keys)
        queries, keys = layer(queries=queries, keys=keys, query_pe=tokens, key_pe=key_pe)
    queries, keys = add("final", queries, keys)
    attn = transformer.final_attn_token_to_image(q=queries + tokens, k=keys + key_pe, v=keys)
    queries = transformer.norm_final_attn(queries + attn)
    return queries, keys


def decode_injected(sam: SAM2Wrapper, image_embed: torch.Tensor, high_res: list[torch.Tensor],
                    injection: Injection, *, multimask: bool = True,
                    output_size: int | tuple[int, int] | None = None) -> DecoderOutput:
    """One frozen mask-decoder call with injected prompts and no prompt tokens."""
    dec = sam.mask_decoder
    n = image_embed.shape[0]
    s = 1 if dec.pred_obj_scores else 0
    weights = [dec.iou_token.weight, dec.mask_tokens.weight]
    if s:
        weights.insert(0, dec.obj_score_token.weight)
    tokens = torch.cat(weights, dim=0).unsqueeze(0).expand(n, -1, -1)
    dense = sam.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
    src = image_embed + dense
    pos = sam.prompt_encoder.get_dense_pe().expand(n, -1, -1, -1)
    hs, keys = _two_way(dec.transformer, src, pos, tokens, injection,
                        slice(s + 1, s + 1 + dec.num_mask_tokens))
    b, c, h, w = src.shape
    src = keys.transpose(1, 2).reshape(b, c, h, w)
    dc1, ln1, act1, dc2, act2 = dec.output_upscaling
    up = act1(ln1(dc1(src) + high_res[1]))
    up = act2(dc2(up) + high_res[0])
    mask_tokens = hs[:, s + 1:s + 1 + dec.num_mask_tokens]
    hyper = torch.stack([mlp(mask_tokens[:, i]) for i, mlp in enumerate(dec.output_hypernetworks_mlps)], 1)
    masks = (hyper @ up.flatten(2)).view(n, -1, *up.shape[-2:])
    ious = dec.iou_prediction_head(hs[:, s])
    obj = dec.pred_obj_score_head(hs[:, 0]) if s else ious.new_full((n, 1), 10.0)
    if multimask:  # SAM2: candidates 1..3; the chosen one has the best predicted IoU
        masks, ious, cand = masks[:, 1:], ious[:, 1:], mask_tokens[:, 1:]
        best = ious.argmax(dim=-1)
        rows = torch.arange(n, device=masks.device)
        low_best, token = masks[rows, best].unsqueeze(1), cand[rows, best]
    else:
        masks, ious = masks[:, :1], ious[:, :1]
        low_best, token = masks, mask_tokens[:, 0]
    size = output_size or sam.image_size
    size = (size, size) if isinstance(size, int) else tuple(size)
    out = F.interpolate(low_best.float(), size=size, mode="bilinear", align_corners=False)[:, 0]
    return DecoderOutput(out, low_best.float(), masks.float(), ious, obj, token)


def propagate(sam: SAM2Wrapper, frames: Sequence[ImageFeatures], injections: Mapping[int, Injection],
              *, cond_frames: Sequence[int], multimask: bool = True,
              output_size: int | tuple[int, int] | None = None,
              object_score: bool = False, memory_grad: bool = True) -> TrackOutput:
    """SAM2's tracking loop without prompts: conditioning frames first, then the rest in order.

    Each frame's image embedding is conditioned on the memories of the frames done before it
    (memory attention), decoded with its injection, and its chosen mask goes through the memory
    encoder. ``object_score``: frames with a negative object score get SAM2's "no object" logits
    (-1024) before memory encoding and output (off in AuralSAM2's released decode).
    ``memory_grad=False`` runs memory attention and the memory encoder without gradients (the loss
    then reaches the prompts through each frame's own decoder call only: cheaper, not SAM2Train).
    """
    m = sam.model
    t_total = len(frames)
    conds = sorted(set(cond_frames))
    order = conds + [t for t in range(t_total) if t not in conds]
    memory: dict = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    results: dict[int, DecoderOutput] = {}
    for t in order:
        feats = frames[t]
        top = feats.levels[2]
        b, c, h, w = top.shape
        seq = top.flatten(2).permute(2, 0, 1)
        pos = m.image_encoder.neck.position_encoding(top).to(top.dtype).flatten(2).permute(2, 0, 1)
        is_cond = t in conds
        with torch.set_grad_enabled(memory_grad and torch.is_grad_enabled()):
            pix = m._prepare_memory_conditioned_features(
                frame_idx=t, is_init_cond_frame=is_cond, current_vision_feats=[seq],
                current_vision_pos_embeds=[pos], feat_sizes=[(h, w)], output_dict=memory,
                num_frames=t_total)
        _, high_res = sam.decoder_inputs(feats, add_no_mem_embed=False)
        out = decode_injected(sam, pix, high_res, injections.get(t, Injection()), multimask=multimask,
                              output_size=output_size)
        if object_score and m.pred_obj_scores:
            present = out.object_score_logits[:, :, None, None] > 0
            low = torch.where(present, out.low_res_masks, torch.full_like(out.low_res_masks, -1024.0))
            out = DecoderOutput(torch.where(present[:, 0], out.masks, torch.full_like(out.masks, -1024.0)),
                                low, out.low_res_multimasks, out.ious, out.object_score_logits,
                                out.best_token)
        with torch.set_grad_enabled(memory_grad and torch.is_grad_enabled()):
            hi = F.interpolate(out.low_res_masks, size=(sam.image_size, sam.image_size), mode="bilinear",
                               align_corners=False)
            maskmem, maskmem_pos = m._encode_new_memory(
                current_vision_feats=[seq], feat_sizes=[(h, w)], pred_masks_high_res=hi,
                object_score_logits=out.object_score_logits, is_mask_from_pts=False)
            ptr = sam.object_pointer(out)
        key = "cond_frame_outputs" if is_cond else "non_cond_frame_outputs"
        memory[key][t] = {"maskmem_features": maskmem, "maskmem_pos_enc": maskmem_pos,
                          "obj_ptr": ptr, "pred_masks": out.low_res_masks}
        results[t] = out
    seq_out = [results[t] for t in range(t_total)]
    return TrackOutput(
        masks=torch.stack([o.masks for o in seq_out], 1),
        low_res_masks=torch.stack([o.low_res_masks for o in seq_out], 1),
        low_res_multimasks=torch.stack([o.low_res_multimasks for o in seq_out], 1),
        ious=torch.stack([o.ious for o in seq_out], 1),
        object_score_logits=torch.stack([o.object_score_logits[:, 0] for o in seq_out], 1))
