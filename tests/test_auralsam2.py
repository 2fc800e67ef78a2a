"""AuralSAM2: the fuser, the decoder injection, prompt-free tracking, the losses, the switches, and
SAM2 staying bit-identical through training."""

from __future__ import annotations

import copy

import pytest
import torch

from avsbench_kit.errors import ConfigError
from avsbench_kit.models.sam2 import ImageFeatures, Injection
from baselines.auralsam2.fuser import AuralFuser, BiFusion, FuserConfig
from baselines.auralsam2.losses import AudioConConfig, audiocon_loss, sample_pixels
from baselines.common.losses import multistep_mask_loss
from baselines.configs import load_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")

S = 64  # SAM2 input size in these tests: fuser grid 4x4
TINY = ["image_size=64", "fuser.visual_blocks=[1,1,0]", "fuser.audio_blocks=1", "fuser.sr_ratio=2",
        "dims.audio=128", "dims.text=64"]


def build(*overrides: str, task: str | None = None):
    from baselines.auralsam2.model import AuralSAM2

    torch.manual_seed(0)
    cfg = load_config("auralsam2", "cpu-small", TINY + list(overrides))
    if task:
        cfg["task"] = task
    return AuralSAM2(cfg)


@pytest.fixture(scope="module")
def model():
    return build()


