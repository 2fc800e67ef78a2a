"""SAM2's mask decoder, re-run from its own sub-modules so prompts can be added *inside* it.

AuralSAM2 adds audio-conditioned maps to the image keys and audio vectors to the mask tokens of
SAM2's two-way transformer before each of its layers and before the final token->image attention.
``sam2`` has no argument for that, so :func:`run_mask_decoder` repeats what ``MaskDecoder.forward``
/ ``predict_masks`` / ``TwoWayTransformer.forward`` do, calling the package's own layers, with an
addition at those points. The package itself is never edited or monkey-patched: a model built from
it stays usable by SAM2's own predictors. With an empty :class:`Injection` the re-run performs the
same operations in the same order as SAM2, so its outputs are bit-identical (tested).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

#: where a two-way injection can go besides a layer index: the final token->image attention
FINAL = "final"


@dataclass
class Injection:
    """Additive prompts for one mask-decoder call (every tensor is optional).

    ``image`` [N,256,h,w] is added to the image embedding, ``high_res`` ([N,32,4h,4w], [N,64,2h,2w])
    to the conv_s0/conv_s1 maps. ``keys[pos]`` [N,256,h,w] and ``tokens[pos]`` [N,4,256] (or
    [N,1,256], broadcast over the 4 mask tokens) are added inside the two-way transformer before
    layer ``pos`` (0, 1) or before the final attention (``"final"``); the additions persist into
    the following layers, as in AuralSAM2.
    """

    image: Tensor | None = None
    high_res: tuple[Tensor | None, Tensor | None] = (None, None)
    keys: dict[int | str, Tensor] = field(default_factory=dict)
    tokens: dict[int | str, Tensor] = field(default_factory=dict)

    def check_positions(self, depth: int) -> None:
        """Unknown positions would silently do nothing: refuse them."""
        allowed = [*range(depth), FINAL]
        for what, table in (("keys", self.keys), ("tokens", self.tokens)):
            bad = [p for p in table if p not in allowed]
            if bad:
                raise ValueError(f"Injection.{what} positions {bad} are not among {allowed} "
                                 f"(layer indices of SAM2's two-way transformer, or 'final')")


def add_checked(base: Tensor, extra: Tensor | None, what: str) -> Tensor:
    """``base + extra`` with a clear error when the shapes differ (no silent broadcasting)."""
    if extra is None:
        return base
    if tuple(extra.shape) != tuple(base.shape):
        raise ValueError(f"{what} has shape {tuple(extra.shape)}, expected {tuple(base.shape)}")
    return base + extra.to(base.dtype)


def _inject(queries: Tensor, keys: Tensor, injection: Injection | None, pos: int | str,
            span: tuple[int, int], hw: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Add the injection of position ``pos``: keys [N,HW,C], mask tokens = queries[:, span]."""
    if injection is None:
        return queries, keys
    key_add = injection.keys.get(pos)
    if key_add is not None:
        n, c = keys.shape[0], keys.shape[2]
        if tuple(key_add.shape) != (n, c, *hw):
            raise ValueError(f"Injection.keys[{pos!r}] has shape {tuple(key_add.shape)}, expected "
                             f"{(n, c, *hw)}")
        keys = keys + key_add.to(keys.dtype).flatten(2).permute(0, 2, 1)
    tok_add = injection.tokens.get(pos)
    if tok_add is not None:
        a, b = span
        n, c = queries.shape[0], queries.shape[2]
        if tok_add.dim() != 3 or tok_add.shape[0] != n or tok_add.shape[2] != c \
                or tok_add.shape[1] not in (1, b - a):
            raise ValueError(f"Injection.tokens[{pos!r}] has shape {tuple(tok_add.shape)}, expected "
                             f"({n}, {b - a}, {c}) or ({n}, 1, {c})")
        mask_tokens = queries[:, a:b] + tok_add.to(queries.dtype)
        queries = torch.cat([queries[:, :a], mask_tokens, queries[:, b:]], dim=1)
    return queries, keys


