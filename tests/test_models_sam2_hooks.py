"""The SAM2 layer's hooks: dense prompts, injections, propagation with gradients, the sam2 pin.

Every "no hook" path is compared bit for bit with SAM2's own modules called directly.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import torch

from avsbench_kit.errors import ConfigError
from avsbench_kit.models.sam2 import ImageFeatures, Injection, SAM2Wrapper, TrackOutput
from avsbench_kit.models.sam2_build import (PRIVATE_API, SAM2_VERSIONS, check_private_api,
                                            missing_private_api)

pytestmark = pytest.mark.usefixtures("one_torch_thread")
T = 4


@pytest.fixture(scope="module")
def sam() -> SAM2Wrapper:
    return SAM2Wrapper("sam2.1_hiera_t", None, 128, init_seed=0)


@pytest.fixture(scope="module")
def clip() -> torch.Tensor:
    """B=2 clips of T frames, preprocessed: [T, 2, 3, 128, 128]."""
    g = torch.Generator().manual_seed(11)
    return torch.rand(T, 2, 3, 128, 128, generator=g) * 4 - 2


@pytest.fixture(scope="module")
def frames(sam: SAM2Wrapper, clip: torch.Tensor) -> list[ImageFeatures]:
    with torch.no_grad():
        return [sam.features(clip[t]) for t in range(T)]


def _rand(*shape: int, seed: int = 0, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


def _same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def _outputs(out) -> tuple[torch.Tensor, ...]:
    return out.masks, out.low_res_multimasks, out.ious, out.object_score_logits


# ---- single-frame decoder ---------------------------------------------------------------------
@pytest.mark.parametrize("pad_point", [False, True])
def test_decode_without_hooks_is_sams_own_decoder_bit_for_bit(sam, frames, pad_point) -> None:
    feats, extra = frames[0], _rand(2, 2, 256, seed=1)
    with torch.no_grad():
        out = sam.decode(feats, extra, pad_point=pad_point)
        pe, dec = sam.prompt_encoder, sam.mask_decoder
        points = (torch.zeros(2, 1, 2), -torch.ones(2, 1, dtype=torch.int32)) if pad_point else None
        sparse, dense = pe(points=points, boxes=None, masks=None)
        sparse = torch.cat([sparse.expand(2, -1, -1), extra], dim=1)
        low, ious, _, obj = dec(
            image_embeddings=feats.levels[2] + sam.model.no_mem_embed.view(1, -1, 1, 1),
            image_pe=pe.get_dense_pe(), sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense.expand(2, -1, 8, 8), multimask_output=True,
            repeat_image=False, high_res_features=[dec.conv_s0(feats.levels[0]),
                                                   dec.conv_s1(feats.levels[1])])
    assert torch.equal(out.low_res_multimasks, low) and torch.equal(out.ious, ious)
    assert torch.equal(out.object_score_logits, obj)
    if pad_point:  # the padding point is a real token: it changes the output
        assert not torch.equal(out.masks, sam.decode(feats, extra).masks)


def _zero_injection(sam: SAM2Wrapper, n: int = 2) -> Injection:
    e = sam.embed_size
    return Injection(image=torch.zeros(n, 256, e, e),
                     high_res=(torch.zeros(n, 32, 4 * e, 4 * e), torch.zeros(n, 64, 2 * e, 2 * e)),
                     keys={p: torch.zeros(n, 256, e, e) for p in (0, 1, "final")},
                     tokens={0: torch.zeros(n, 4, 256), 1: torch.zeros(n, 1, 256),
                             "final": torch.zeros(n, 4, 256)})


@pytest.mark.parametrize("multimask", [True, False])
def test_empty_and_zero_injections_are_bit_identical(sam, frames, multimask) -> None:
    """The re-run two-way transformer does SAM2's operations in SAM2's order."""
    extra = _rand(2, 1, 256, seed=2)
    with torch.no_grad():
        plain = sam.decode(frames[0], extra, multimask=multimask)
        empty = sam.decode(frames[0], extra, multimask=multimask, injection=Injection())
        zero = sam.decode(frames[0], extra, multimask=multimask, injection=_zero_injection(sam))
        # force the re-run path with a single zero key injection
        rerun = sam.decode(frames[0], extra, multimask=multimask,
                           injection=Injection(keys={0: torch.zeros(2, 256, 8, 8)}))
    for other in (empty, zero, rerun):
        assert _same(_outputs(plain), _outputs(other))
        assert torch.equal(plain.best_token, other.best_token)


def _one(sam: SAM2Wrapper, where: str) -> Injection:
    e, g = sam.embed_size, 5
    if where == "image":
        return Injection(image=_rand(2, 256, e, e, seed=g))
    if where == "high_res0":
        return Injection(high_res=(_rand(2, 32, 4 * e, 4 * e, seed=g), None))
    if where == "high_res1":
        return Injection(high_res=(None, _rand(2, 64, 2 * e, 2 * e, seed=g)))
    kind, pos = where.split(":")
    pos = pos if pos == "final" else int(pos)
    if kind == "keys":
        return Injection(keys={pos: _rand(2, 256, e, e, seed=g)})
    return Injection(tokens={pos: _rand(2, 4, 256, seed=g)})


@pytest.mark.parametrize("where", ["image", "high_res0", "high_res1", "keys:0", "keys:1", "keys:final",
                                   "tokens:0", "tokens:1", "tokens:final"])
def test_each_injection_changes_the_output(sam, frames, where) -> None:
    with torch.no_grad():
        plain = sam.decode(frames[0], _rand(2, 1, 256, seed=2))
        hooked = sam.decode(frames[0], _rand(2, 1, 256, seed=2), injection=_one(sam, where))
    assert (hooked.low_res_multimasks - plain.low_res_multimasks).abs().max() > 1e-4


def test_one_token_injection_broadcasts_over_the_four_mask_tokens(sam, frames) -> None:
    v = _rand(2, 1, 256, seed=9)
    with torch.no_grad():
        one = sam.decode(frames[0], injection=Injection(tokens={1: v}))
        four = sam.decode(frames[0], injection=Injection(tokens={1: v.expand(2, 4, 256)}))
    assert _same(_outputs(one), _outputs(four))


def test_bad_injections_and_dense_prompts_fail_clearly(sam, frames) -> None:
    with pytest.raises(ValueError, match=r"positions \[2\]"):
        sam.decode(frames[0], injection=Injection(keys={2: torch.zeros(2, 256, 8, 8)}))
    with pytest.raises(ValueError, match="Injection.image has shape"):
        sam.decode(frames[0], injection=Injection(image=torch.zeros(2, 256, 4, 4)))
    with pytest.raises(ValueError, match=r"Injection.tokens\['final'\]"):
        sam.decode(frames[0], injection=Injection(tokens={"final": torch.zeros(2, 3, 256)}))
    with pytest.raises(ValueError, match="dense prompt must be"):
        sam.decode(frames[0], dense=torch.zeros(2, 256, 4, 4))


def test_dense_prompt_replaces_no_mask_embed(sam, frames) -> None:
    no_mask = sam.prompt_encoder.no_mask_embed.weight.view(1, -1, 1, 1).expand(2, -1, 8, 8)
    with torch.no_grad():
        plain = sam.decode(frames[0])
        same = sam.decode(frames[0], dense=no_mask.clone())
        other = sam.decode(frames[0], dense=_rand(2, 256, 8, 8, seed=4))
    assert _same(_outputs(plain), _outputs(same))
    assert (other.masks - plain.masks).abs().max() > 1e-4



def test_image_pe_defaults_to_the_prompt_encoders_and_can_be_replaced(sam, frames) -> None:
    embed, high_res = sam.decoder_inputs(frames[0])
    with torch.no_grad():
        plain = sam.decode_embeddings(embed, high_res)
        same = sam.decode_embeddings(embed, high_res, image_pe=sam.prompt_encoder.get_dense_pe().clone())
        other = sam.decode_embeddings(embed, high_res, image_pe=_rand(1, 256, 8, 8, seed=5))
    assert _same(_outputs(plain), _outputs(same))
    assert (other.masks - plain.masks).abs().max() > 1e-4
    with pytest.raises(ValueError, match="image_pe must be"):
        sam.decode_embeddings(embed, high_res, image_pe=torch.zeros(1, 256, 4, 4))

# ---- propagation ------------------------------------------------------------------------------
def test_propagation_without_hooks_is_sams_own_tracker_bit_for_bit(sam, clip) -> None:
    """Against ``SAM2Base.track_step`` (SAM2's own per-frame tracking step), frame 0 conditioning,
    no prompts (SAM2 pads every frame with an empty point)."""
    m = sam.model
    with torch.no_grad():
        ours = sam.propagate([ImageFeatures(tuple(sam.image_encoder(clip[t])["backbone_fpn"]))
                              for t in range(T)])
        memory: dict = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
        theirs = []
        for t in range(T):
            _, feats, pos, sizes = m._prepare_backbone_features(m.forward_image(clip[t]))
            out = m.track_step(frame_idx=t, is_init_cond_frame=t == 0, current_vision_feats=feats,
                               current_vision_pos_embeds=pos, feat_sizes=sizes, point_inputs=None,
                               mask_inputs=None, output_dict=memory, num_frames=T)
            memory["cond_frame_outputs" if t == 0 else "non_cond_frame_outputs"][t] = out
            theirs.append(out)
    assert isinstance(ours, TrackOutput)
    for t, out in enumerate(theirs):
        assert torch.equal(ours.low_res_masks[:, t], out["pred_masks"]), t
        assert torch.equal(ours.object_score_logits[:, t], out["object_score_logits"][:, 0]), t


def test_loss_on_frame_3_sends_gradients_to_the_frame_0_prompt(sam, frames) -> None:
    prompt = _rand(2, 1, 256, seed=3).requires_grad_(True)
    out = sam.propagate(frames, {0: prompt}, object_score=False, output_size=32)
    out.masks[:, 3].sigmoid().mean().backward()
    assert prompt.grad is not None and prompt.grad.abs().sum() > 0
    assert all(p.grad is None for p in sam.parameters())  # SAM2 stays frozen


def test_dense_and_injection_on_frame_0_get_gradients_from_frame_3(sam, frames) -> None:
    e = sam.embed_size
    dense = _rand(2, 256, e, e, seed=6).requires_grad_(True)
    keys = _rand(2, 256, e, e, seed=7, scale=0.1).requires_grad_(True)
    out = sam.propagate(frames, dense={0: dense}, injections={0: Injection(keys={1: keys})},
                        object_score=False, pad_point=False)
    out.low_res_masks[:, 3].mean().backward()
    assert dense.grad.abs().sum() > 0 and keys.grad.abs().sum() > 0


def test_later_frames_depend_on_the_frame_0_prompt_and_on_in_between_frames(sam, frames) -> None:
    with torch.no_grad():
        base = sam.propagate(frames, {0: _rand(2, 1, 256, seed=3)}, object_score=False)
        other_prompt = sam.propagate(frames, {0: _rand(2, 1, 256, seed=30)}, object_score=False)
        changed = list(frames)
        changed[1] = ImageFeatures(tuple(t + _rand(*t.shape, seed=8) for t in frames[1].levels))
        other_mid = sam.propagate(changed, {0: _rand(2, 1, 256, seed=3)}, object_score=False)
    for k in (1, 2, 3):
        assert (other_prompt.low_res_masks[:, k] - base.low_res_masks[:, k]).abs().max() > 1e-5, k
    assert torch.equal(other_mid.low_res_masks[:, 0], base.low_res_masks[:, 0])  # before the change
    for k in (2, 3):  # frame 1 reaches them only through memory
        assert (other_mid.low_res_masks[:, k] - base.low_res_masks[:, k]).abs().max() > 1e-5, k


def test_caller_chooses_the_conditioning_frame(sam, frames) -> None:
    p = _rand(2, 1, 256, seed=12)
    with torch.no_grad():
        mid = sam.propagate(frames, {2: p}, cond_frames=[2], output_size=64)
        alone = sam.decode(frames[2], p, output_size=64, apply_object_score=True)
        other = sam.propagate(frames, {2: _rand(2, 1, 256, seed=13)}, cond_frames=[2])
        default = sam.propagate(frames, {2: p})
    # the conditioning frame is decoded first, without memory: like a single-frame decode
    assert torch.equal(mid.masks[:, 2], alone.masks) and torch.equal(mid.ious[:, 2], alone.ious)
    assert torch.equal(default.low_res_masks, mid.low_res_masks)  # default = the prompted frame
    # frame 0 comes after the conditioning frame and reads its memory
    assert not torch.equal(other.low_res_masks[:, 0], mid.low_res_masks[:, 0])
    with pytest.raises(ValueError, match="outside 0..3"):
        sam.propagate(frames, {4: p})


def test_switches_and_per_frame_hooks(sam, frames) -> None:
    e = sam.embed_size
    with torch.no_grad():
        base = sam.propagate(frames, object_score=False)
        no_pad = sam.propagate(frames, object_score=False, pad_point=False)
        hooked = sam.propagate(frames, injections={2: Injection(image=_rand(2, 256, e, e, seed=14))},
                               object_score=False)
        multi1 = sam.propagate(frames, multimask=False)
    assert not torch.equal(base.low_res_masks, no_pad.low_res_masks)
    assert torch.equal(hooked.low_res_masks[:, :2], base.low_res_masks[:, :2])
    assert not torch.equal(hooked.low_res_masks[:, 2], base.low_res_masks[:, 2])
    assert not torch.equal(hooked.low_res_masks[:, 3], base.low_res_masks[:, 3])
    assert multi1.ious.shape == (2, T, 1) and multi1.low_res_multimasks.shape == (2, T, 1, 32, 32)


def test_object_score_switch(sam, frames) -> None:
    """A SAM2 whose object-score head says "no object" everywhere: the switch decides whether the
    masks become SAM2's -1024 placeholder (and lose their gradients) or stay usable."""
    absent = copy.deepcopy(sam)
    head = absent.mask_decoder.pred_obj_score_head
    (head.layers[-1] if hasattr(head, "layers") else head).bias.data.fill_(-50.0)
    prompt = _rand(2, 1, 256, seed=3).requires_grad_(True)
    off = absent.propagate(frames, {0: prompt}, object_score=False)
    on = absent.propagate(frames, {0: prompt}, object_score=True)
    assert (on.object_score_logits < 0).all()
    assert (on.low_res_masks == -1024.0).all() and (off.low_res_masks > -1024.0).all()
    off.masks[:, 3].mean().backward()
    assert prompt.grad.abs().sum() > 0


# ---- the sam2 pin -----------------------------------------------------------------------------
def test_installed_sam2_has_the_private_methods_the_layer_calls() -> None:
    missing = missing_private_api()
    assert not missing, (f"sam2 lacks private methods the SAM2 layer calls: {missing}; the layer "
                         f"supports sam2{SAM2_VERSIONS}")


def test_missing_private_method_is_named_in_one_line(monkeypatch) -> None:
    from sam2.modeling.sam2_base import SAM2Base

    monkeypatch.delattr(SAM2Base, "_encode_new_memory")
    with pytest.raises(ConfigError, match=r"lacks private methods.*SAM2Base\._encode_new_memory") as err:
        check_private_api()
    assert SAM2_VERSIONS in err.value.hint
    assert any("_encode_new_memory" in k for k in PRIVATE_API)


def test_pyproject_pins_the_supported_sam2_range() -> None:
    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    pins = re.findall(r'"sam2([<>=!~][^"]*)"', text)
    assert pins == [SAM2_VERSIONS], pins