def make_batch(b: int = 2, t: int = 5, seed: int = 0, text: bool = True) -> dict:
    g = torch.Generator().manual_seed(seed)
    masks = torch.zeros(b, t, 32, 32)
    masks[:, :, 8:20, 10:24] = 1
    masks[0, 1] = 0  # an empty-GT frame
    feats = {"sam2_image": {"fpn0": torch.randn(b, t, 256, S // 4, S // 4, generator=g),
                            "fpn1": torch.randn(b, t, 256, S // 8, S // 8, generator=g),
                            "fpn2": torch.randn(b, t, 256, S // 16, S // 16, generator=g)},
             "logmel_stats": torch.randn(b, t, 128, generator=g)}
    if text:
        feats["distilroberta"] = torch.randn(b, 25, 64, generator=g)
        mask = torch.zeros(b, 25, dtype=torch.bool)
        mask[:, :6] = True
        feats["distilroberta_mask"] = mask
    return {"key": [f"k{i}" for i in range(b)], "masks": masks, "annotated": torch.ones(b, t, dtype=torch.bool),
            "features": feats}


# ---- fuser ---------------------------------------------------------------------------------------
def test_fusion_starts_as_identity_then_mixes() -> None:
    torch.manual_seed(0)
    fusion = BiFusion(32, 16).eval()
    v, a = torch.randn(2, 40, 32), torch.randn(2, 7, 32)
    v2, a2 = fusion(v, a)
    assert torch.allclose(v2, fusion.v_norm(v)) and torch.allclose(a2, fusion.a_norm(a))
    torch.nn.init.ones_(fusion.v_bn.weight)
    v3, _ = fusion(v, a)
    assert not torch.allclose(v3, v2)
    a_other = a.clone()
    a_other[1] += 1.0  # clip 1's audio reaches clip 1's pixels only
    v4, _ = fusion(v, a_other)
    assert torch.equal(v4[0], v3[0]) and not torch.allclose(v4[1], v3[1])


def test_fuser_shapes_and_cross_frame_audio() -> None:
    torch.manual_seed(0)
    fuser = AuralFuser(FuserConfig(visual_blocks=(1, 1, 1), audio_blocks=1, sr_ratio=2)).eval()
    b, t = 2, 3
    levels = (torch.randn(b, t, 256, 16, 16), torch.randn(b, t, 256, 8, 8), torch.randn(b, t, 256, 4, 4))
    tokens = torch.randn(b, t + 4, 256)
    out = fuser(levels, tokens, t)
    assert [d.shape for d in out.dense] == [(b, t, 256, 4, 4)] * 3
    assert [s.shape for s in out.sparse] == [(b, t, 256)] * 3
    assert out.visual_embed[0].shape == (b, t, 128, 4, 4)
    assert torch.allclose(out.audio_embed[2].norm(dim=-1), torch.ones(b, t), atol=1e-5)
    # 1-D blocks see the whole clip: changing second 2's audio changes every second's token
    tokens2 = tokens.clone()
    tokens2[:, 2] += 1.0
    out2 = fuser(levels, tokens2, t)
    assert not torch.allclose(out2.sparse[0][:, 0], out.sparse[0][:, 0])


# ---- tracking ------------------------------------------------------------------------------------
def test_prompt_free_tracking_order_and_memory_grad(model) -> None:
    sam = model.sam
    batch = make_batch()
    lv = batch["features"]["sam2_image"]
    frames = [sam.from_cache({k: v[:, t] for k, v in lv.items()}) for t in range(5)]
    kw = dict(cond_frames=[2], object_score=False, pad_point=False)
    with torch.no_grad():
        out = sam.propagate(frames, **kw)
        changed = list(frames)
        changed[4] = ImageFeatures(tuple(x + 1.0 for x in frames[4].levels))
        out2 = sam.propagate(changed, **kw)
        padded = sam.propagate(frames, cond_frames=[2], object_score=False)  # SAM2's padding point
    assert out.masks.shape == (2, 5, S, S) and out.low_res_multimasks.shape[2] == 3
    assert torch.equal(out.masks[:, :4], out2.masks[:, :4])  # cond 2, then 0, 1, 3: none sees frame 4
    assert not torch.allclose(out.masks, padded.masks)  # no point prompt at all (pad_point=False)
    # memory_grad=False: frame 3's loss reaches frame 3's own injection, not frame 2's (via memory)
    grads = {}
    for memory_grad in (True, False):
        keys = [torch.zeros(2, 256, S // 16, S // 16, requires_grad=True) for _ in range(5)]
        inj = {i: Injection(keys={0: keys[i]}) for i in range(5)}
        tr = sam.propagate(frames, injections=inj, memory_grad=memory_grad, **kw)
        tr.low_res_multimasks[:, 3].sum().backward()
        grads[memory_grad] = [k.grad for k in keys]
    assert grads[True][3].abs().sum() > 0 and grads[True][2].abs().sum() > 0
    assert grads[False][3].abs().sum() > 0 and grads[False][2].abs().sum() == 0  # (stack gives zeros)
    assert torch.allclose(grads[True][3], grads[False][3])


# ---- losses ----------------------------------------------------------------------------------------
def test_hard_easy_sampling() -> None:
    label = torch.zeros(100, dtype=torch.bool)
    label[:30] = True
    pred = torch.zeros(100, dtype=torch.bool)
    pred[:10] = True  # fg: 10 easy, 20 hard; bg: 70 easy, 0 hard
    idx = sample_pixels(label, pred, AudioConConfig(hard=5, easy=5))
    fg, bg = idx[label[idx]], idx[~label[idx]]
    assert len(fg) == 10 and (~pred[fg]).sum() == 5
    assert len(bg) == 10 and not pred[bg].any()  # no hard background: filled with easy ones
    assert len(set(idx.tolist())) == len(idx)


def test_audiocon_prefers_aligned_foreground() -> None:
    b, t, p, g = 1, 2, 8, 4
    target = torch.zeros(b, t, 16, 16)
    target[:, :, :8] = 1
    audio = torch.nn.functional.normalize(torch.randn(b, t, p), dim=-1)
    aligned = torch.zeros(b, t, p, g, g)
    aligned[:, :, :, :2] = audio[..., None, None]
    aligned[:, :, :, 2:] = -audio[..., None, None]
    cfg = AudioConConfig()
    w = torch.ones(b, t, dtype=torch.bool)
    low = audiocon_loss([aligned], [audio], target, torch.zeros(b, t, 16, 16), w, cfg)
    high = audiocon_loss([-aligned], [audio], target, torch.zeros(b, t, 16, 16), w, cfg)
    assert low < high
    empty = audiocon_loss([aligned], [audio], torch.zeros_like(target), torch.zeros(b, t, 16, 16), w, cfg)
    assert empty == 0


# ---- the model -----------------------------------------------------------------------------------
def test_forward_loss_and_gradients(model) -> None:
    model.train()
    batch = make_batch()
    out = model(batch)
    assert out.logits.shape == (2, 5, 224, 224)
    assert out.aux["ious"].shape == (2, 5, 3) and out.aux["object_scores"].shape == (2, 5)
    batch["annotated"][1, 3:] = False
    losses = model.loss(out, batch)
    assert set(losses) == {"total", "focal", "dice", "iou", "class", "audiocon"}
    assert torch.isfinite(losses["total"])
    # SAM2's loss on the annotated frames at image_size², summed over frames / number of clips
    ann = batch["annotated"]
    up = torch.nn.functional.interpolate(out.aux["low_res_multimasks"][ann], size=(S, S), mode="bilinear")
    gt = torch.nn.functional.interpolate(batch["masks"], size=(S, S), mode="nearest")[ann]
    ref = multistep_mask_loss(up, out.aux["ious"][ann], out.aux["object_scores"][ann][:, None], gt,
                              supervise_all_iou=True, num_objects=2)
    assert torch.allclose(losses["focal"], ref["focal"]) and torch.allclose(losses["class"], ref["class"])
    assert torch.allclose(losses["total"], ref["total"] + losses["audiocon"])
    model.zero_grad()
    losses["total"].backward()
    for n, p in model.named_parameters():  # cpu-small trains SAM2's decoder only (sam2.trainable)
        if n.startswith("sam.") and ".sam_mask_decoder." not in n:
            assert not p.requires_grad and p.grad is None, n
    assert model.sam.mask_decoder.iou_prediction_head.layers[0].weight.grad.abs().sum() > 0
    fuser_grads = [p.grad for n, p in model.named_parameters() if n.startswith("fuser.patch_embeds")]
    assert all(g is not None and g.abs().sum() > 0 for g in fuser_grads)
    assert model.text_proj[0].weight.grad.abs().sum() > 0
    model.zero_grad()


def test_text_tokens_only_on_tasks_with_expressions(model) -> None:
    tokens, keep = model._tokens(make_batch(), 2, 5, "cpu")
    assert tokens.shape[1] == 5 + 25 and keep[:, 5:].sum() == 12
    ms3 = build(task="ms3")  # AVSBench has no expressions: no text cache, audio tokens only
    assert [r.encoder for r in ms3.feature_requests()] == ["sam2_image", "logmel_stats"]
    assert ms3.text_proj is None and ms3.modalities() == ("audio", "image")
    assert [r.encoder for r in build(task="refavs").feature_requests()][-1] == "distilroberta"


def test_paper_preset_names_every_missing_weight() -> None:
    from baselines.auralsam2.model import AuralSAM2

    cfg = load_config("auralsam2", "paper")
    cfg["task"] = "refavs"
    missing = AuralSAM2.missing_weights(cfg)
    assert len(missing) == 3 and missing[0].startswith("sam2.checkpoint")
    assert any("vggish" in m for m in missing) and any("distilroberta" in m for m in missing)
    cfg["task"] = "ms3"
    assert len(AuralSAM2.missing_weights(cfg)) == 2
    assert AuralSAM2.missing_weights(load_config("auralsam2", "cpu-small")) == []


def test_switches_and_ablation_keys() -> None:
    off = build("audio=off", "text=off")
    assert [r.encoder for r in off.feature_requests()] == ["sam2_image"]
    assert off.modalities() == ("image",)
    batch = make_batch(text=False)
    del batch["features"]["logmel_stats"]
    off.eval()
    with torch.no_grad():
        assert off(batch).logits.shape == (2, 5, 224, 224)
    req = build().feature_requests()
    assert "levels=[fpn0,fpn1,fpn2]" in req[0].overrides
    ab = build("injection.points=[final]", "injection.levels=[0]", "audiocon.enabled=false",
               "fuser.visual_blocks=[0,0,0]")
    ab.train()
    out = ab(make_batch())
    assert "audiocon" not in ab.loss(out, make_batch())
    with pytest.raises(ConfigError, match="injection.points"):
        build("injection.points=[2]", "injection.levels=[0]")
    with pytest.raises(ConfigError, match="injection.levels"):
        build("injection.levels=[2,1]")
    with pytest.raises(ConfigError, match="eval_cond_frame"):
        build("tracking.eval_cond_frame=centre")


def test_param_groups_exempt_norms_and_tokens(model) -> None:
    groups = {g.name: g for g in model.param_groups()}
    no_decay = {id(p) for g in groups.values() if g.weight_decay == 0.0 for p in g.params}
    named = dict(model.named_parameters())
    assert id(named["fuser.fusions.0.v_norm.weight"]) in no_decay
    assert id(named["fuser.patch_embeds.0.bias"]) in no_decay
    assert id(named["fuser.patch_embeds.0.weight"]) not in no_decay
    total = sum(len(g.params) for g in groups.values())
    assert total == len([p for p in model.parameters() if p.requires_grad])


def _train_two_steps(m, tmp_path) -> None:
    from avsbench_kit.runs.trainer import TrainConfig, Trainer

    batches = [make_batch(seed=s) for s in range(2)]
    Trainer(m, TrainConfig(epochs=1, batch_size=2, lr=1e-3), batches=lambda e: batches,
            num_train_samples=4, ckpt_dir=tmp_path, progress=False).fit()


def test_sam2_bit_identical_after_training(tmp_path) -> None:
    m = build("sam2.trainable=[]")  # the paper's setting (paper.yaml)
    before = copy.deepcopy(m.sam.state_dict())
    fuser_before = m.fuser.patch_embeds[0].weight.detach().clone()
    _train_two_steps(m, tmp_path)
    after = m.sam.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not torch.equal(fuser_before, m.fuser.patch_embeds[0].weight)


def test_trainable_decoder_trains_only_the_decoder(tmp_path) -> None:
    m = build("sam2.trainable=[mask_decoder]")
    before = copy.deepcopy(m.sam.state_dict())
    _train_two_steps(m, tmp_path)
    changed = {k.split(".")[1] for k, v in m.sam.state_dict().items() if not torch.equal(before[k], v)}
    assert changed == {"sam_mask_decoder"}
    assert {g.name for g in m.param_groups()} >= {"fuser", "sam2", "sam2.no_decay"}


@pytest.mark.parametrize("bad", ["sam2.trainable=[image_encoder]", "sam2.trainable=mask_decoder",
                                 "sam2.trainable=[memory_attention]"])
def test_trainable_rejects_unknown_modules_and_memory_without_gradient(bad) -> None:
    with pytest.raises(ConfigError, match="sam2.trainable"):
        build(bad)


def test_paper_preset_keeps_sam2_frozen() -> None:
    assert load_config("auralsam2", "paper", [])["sam2"]["trainable"] == []