def run_two_way(transformer: nn.Module, image_embedding: Tensor, image_pe: Tensor,
                point_embedding: Tensor, injection: Injection | None,
                span: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """``TwoWayTransformer.forward`` with injections; returns (queries, keys) like SAM2."""
    h, w = image_embedding.shape[-2:]
    keys = image_embedding.flatten(2).permute(0, 2, 1)
    key_pe = image_pe.flatten(2).permute(0, 2, 1)
    queries = point_embedding
    for index, layer in enumerate(transformer.layers):
        queries, keys = _inject(queries, keys, injection, index, span, (h, w))
        queries, keys = layer(queries=queries, keys=keys, query_pe=point_embedding, key_pe=key_pe)
    queries, keys = _inject(queries, keys, injection, FINAL, span, (h, w))
    attn = transformer.final_attn_token_to_image(q=queries + point_embedding, k=keys + key_pe, v=keys)
    queries = transformer.norm_final_attn(queries + attn)
    return queries, keys


def run_mask_decoder(decoder: nn.Module, image_embeddings: Tensor, image_pe: Tensor,
                     sparse: Tensor, dense: Tensor, multimask: bool,
                     high_res: list[Tensor] | None, injection: Injection | None
                     ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``MaskDecoder.forward(..., repeat_image=False)`` with two-way injections.

    Returns what SAM2 returns: mask logits [N,M,4h,4w], IoUs [N,M], the SAM output tokens
    [N,M or 1,C] and object-score logits [N,1].
    """
    if injection is not None:
        injection.check_positions(len(decoder.transformer.layers))
    s = 1 if decoder.pred_obj_scores else 0
    out_weights = [decoder.obj_score_token.weight] if s else []
    output_tokens = torch.cat([*out_weights, decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
    output_tokens = output_tokens.unsqueeze(0).expand(sparse.size(0), -1, -1)
    tokens = torch.cat((output_tokens, sparse), dim=1)
    if image_embeddings.shape[0] != tokens.shape[0]:
        raise ValueError(f"image embeddings of {image_embeddings.shape[0]} frames for "
                         f"{tokens.shape[0]} prompt sets")
    src = image_embeddings + dense
    pos_src = torch.repeat_interleave(image_pe, tokens.shape[0], dim=0)
    b, c, h, w = src.shape
    n_masks = decoder.num_mask_tokens
    hs, src = run_two_way(decoder.transformer, src, pos_src, tokens, injection,
                          (s + 1, s + 1 + n_masks))
    iou_token_out = hs[:, s, :]
    mask_tokens_out = hs[:, s + 1:s + 1 + n_masks, :]

    src = src.transpose(1, 2).view(b, c, h, w)
    if not decoder.use_high_res_features:
        upscaled = decoder.output_upscaling(src)
    else:
        dc1, ln1, act1, dc2, act2 = decoder.output_upscaling
        feat_s0, feat_s1 = high_res
        upscaled = act1(ln1(dc1(src) + feat_s1))
        upscaled = act2(dc2(upscaled) + feat_s0)
    hyper_in = torch.stack([decoder.output_hypernetworks_mlps[i](mask_tokens_out[:, i, :])
                            for i in range(n_masks)], dim=1)
    b, c, h, w = upscaled.shape
    masks = (hyper_in @ upscaled.view(b, c, h * w)).view(b, -1, h, w)
    iou_pred = decoder.iou_prediction_head(iou_token_out)
    if s:
        object_score_logits = decoder.pred_obj_score_head(hs[:, 0, :])
    else:  # SAM2's convention without an object-score head: "object present" (sigmoid(10) ~ 1)
        object_score_logits = 10.0 * iou_pred.new_ones(iou_pred.shape[0], 1)

    if multimask:
        masks, iou_pred = masks[:, 1:, :, :], iou_pred[:, 1:]
    elif decoder.dynamic_multimask_via_stability and not decoder.training:
        masks, iou_pred = decoder._dynamic_multimask_via_stability(masks, iou_pred)
    else:
        masks, iou_pred = masks[:, 0:1, :, :], iou_pred[:, 0:1]
    if multimask and decoder.use_multimask_token_for_obj_ptr:
        sam_tokens = mask_tokens_out[:, 1:]
    else:
        sam_tokens = mask_tokens_out[:, 0:1]
    return masks, iou_pred, sam_tokens, object_score_logits
