"""SAM2-LOVE: shapes, token propagation / accumulation, memory-propagated inference, switches."""

from __future__ import annotations

import math

import pytest
import torch

from avsbench_kit.errors import ConfigError, DataError
from baselines.base import BaselineOutput, masks_at
from baselines.conformance import build as build_run
from baselines.sam2love.fusion import FusionConfig, FusionTransformer
from baselines.sam2love.model import SAM2LOVE

B, T, A_DIM, L, TXT_DIM, N, V_DIM = 2, 4, 16, 6, 24, 5, 20
# the paper's encoders at toy widths (cpu-small's defaults are the CPU stand-ins)
SMALL = ["features.audio=vggish", "features.text=distilroberta", "features.image=vit",
         "features.text_overrides=[]", f"dims.audio={A_DIM}", f"dims.text={TXT_DIM}", f"dims.image={V_DIM}"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def build(*overrides: str) -> SAM2LOVE:
    """cpu-small with the registry's tiny overrides (64 px, 1 x 32 fusion), built as a run builds it."""
    return build_run("sam2love", "refavs", *SMALL, *overrides)


@pytest.fixture(scope="module")
def model() -> SAM2LOVE:
    return build().eval()


@pytest.fixture(scope="module")
def batch(model: SAM2LOVE) -> dict:
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(B, T, 3, 64, 64, generator=g)
    with torch.no_grad():
        feats = model.sam.features(model.sam.preprocess(frames.flatten(0, 1)))
    cache = {k: v.float().unflatten(0, (B, T)) for k, v in feats.to_cache().items()}
    yy, xx = torch.meshgrid(torch.arange(48), torch.arange(48), indexing="ij")
    masks = torch.stack([torch.stack([((yy - 12 - 4 * t - 8 * b) ** 2 + (xx - 24) ** 2 < 80).float()
                                      for t in range(T)]) for b in range(B)])
    text_mask = torch.ones(B, L, dtype=torch.bool)
    text_mask[1, 4:] = False
    return {"key": ["a", "b"], "masks": masks, "annotated": torch.ones(B, T, dtype=torch.bool),
            "features": {"vggish": torch.randn(B, T, A_DIM, generator=g),
                         "distilroberta": torch.randn(B, L, TXT_DIM, generator=g),
                         "distilroberta_mask": text_mask,
                         "vit": torch.randn(B, T, N, V_DIM, generator=g), "sam2_image": cache}}


def edit(batch: dict, name: str, fn) -> dict:
    feats = dict(batch["features"])
    feats[name] = fn(feats[name])
    return {**batch, "features": feats}


def test_shapes_loss_and_trainable_split(model: SAM2LOVE, batch: dict) -> None:
    with torch.no_grad():
        logits = model(batch).logits
    assert logits.shape == (B, T, 32, 32) and torch.isfinite(logits).all()
    assert model.prompt(batch).shape == (B, 1, 256)
    m = build("train_frames=1", "loss.point_weight=0")
    m.train()
    out = m(batch)
    assert (out.logits[:, 1:] == 0).all() and (out.logits[:, 0] != 0).any()  # paper: frame 0 only
    terms = m.loss(out, batch)
    assert set(terms) == {"total", "bce", "dice"} and terms["total"].requires_grad
    terms["total"].backward()
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    assert any(n.startswith("fusion.") for n in trainable) and "fusion.seg_token" in trainable
    assert any(".sam_mask_decoder." in n for n in trainable)
    assert any(".sam_prompt_encoder." in n for n in trainable)
    assert not any(".image_encoder." in n for n in trainable)
    with_grad = {n for n, p in m.named_parameters() if p.grad is not None}
    assert with_grad <= trainable and "fusion.seg_token" in with_grad
    mults = {g.name: g.lr_mult for g in build("fusion.lr_mult=10").param_groups()}
    assert mults == {"fusion": 10.0, "fusion.no_decay": 10.0, "sam2": 1.0, "sam2.no_decay": 1.0}
    paper_like = build("sam2.train_memory=false")
    assert not any(p.requires_grad for n, p in paper_like.named_parameters()
                   if ".memory_attention." in n or ".memory_encoder." in n)
    assert any(p.requires_grad for n, p in m.named_parameters() if ".memory_attention." in n)


def _fusion(**kw) -> FusionTransformer:
    torch.manual_seed(0)
    return FusionTransformer(FusionConfig(layers=1, width=16, heads=2, ffn=32, **kw), 4, 0, 6).eval()


def test_token_propagation_carries_the_token_from_frame_to_frame() -> None:
    g = torch.Generator().manual_seed(1)
    vision, audio = torch.randn(1, 3, 2, 6, generator=g), torch.randn(1, 3, 4, generator=g)
    changed = vision.clone()
    changed[:, 0] += 1.0  # only frame 0's vision changes
    with torch.no_grad():
        prop = _fusion(accumulation=False)
        final, outs = prop(vision, audio)
        final2, outs2 = prop(changed, audio)
        assert torch.equal(final, outs[-1])
        # with propagation, frame 2's output depends on frame 0 through the token chain
        assert (outs[2] - outs2[2]).abs().max() > 1e-5
        indep = _fusion(accumulation=False, propagation=False)
        _, o1 = indep(vision, audio)
        _, o2 = indep(changed, audio)
        assert torch.equal(o1[2], o2[2]) and not torch.equal(o1[0], o2[0])
        # the input [seg] of frame 1 is frame 0's output: replaying frame 1 alone from it agrees
        prop.seg_token.data = outs[0][0].clone()
        _, replay = prop(vision[:, 1:2], audio)
        assert torch.allclose(replay[0], outs[1], atol=1e-5)


def test_token_accumulation_replays_earlier_cls_tokens() -> None:
    g = torch.Generator().manual_seed(2)
    vision, audio = torch.randn(1, 3, 2, 6, generator=g), torch.randn(1, 3, 4, generator=g)
    cls_changed = vision.clone()
    cls_changed[:, 0, 0] += 1.0  # frame 0's CLS token
    patch_changed = vision.clone()
    patch_changed[:, 0, 1] += 1.0  # a frame-0 patch token
    with torch.no_grad():
        acc = _fusion(propagation=False)  # isolate accumulation: frames fused independently
        _, base = acc(vision, audio)
        _, cls_out = acc(cls_changed, audio)
        _, patch_out = acc(patch_changed, audio)
        # [his] of frame 2 holds frame 0's CLS (not its patches)
        assert (base[2] - cls_out[2]).abs().max() > 1e-5
        assert torch.equal(base[2], patch_out[2])
        last = vision.clone()
        last[:, 2, 0] += 1.0
        _, last_out = acc(last, audio)
        _, base_last = acc(vision, audio)
        assert torch.equal(base_last[1], last_out[1])  # frame 1 never sees frame 2's CLS
        off = _fusion(propagation=False, accumulation=False)
        _, o1 = off(vision, audio)
        _, o2 = off(cls_changed, audio)
        assert torch.equal(o1[2], o2[2])  # without accumulation frame 2 cannot see frame 0
        # paper's indexing: frame 0 has an empty [his] (same output as without accumulation);
        # his_includes_current=true adds the current frame's CLS to it
        assert torch.equal(base[0], o1[0])
        _, current = _fusion(propagation=False, his_includes_current=True)(vision, audio)
        assert not torch.allclose(current[0], base[0])


def test_seg_token_count_gives_k_prompt_tokens(batch: dict) -> None:
    m = build("fusion.seg_tokens=4").eval()
    with torch.no_grad():
        assert m.prompt(batch).shape == (B, 4, 256)
        assert m(batch).logits.shape == (B, T, 32, 32)


def test_inference_propagates_sam2_memory_from_frame_0(model: SAM2LOVE, batch: dict) -> None:
    """Frame k>0 has no [seg] prompt: it depends on frame 0's prompt through SAM2's memory, and on
    the frames in between (their memories), not only on its own image."""
    with torch.no_grad():
        base = model(batch).logits
        frames = model.image_features(batch, T)
        prompt = model.prompt(batch)
        h, w = model.output_size
        direct = model.sam.propagate(frames, {0: prompt}, multimask=model.multimask,
                                     output_size=(h, w), object_score=model.object_score).masks
        assert torch.allclose(direct, base, atol=1e-5)
        other = model.sam.propagate(frames, {0: prompt + 1.0}, multimask=model.multimask,
                                    output_size=(h, w), object_score=model.object_score).masks
        for k in range(1, T):
            assert (other[:, k] - base[:, k]).abs().max() > 1e-4, k
        # change only frame 1's image: frames 2.. change (memory), frame 0 does not
        cache = {n: v.clone() for n, v in batch["features"]["sam2_image"].items()}
        for v in cache.values():
            v[:, 1] = v[:, 1].flip(-1)
        moved = model({**batch, "features": {**batch["features"], "sam2_image": cache}}).logits
        assert torch.equal(moved[:, 0], base[:, 0])
        for k in range(2, T):
            assert (moved[:, k] - base[:, k]).abs().max() > 1e-4, k
        # audio and text reach every frame through the frame-0 prompt
        louder = model(edit(batch, "vggish", lambda a: a + 1.0)).logits
        assert (louder[:, T - 1] - base[:, T - 1]).abs().max() > 0  # small with random SAM2, never 0


def test_modality_switches_drop_feature_requests_and_inputs(batch: dict) -> None:
    full = build()
    assert [r.encoder for r in full.feature_requests()] == ["vggish", "distilroberta", "vit", "sam2_image"]
    def switched_off(kind: str) -> SAM2LOVE:  # the other variant's keys may not be overridden
        keep = [o for o in SMALL if not o.startswith((f"features.{kind}", f"dims.{kind}"))]
        return build_run("sam2love", "refavs", *keep, f"{kind}=off").eval()

    no_audio, no_text = switched_off("audio"), switched_off("text")
    assert [r.encoder for r in no_audio.feature_requests()] == ["distilroberta", "vit", "sam2_image"]
    assert [r.encoder for r in no_text.feature_requests()] == ["vggish", "vit", "sam2_image"]
    assert no_audio.fusion.audio_proj is None and no_text.fusion.text_proj is None
    assert no_audio.modalities() == ("image", "text") and no_text.modalities() == ("audio", "image")
    without_audio = {**batch, "features": {k: v for k, v in batch["features"].items() if k != "vggish"}}
    with torch.no_grad():
        assert no_audio(without_audio).logits.shape == (B, T, 32, 32)  # never reads audio
        assert torch.equal(no_text(batch).logits,
                           no_text(edit(batch, "distilroberta", torch.zeros_like)).logits)
        with pytest.raises(DataError, match="vggish"):
            full.eval()(without_audio)


def test_text_padding_is_masked(model: SAM2LOVE, batch: dict) -> None:
    def scramble_padding(x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        x[1, 4:] = 100.0  # padded positions of clip b
        return x

    with torch.no_grad():
        assert torch.allclose(model.prompt(batch), model.prompt(edit(batch, "distilroberta",
                                                                      scramble_padding)), atol=1e-5)


def test_bad_config_and_missing_weights_fail_in_one_line() -> None:
    with pytest.raises(ConfigError, match="fusion.width=31 is not divisible"):
        build("fusion.width=31")
    with pytest.raises(ConfigError, match="fusion.positional"):
        build("fusion.positional=rope")
    with pytest.raises(ConfigError, match=r"fusion.lr_mult=0.0 must be > 0"):
        build("fusion.lr_mult=0")
    from avsbench_kit.runs.run import RunRequest, check_weights, resolve_config

    def missing(*overrides: str) -> str:
        req = RunRequest.parse(["baseline=sam2love", "config=paper", "dataset=synth-refavs", *overrides])
        with pytest.raises(ConfigError) as info:
            check_weights(req, resolve_config(req))
        return str(info.value)

    msg = missing()
    assert "\n" not in msg
    for needed in ("sam2.checkpoint", "vggish", "distilroberta", "vit"):
        assert needed in msg, msg
    partial = missing("features.image_overrides=[weights=/w/vit]", "audio=off")
    assert "sam2.checkpoint" in partial and "distilroberta" in partial
    assert "(vit" not in partial and "vggish" not in partial  # given, or not read with audio=off


def test_synth_expression_kind_is_recovered_from_the_text() -> None:
    """The per-kind J breakdown in docs/baselines.md reads the kind back from the expression."""
    from avsbench_kit.data.synth_scenes import _TEMPLATES, SOUND_FORMS, expression_kind, sound_form
    from avsbench_kit.data.synth_world import CLASSES

    for kind, templates in _TEMPLATES.items():
        for template in templates:
            for c in CLASSES:
                text = template.format(colour=c.colour, shape=c.shape, sound=c.sound_text)
                assert expression_kind(text) == kind, text
                assert sound_form(text) == ("named" if kind == "sound" else None), text
    for form, templates in SOUND_FORMS.items():  # refavs.sound_style=relational
        for text in templates:
            assert (expression_kind(text), sound_form(text)) == ("sound", form), text
    assert expression_kind("the dog on the left") is None and sound_form("the dog on the left") is None


def test_prompt_frames_all_decodes_every_frame_from_its_own_prompt(batch: dict) -> None:
    """``prompt_frames=all`` (diagnostic for random SAM2): every frame is a conditioning frame, so
    no frame reads another's memory — changing frame 1's image changes frame 1 only."""
    model = build("prompt_frames=all").eval()
    with torch.no_grad():
        base = model(batch).logits
        cache = {n: v.clone() for n, v in batch["features"]["sam2_image"].items()}
        for v in cache.values():
            v[:, 1] = v[:, 1].flip(-1)
        moved = model({**batch, "features": {**batch["features"], "sam2_image": cache}}).logits
    assert (moved[:, 1] - base[:, 1]).abs().max() > 1e-4
    for k in (0, 2, 3):
        assert torch.equal(moved[:, k], base[:, k]), k
    with pytest.raises(ConfigError, match="prompt_frames"):
        build("prompt_frames=middle")


def test_point_prompt_loss_draws_its_points_inside_the_ground_truth(batch: dict, monkeypatch) -> None:
    m = build("train_frames=1", "loss.point_weight=0.5").train()
    seen = []
    decode = m.sam.decode

    def spy(frame, **kw):
        seen.append(kw["points"])
        return decode(frame, **kw)

    monkeypatch.setattr(m.sam, "decode", spy)
    empty = {**batch, "masks": batch["masks"].clone()}
    empty["masks"][1, 2] = 0  # clip 1, frame 2 has nothing to point at: not scored
    torch.manual_seed(0)
    out = m(empty)
    (coords, labels), = seen  # one decoder call for all B x T frames
    gt = masks_at(empty["masks"], (m.image_size,) * 2).flatten(0, 1)
    inside = gt[torch.arange(B * T), coords[:, 0, 1].long(), coords[:, 0, 0].long()]
    keep = out.aux["point_keep"]
    assert (labels == 1).all() and keep.shape == (B, T) and not keep[1, 2] and keep.sum() == B * T - 1
    assert (inside[keep.flatten()] == 1).all()
    assert out.aux["point_logits"].shape == out.logits.shape
    terms = m.loss(out, empty)
    base = m.loss(BaselineOutput(out.logits, {}), empty)
    assert set(terms) == {"total", "bce", "dice", "point"} and terms["point"] > 0
    assert torch.allclose(terms["total"], base["total"] + 0.5 * terms["point"])
    terms["total"].backward()
    assert m.sam.prompt_encoder.point_embeddings[1].weight.grad.abs().sum() > 0  # the positive-point embedding learns
    with torch.no_grad():
        assert "point_logits" not in m.eval()(batch).aux  # inference never sees a GT point
    off = build("train_frames=1", "loss.point_weight=0").train()
    assert "point_logits" not in off(batch).aux
    with pytest.raises(ConfigError, match="loss.point_weight"):
        build("loss.point_weight=-1")


def test_prompt_diagnostics_tell_a_read_prompt_from_a_constant_one(batch: dict) -> None:
    from baselines.sam2love.analysis import prompt_diagnostics

    m = build()
    live = prompt_diagnostics(m, [batch])
    assert live["samples"] == B and live["cos"] < 0.9999 and live["spread"] > 1e-4
    assert live["roll_text"] > 0 and live["roll_audio"] > 0 and live["random_prompt"] > 0
    with torch.no_grad():
        m.prompt_proj[2].weight.zero_()  # the prompt is now the bias alone: the same for every clip
    dead = prompt_diagnostics(m, [batch])
    assert dead["spread"] < 1e-6 and dead["roll_text"] == 0 and dead["roll_audio"] == 0
    assert dead["random_prompt"] > 0  # the decoder still reads whatever prompt it is given
    with pytest.raises(ValueError, match="no batches"):
        prompt_diagnostics(m, [])


def test_points_stage_trains_the_decoder_on_points_alone(batch: dict) -> None:
    """cpu-small-points (stage 1): only the point-prompted loss reaches the weights; the fusion
    gets no gradient; `then=cpu-small` chains the [seg] stage from it."""
    from avsbench_kit.runs.run import RunRequest, stage_requests

    m = build_run("sam2love", "refavs", "config=cpu-small-points", "features.image=vit", f"dims.image={V_DIM}").train()
    assert not m.use_audio and not m.use_text  # one stage-1 run serves every modality variant
    out = m(batch)
    terms = m.loss(out, batch)
    assert torch.equal(terms["total"], terms["point"]) and terms["bce"] > 0
    terms["total"].backward()
    assert all(p.grad is None or not p.grad.any() for n, p in m.named_parameters() if n.startswith("fusion."))
    assert m.sam.prompt_encoder.point_embeddings[1].weight.grad.abs().sum() > 0
    from avsbench_kit.runs.trainer import load_trainable_state, trainable_state

    state = trainable_state(m, [p for g in m.param_groups() for p in g.params])
    for off in ("", "text", "audio"):  # the vision-only stage 1 fits each stage 2
        keep = [o for o in SMALL if not off or off not in o.split("=")[0]]
        stage2 = build_run("sam2love", "refavs", *keep, *([f"{off}=off"] if off else []))
        assert load_trainable_state(stage2, state) == len(state)
        assert torch.equal(stage2.sam.mask_decoder.iou_token.weight, m.sam.mask_decoder.iou_token.weight)
    req = RunRequest.parse(["baseline=sam2love", "dataset=synth-refavs", "config=cpu-small-points",
                            "then=cpu-small"])
    assert [(s.config, s.init_from) for s in stage_requests(req)] == [("cpu-small", "")]


def assert_trains_the_fusion_alone(loss_key: str, batch: dict) -> None:
    """With the mask losses off, ``loss_key``'s gradient reaches the fusion and not the decoder."""
    alone = build("train_frames=1", loss_key, "loss.bce_weight=0", "loss.dice_weight=0").train()
    alone.loss(alone(batch), batch)["total"].backward()
    assert alone.fusion.text_proj[0].weight.grad.abs().sum() > 0
    assert all(p.grad is None or not p.grad.any() for p in alone.sam.mask_decoder.parameters())


def test_pixel_contrast_loss_scores_the_prompt_against_pooled_ground_truth(batch: dict) -> None:
    """loss.pixel_weight: the [seg] prompt dotted with each stride-16 SAM2 cell, BCE + Dice against the
    area-pooled mask of every annotated frame; its gradient reaches the fusion without the decoder."""
    m = build("train_frames=1", "loss.pixel_weight=2").train()
    out = m(batch)
    sim = out.aux["pixel_logits"]
    top = m.all_frame_features(batch).levels[2]
    assert sim.shape == (B, T, *top.shape[-2:])
    p = out.aux["prompt"].mean(1)
    expect = (top[T + 1] * p[1].view(-1, 1, 1)).sum(0) / top.shape[1] ** 0.5  # clip 1, frame 1
    assert torch.allclose(sim[1, 1], expect, atol=1e-5)
    terms = m.loss(out, batch)
    base = m.loss(BaselineOutput(out.logits, {}), batch)
    assert set(terms) == {"total", "bce", "dice", "pixel"} and terms["pixel"] > 0
    assert torch.allclose(terms["total"], base["total"] + 2 * terms["pixel"])
    skip = {**batch, "annotated": batch["annotated"].clone()}
    skip["annotated"][:, 1:] = False  # unannotated frames are not scored
    assert not torch.isclose(m.loss(out, skip)["pixel"], terms["pixel"])
    assert_trains_the_fusion_alone("loss.pixel_weight=1", batch)
    with torch.no_grad():
        assert "pixel_logits" not in m.eval()(batch).aux  # a training signal only
    assert "pixel_logits" not in build("train_frames=1").train()(batch).aux
    with pytest.raises(ConfigError, match="loss.pixel_weight"):
        build("loss.pixel_weight=-1")


def test_category_loss_names_the_target_from_the_fused_token(batch: dict) -> None:
    """loss.category_weight: cross-entropy of the fused [seg] against the hashed category, null rows
    left out; its gradient reaches the fusion without the decoder; no head (and no parameter) when off."""
    from baselines.sam2love.model import category_bucket

    labelled = {**batch, "category": ["dog", "null"], "is_null": torch.tensor([False, True])}
    m = build("train_frames=1", "loss.category_weight=3", "loss.category_buckets=7").train()
    out = m(labelled)
    logits = out.aux["category_logits"]
    assert logits.shape == (B, 7) and 0 <= category_bucket("dog", 7) < 7
    terms = m.loss(out, labelled)
    expect = torch.nn.functional.cross_entropy(logits[:1], torch.tensor([category_bucket("dog", 7)]))
    assert torch.allclose(terms["category"], expect)  # the null row is not scored
    base = m.loss(BaselineOutput(out.logits, {}), labelled)
    assert torch.allclose(terms["total"], base["total"] + 3 * expect)
    both = {**labelled, "is_null": torch.tensor([False, False])}
    assert not torch.isclose(m.loss(out, both)["category"], expect)
    nulls = {**labelled, "is_null": torch.tensor([True, True])}
    assert m.loss(out, nulls)["category"] == 0
    assert_trains_the_fusion_alone("loss.category_weight=1", labelled)
    with torch.no_grad():
        assert "category_logits" not in m.eval()(labelled).aux  # a training signal only
    off = build("train_frames=1")
    assert off.category_head is None and "category_logits" not in off.train()(labelled).aux
    assert category_bucket("dog", 1024) == category_bucket("dog", 1024) != category_bucket("cat", 1024)
    with pytest.raises(ConfigError, match="loss.category_weight"):
        build("loss.category_weight=-1")
    with pytest.raises(ConfigError, match="loss.category_buckets"):
        build("loss.category_weight=1", "loss.category_buckets=0")


def test_ridge_oracle_tells_a_per_look_read_out_from_a_shared_one() -> None:
    from baselines.sam2love.oracle import ridge_oracle

    g = torch.Generator().manual_seed(0)
    w = torch.nn.functional.normalize(torch.randn(8, generator=g), dim=0)
    weights = {"red square": w, "blue star": -w}  # opposite looks: no one read-out serves both
    samples = []
    for look, w in weights.items():
        for _ in range(6):  # the target is the cells where this look's own direction is large
            x = torch.randn(64, 8, generator=g)
            samples.append((look, x, (x @ w > 1).float()))
    r = ridge_oracle(samples)
    assert r["looks"] == 2 and r["scored"] == 4
    assert r["per_look"] > 0.4 and r["shared"] < 0.2
    with pytest.raises(DataError, match="at least 3"):
        ridge_oracle(samples[:2])


def test_audio_oracle_finds_a_target_class_the_audio_carries_and_not_one_it_does_not() -> None:
    from baselines.sam2love.oracle import audio_oracle, onset_features

    g = torch.Generator().manual_seed(0)
    classes = ["horn", "bell", "drum"]
    tone = {c: torch.randn(16, generator=g) for c in classes}

    def clip(target: str) -> torch.Tensor:  # silence, then the target's tone from second 3 on
        audio = 0.1 * torch.randn(10, 16, generator=g)
        audio[3:] += tone[target]
        return onset_features(audio, first=True)

    assert clip("horn").shape == (2 * 10 * 16 + 1,)
    train = [(clip(c), c) for c in classes for _ in range(8)]
    test = [(clip(c), c) for c in classes for _ in range(4)]
    r = audio_oracle(train, test, ridge=1.0)
    assert r["accuracy"] == 1.0 and r["chance"] == pytest.approx(1 / 3) and r["scored"] == 12
    shuffled = [(x, classes[i % 3]) for i, (x, _) in enumerate(train)]
    unrelated = audio_oracle(shuffled, [(x, classes[(i + 1) % 3]) for i, (x, _) in enumerate(test)], ridge=1.0)
    assert unrelated["accuracy"] < 0.7  # labels the audio does not carry are not read from it
    with pytest.raises(DataError, match="onset"):
        audio_oracle(train[:1], test)


def test_decoder_oracle_trains_the_decoder_and_scores_real_and_rolled_text(batch: dict) -> None:
    from baselines.sam2love.oracle import decoder_oracle, some_frames

    m = build("train_frames=1")
    feats = dict(batch["features"])
    feats["distilroberta_pooled"] = feats["distilroberta"].mean(1)
    b = {**batch, "features": feats}
    before = m.sam.mask_decoder.output_hypernetworks_mlps[0].layers[0].weight.clone()
    seen = []
    hist = decoder_oracle(m, lambda epoch: seen.append(epoch) or [b], lambda: [b],
                          {"a": "appearance", "b": "sound"}, epochs=2, lr=1e-3, frames=1, every=2)
    assert seen == [0, 1] and [e for e, _ in hist] == [2]  # scored every 2nd epoch only
    (_, scores), = hist
    assert set(scores) == {"real", "rolled"} and set(scores["real"]) == {"appearance", "sound"}
    assert all(0 <= v <= 1 for v in scores["real"].values())
    assert not torch.equal(before, m.sam.mask_decoder.output_hypernetworks_mlps[0].layers[0].weight)
    g = torch.Generator().manual_seed(0)
    one = some_frames(b, 1, g)
    assert one["masks"].shape == (B, 1, *b["masks"].shape[-2:])
    assert one["features"]["sam2_image"]["fpn2"].shape[:2] == (B, 1)
    empty = {**b, "masks": b["masks"].clone()}
    empty["masks"][:, :-1] = 0  # only the last frame has a target: it is the one kept
    assert torch.equal(some_frames(empty, 1, g)["masks"][:, 0], empty["masks"][:, -1])
    with pytest.raises(DataError, match="pooled"):
        decoder_oracle(m, lambda epoch: [batch], lambda: [batch], {}, epochs=1, lr=1e-3)


def test_analysis_groups_seeds_of_one_variant_and_nothing_else() -> None:
    from types import SimpleNamespace

    from baselines.sam2love.analysis import variant_key

    def rec(*overrides: str, config: str = "cpu-small", init: str = "", mode: str = "train+eval"):
        return SimpleNamespace(overrides=list(overrides), config_name=config, mode=mode,
                               init_from={"config_name": init, "run_id": "x"} if init else {})

    stage2 = [variant_key(rec(f"seed={s}", "text=off", init="cpu-small-points")) for s in (0, 1)]
    assert stage2[0] == stage2[1] == ("init_from=cpu-small-points", "text=off")
    keys = {variant_key(rec("seed=0", "text=off")),                              # one stage
            variant_key(rec("seed=0", "text=off", config="cpu-small-points")),   # stage 1
            stage2[0], variant_key(rec("seed=0", "text=off", mode="eval"))}
    assert len(keys) == 4


def test_analysis_takes_only_runs_scored_on_the_prepared_dataset_of_the_home() -> None:
    """SynthAVS sample keys repeat across generator seeds with other texts: a run scored on another
    preparation of the same dataset name must not be read against this manifest."""
    from types import SimpleNamespace

    from baselines.sam2love.analysis import scored_on

    manifest = SimpleNamespace(dataset="synth-refavs", fingerprint="f1")
    assert scored_on(SimpleNamespace(dataset="synth-refavs", dataset_fingerprint="f1"), manifest)
    assert not scored_on(SimpleNamespace(dataset="synth-refavs", dataset_fingerprint="f0"), manifest)
    assert not scored_on(SimpleNamespace(dataset="synth-s4", dataset_fingerprint="f1"), manifest)


def test_category_accuracy_counts_per_kind_and_shows_what_the_audio_carries() -> None:
    """A fusion whose token is the audio (16 buckets: the four categories do not collide) names every
    target with its own audio and none with another clip's (never a row of the same clip); null
    rows are not counted; no head is a one-line error."""
    from types import SimpleNamespace

    from baselines.sam2love.analysis import category_accuracy
    from baselines.sam2love.model import category_bucket

    cats = ["bell", "drum", "siren", "null"]
    onehot = torch.nn.functional.one_hot(torch.tensor([category_bucket(c, 16) for c in cats]), 16).float()
    fake = SimpleNamespace(names={"audio": "aud"}, category_buckets=16, eval=lambda: None,
                           fuse=lambda b: (b["features"]["aud"][:, None, :], []),
                           category_head=lambda x: x)
    batch = {"key": ["k0", "k1", "k2", "k3"], "category": cats, "is_null": torch.tensor([False, False, False, True]),
             "features": {"aud": onehot}}
    kinds = {"k0": "first", "k1": "first", "k2": "sound", "k3": "sound"}
    acc = category_accuracy(fake, [batch], kinds, {"k0": "c0", "k1": "c1", "k2": "c2", "k3": "c3"})
    assert acc["first"] == {"n": 2, "own": 1.0, "other_audio": 0.0}
    assert acc["sound"] == {"n": 1, "own": 1.0, "other_audio": 0.0}  # the null row is not counted
    # k0 and k1 share a clip: k0 borrows k2's audio (wrong), k1 k2's too; k2 borrows k3's (null)
    same = category_accuracy(fake, [batch], kinds, {"k0": "c0", "k1": "c0", "k2": "c2", "k3": "c2"})
    assert same["first"]["other_audio"] == 0.0 and same["first"]["own"] == 1.0
    alone = category_accuracy(fake, [batch], kinds, dict.fromkeys(kinds, "c0"))
    assert "other_audio" not in alone["first"]  # one clip: no other audio to borrow
    with pytest.raises(DataError, match="category head"):
        category_accuracy(SimpleNamespace(category_head=None), [batch], {}, {})


def test_run_summary_reads_j_by_kind_over_both_test_splits_and_each_alone() -> None:
    from types import SimpleNamespace

    import pandas as pd

    from baselines.sam2love.analysis import run_summary

    samples = pd.DataFrame({"sample_key": ["a", "b", "c", "d"], "split": ["test_s", "test_s", "test_u", "test_n"],
                            "J": [0.2, 0.4, 0.9, 0.0]})
    kinds = {"a": "first", "b": "sound", "c": "first", "d": "sound"}
    record = SimpleNamespace(metrics={"test_s": {"refavs-v1": {"J&F": 0.5}}})
    out = run_summary(record, samples, kinds, "refavs-v1")
    assert out["test_s/J&F"] == 0.5 and math.isnan(out["test_u/J&F"])
    assert out["kind/first"] == pytest.approx(0.55) and out["test_s/kind/first"] == pytest.approx(0.2)
    assert out["test_u/kind/first"] == pytest.approx(0.9) and out["kind/sound"] == pytest.approx(0.4)  # test_n left out
    assert math.isnan(out["test_u/kind/sound"])


def test_paired_kind_gain_averages_seeds_per_expression_and_brackets_the_gain() -> None:
    import pandas as pd

    from baselines.sam2love.analysis import paired_kind_gain

    def table(js: list[float]) -> pd.DataFrame:
        return pd.DataFrame({"sample_key": ["a", "b", "c", "d"], "split": ["test_s"] * 3 + ["test_u"], "J": js})

    kinds = {"a": "first", "b": "first", "c": "sound", "d": "first"}
    a = [table([0.6, 0.4, 0.5, 0.0]), table([0.8, 0.6, 0.5, 0.0])]   # per-expression mean 0.7, 0.5, 0.5
    b = [table([0.5, 0.5, 0.5, 1.0])]
    gain = paired_kind_gain(a, b, kinds, resamples=200)
    assert gain["first"]["n"] == 2 and gain["first"]["gain"] == pytest.approx(0.1)   # test_u's "d" left out
    assert gain["first"]["low"] == pytest.approx(0.0) and gain["first"]["high"] == pytest.approx(0.2)
    assert gain["sound"]["gain"] == pytest.approx(0.0) and "last" not in gain
    assert "onset - appearance" not in gain  # no appearance expression to compare with
    assert gain["first"]["per_seed"] == []  # two runs against one: no seed-by-seed pairs


def test_kind_contrast_and_the_clip_bootstrap() -> None:
    """Onset expressions gain 0.3 more than appearance ones in every clip: the contrast is 0.3 with
    a degenerate interval. A gain shared by a clip's expressions (+1 in half the clips, -1 in the
    others) is far less certain when whole clips are drawn than when expressions are."""
    import pandas as pd

    from baselines.sam2love.analysis import paired_kind_gain

    keys = [f"k{i}" for i in range(40)]
    kinds = {k: ("first", "last", "appearance", "sound")[i % 4] for i, k in enumerate(keys)}
    clips = {k: f"c{i // 4}" for i, k in enumerate(keys)}   # 10 clips, one expression of each kind
    base = [0.4 + 0.3 * (kinds[k] in ("first", "last")) for k in keys]
    a = [pd.DataFrame({"sample_key": keys, "split": "test_s", "J": base})]
    b = [pd.DataFrame({"sample_key": keys, "split": "test_s", "J": [0.4] * 40})]
    gain = paired_kind_gain(a, b, kinds, resamples=300, clips=clips)
    onset = gain["onset - appearance"]
    assert onset["n"] == 20 and onset["gain"] == pytest.approx(0.3)
    assert onset["low"] == pytest.approx(0.3) and onset["high"] == pytest.approx(0.3)
    assert gain["sound - appearance"]["gain"] == pytest.approx(0.0)
    assert onset["per_seed"] == [pytest.approx(0.3)] and gain["first"]["per_seed"] == [pytest.approx(0.3)]
    qualified = paired_kind_gain(a, b, {k: f"{v}/x" for k, v in kinds.items()}, resamples=50)
    assert list(qualified)[:4] == ["appearance/x", "sound/x", "first/x", "last/x"]
    assert qualified["onset - appearance"]["gain"] == pytest.approx(0.3)  # contrasts read the kind part

    shared = [0.5 + 0.4 * (1 if int(clips[k][1:]) % 2 else -1) for k in keys]
    a = [pd.DataFrame({"sample_key": keys, "split": "test_s", "J": shared})]
    b = [pd.DataFrame({"sample_key": keys, "split": "test_s", "J": [0.5] * 40})]
    all_first = dict.fromkeys(keys, "first")   # four expressions per clip
    by_clip = paired_kind_gain(a, b, all_first, resamples=500, clips=clips)["first"]
    by_expr = paired_kind_gain(a, b, all_first, resamples=500)["first"]
    assert by_clip["gain"] == by_expr["gain"] == pytest.approx(0.0)
    assert by_clip["high"] - by_clip["low"] > 1.5 * (by_expr["high"] - by_expr["low"])


def test_look_labels_tell_look_alike_targets_from_unique_ones(tmp_path) -> None:
    """horn and buzzer share a look (red square) in SynthAVS; a null folder reads its host's scene."""
    import json
    from types import SimpleNamespace

    import pandas as pd

    from baselines.sam2love.analysis import look_labels

    scene = {"name": "c0", "objects": [{"class": "horn", "fid": 0}, {"class": "buzzer", "fid": 1},
                                       {"class": "bell", "fid": 2}]}
    (tmp_path / "synth_scenes.json").write_text(json.dumps({
        "refavs": [scene], "refavs_null": [{"host": "c0", "kind": "null_s", "split": "test_s"}]}))
    rows = [{"sample_key": "a", "clip": "c0", "fid": 1}, {"sample_key": "b", "clip": "c0", "fid": 2},
            {"sample_key": "n", "clip": "null_s-c0", "fid": -1}]
    manifest = SimpleNamespace(root=str(tmp_path / "REFAVS"), dataset="synth-refavs",
                               df=pd.DataFrame(rows), rows=lambda split: rows)
    labels = look_labels(manifest, "test_s", {"a": "sound", "b": "first", "n": None})
    assert labels == {"a": "sound/look shared", "b": "first/look unique"}
    with pytest.raises(DataError, match="synth_scenes.json"):
        look_labels(SimpleNamespace(root=str(tmp_path / "none" / "x"), dataset="d", df=manifest.df,
                                    rows=lambda split: rows), "test_s", {})


def test_form_labels_qualify_sound_expressions_only() -> None:
    """--by-form: a sound expression gets how it refers (named sound or a relational form),
    after any look qualifier; other kinds and unlabelled rows are left as they are."""
    from baselines.sam2love.analysis import form_labels

    rows = [{"sample_key": "a", "text": "the object making the longest sound"},
            {"sample_key": "b", "text": "the object making a ringing chime"},
            {"sample_key": "c", "text": "the first object to make a sound"},
            {"sample_key": "n", "text": "the red square"}]
    kinds = {"a": "sound/look shared", "b": "sound", "c": "first", "n": None}
    assert form_labels(rows, kinds) == {"a": "sound/look shared/longest", "b": "sound/named", "c": "first", "n": None}
