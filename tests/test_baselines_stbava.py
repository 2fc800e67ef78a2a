"""ST-BAVA: the fusion's attention sharing and axes, both backbones at tiny size, stages, switches."""

from __future__ import annotations

import pytest
import torch

from avsbench_kit.errors import ConfigError
from avsbench_kit.models.sam2 import ImageFeatures
from baselines.configs import load_config
from baselines.stbava.fusion import STBAVA, MultiHeadAttention, STBAVABlock, TemporalAttention
from baselines.stbava.model import STBAVAModel

B, T, C, G = 2, 4, 256, 3  # clips, frames, width, grid side (G*G pixels)
TINY = ["features.audio_dim=16", "output_size=48", "layers=1"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def build(*overrides: str, preset: str = "cpu-small") -> STBAVAModel:
    return STBAVAModel.from_config(load_config("stbava", preset, TINY + list(overrides)))


def make_batch(t: int = T) -> dict:
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(48), torch.arange(48), indexing="ij")
    masks = torch.stack([torch.stack([((yy - 12 - 4 * i - 6 * b) ** 2 + (xx - 24) ** 2 < 90).float()
                                      for i in range(t)]) for b in range(B)])
    annotated = torch.ones(B, t, dtype=torch.bool)
    annotated[0, 1:] = False  # clip 0 is S4-like: only its first frame has a mask
    return {"key": ["a", "b"], "masks": masks, "annotated": annotated,
            "features": {"logmel_stats": torch.randn(B, t, 16, generator=g)},
            "frames": torch.rand(B, t, 3, 40, 40, generator=g)}


# ---- the fusion block ------------------------------------------------------------------------
def _inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, G * G, C, generator=g)
    a = torch.randn(B, T, C, generator=g)
    return x, a, torch.randn(G * G, C, generator=g), torch.randn(B, T, C, generator=g)


def test_attention_modules_are_shared_between_the_two_directions() -> None:
    """Each attention module runs once per direction: twice per block. Separate modules for the
    visual->audio and audio->visual halves would each run once (and double the attention weights)."""
    block = STBAVABlock(C, 8, 0.0).eval()
    attns = [m for m in block.modules() if isinstance(m, MultiHeadAttention)]
    assert len(attns) == 2 and block.temporal.attn in attns and block.spatial.attn in attns
    calls: list[int] = []
    for m in attns:
        m.register_forward_hook(lambda mod, _i, _o: calls.append(id(mod)))
    block(*_inputs())
    assert calls == [id(block.temporal.attn), id(block.spatial.attn)] * 2
    # weights: 2 attention modules (4 linears each) + 4 MLPs (2 linears) + 8 LayerNorms
    lin = C * C + C
    assert sum(p.numel() for p in block.parameters()) == 2 * 4 * lin + 4 * 2 * lin + 8 * 2 * C


def test_unidirectional_block_updates_no_audio_and_uses_each_attention_once() -> None:
    block = STBAVABlock(C, 8, 0.0, bidirectional=False).eval()
    calls: list[str] = []
    block.temporal.attn.register_forward_hook(lambda *_: calls.append("temporal"))
    block.spatial.attn.register_forward_hook(lambda *_: calls.append("spatial"))
    x, a, pv, pa = _inputs()
    _, a_out = block(x, a, pv, pa)
    assert calls == ["temporal", "spatial"]  # audio -> visual only
    pre_only = block.norms["pre_a"](a + block.pre_a(a))
    assert torch.allclose(a_out, pre_only)


def test_temporal_attention_runs_along_frames_at_each_pixel() -> None:
    att = TemporalAttention(C, 8, 0.0).eval()
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(B, T, G * G, C, generator=g) for _ in range(3))
    out = att(q, k, v)
    assert out.shape == (B, T, G * G, C)
    perm = torch.randperm(G * G, generator=g)
    # permuting the pixels commutes with the attention (pixels are a batch axis, not the sequence)
    assert torch.allclose(att(q[:, :, perm], k[:, :, perm], v[:, :, perm]), out[:, :, perm], atol=1e-5)
    # changing frame t at pixel p changes the other frames' outputs at pixel p, and nothing else
    t, p = 2, 4
    k2, v2 = k.clone(), v.clone()
    k2[:, t, p] += 3.0
    v2[:, t, p] += 3.0
    diff = (att(q, k2, v2) - out).abs().amax(dim=-1)  # [B,T,N]
    others = torch.ones(G * G, dtype=torch.bool)
    others[p] = False
    assert diff[:, :, others].max() < 1e-5
    assert (diff[:, [f for f in range(T) if f != t], p] > 1e-3).all()


def test_temporal_attention_broadcasts_a_shared_token_like_repeating_it() -> None:
    att = TemporalAttention(C, 8, 0.0).eval()
    g = torch.Generator().manual_seed(2)
    q = torch.randn(B, T, G * G, C, generator=g)
    a = torch.randn(B, T, 1, C, generator=g)
    repeated = a.expand(-1, -1, G * G, -1).contiguous()
    assert torch.allclose(att(q, a, a), att(q, repeated, repeated), atol=1e-5)


@pytest.mark.parametrize("temporal", [True, False])
def test_frames_interact_only_through_temporal_attention(temporal: bool) -> None:
    """With audio->visual attention only, frame t's visual input reaches other frames only through
    the temporal attention: the ``temporal=off`` ablation keeps the frames independent."""
    fusion = STBAVA(1, C, 8, 0.0, temporal=temporal, bidirectional=False).eval()
    g = torch.Generator().manual_seed(3)
    vis = torch.randn(B, T, C, G, G, generator=g)
    audio = torch.randn(B, T, C, generator=g)
    pe = torch.randn(C, G, G, generator=g)
    out, _ = fusion(vis, audio, pe)
    vis2 = vis.clone()
    vis2[:, 1] += 1.0
    out2, _ = fusion(vis2, audio, pe)
    changed = (out2 - out).abs().amax(dim=(2, 3, 4))  # [B,T]
    assert (changed[:, 1] > 1e-3).all()
    if temporal:
        assert (changed[:, [0, 2, 3]] > 1e-4).all()
    else:
        assert changed[:, [0, 2, 3]].max() < 1e-6


def test_final_audio_residual_and_shapes() -> None:
    fusion = STBAVA(2, C, 8, 0.0).eval()
    vis, audio = torch.randn(B, T, C, G, G), torch.randn(B, T, C)
    v_out, a_out = fusion(vis, audio, torch.randn(C, G, G))
    assert v_out.shape == vis.shape and a_out.shape == audio.shape
    assert len(fusion.blocks) == 2


# ---- the model on both backbones ---------------------------------------------------------------
@pytest.fixture(scope="module", params=["sam", "sam2"])
def model(request) -> STBAVAModel:
    return build(f"backbone={request.param}")


def test_forward_shapes_training_frames_and_loss(model: STBAVAModel) -> None:
    batch = make_batch()
    model.eval()
    with torch.no_grad():
        out = model(batch)
    logits = out.logits
    assert logits.shape == (B, T, 48, 48) and torch.isfinite(logits).all()
    assert out.aux["ious"].shape == (B * T, 3)
    assert (logits != 0).flatten(2).any(-1).all()
    model.train()
    train_out = model(batch)
    assert (train_out.logits[~batch["annotated"]] == 0).all()  # only annotated frames are decoded
    terms = model.loss(train_out, batch)
    assert set(terms) == {"total", "bce"} and torch.isfinite(terms["total"])
    terms["total"].backward()
    for name, p in model.named_parameters():
        assert (p.grad is not None) == p.requires_grad, name  # trainable <=> reached by the loss
    assert model.fusion.blocks[0].spatial.attn.q.weight.grad is not None
    assert model.audio_proj.weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
    model.eval()


def test_stage1_trains_fusion_audio_and_decoder_only(model: STBAVAModel) -> None:
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"fusion", "audio_proj", "backbone"}
    backbone = {n for n, p in model.backbone.named_parameters() if p.requires_grad}
    assert backbone and all(".mask_decoder." in f".{n}" or "sam_mask_decoder" in n for n in backbone)
    assert not any(p.requires_grad for p in model.backbone.sam.image_encoder.parameters())


@pytest.mark.parametrize("backbone", ["sam", "sam2"])
def test_stage2_adapters_prompt_every_encoder_block(backbone: str) -> None:
    m = build(f"backbone={backbone}", "adapters=on", "trains=[adapters,decoder]")
    assert m.needs_frames and len(m.adapters.private) == len(m.backbone.block_dims)
    assert {n.split(".")[0] for n, p in m.named_parameters() if p.requires_grad} == {"adapters", "backbone"}
    batch = make_batch()
    m.train()
    m.loss(m(batch), batch)["total"].backward()
    grads = [blk[0].weight.grad for blk in m.adapters.private]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)  # every block's prompt matters
    assert m.fusion.blocks[0].pre_v[0].weight.grad is None  # ST-BAVA frozen in stage 2


def test_adapters_change_the_image_embedding() -> None:
    m = build("adapters=on", "trains=[adapters,decoder]").eval()
    batch = make_batch()
    raw = batch["features"]["logmel_stats"]
    with torch.no_grad():
        plain, _ = m.backbone.encode(batch, None)
        prompted, _ = m.backbone.encode(batch, m.adapters(raw.flatten(0, 1)))
        zero, _ = m.backbone.encode(batch, [torch.zeros(B * T, c) for c in m.backbone.block_dims])
    assert torch.allclose(zero, plain, atol=1e-5) and not torch.allclose(prompted, plain, atol=1e-3)


def test_multimask_logits_are_summed() -> None:
    m = build("multimask=sum").eval()
    low = torch.randn(3, 3, 8, 8)
    assert torch.allclose(m.reduce_masks(low, torch.zeros(3, 3)), low.sum(1, keepdim=True))
    best = build("multimask=best_iou").reduce_masks(low, torch.tensor([[0., 1., 0.]] * 3))
    assert torch.equal(best, low[:, 1:2])


def test_audio_off_reads_no_audio_and_ignores_it() -> None:
    m = build("audio=off").eval()
    assert m.feature_requests() == [] and m.adapters is None
    batch = make_batch()
    with torch.no_grad():
        out = m(batch).logits
        batch["features"] = {}
        assert torch.equal(m(batch).logits, out)


def test_audio_on_uses_the_audio() -> None:
    m = build().eval()
    batch = make_batch()
    with torch.no_grad():
        out = m(batch).logits
        batch["features"]["logmel_stats"] = batch["features"]["logmel_stats"].flip(0)
        assert not torch.allclose(m(batch).logits, out)


def test_sparse_prompt_is_the_fused_audio_token_repeated(monkeypatch) -> None:
    m = build().eval()
    seen = {}
    original = m.backbone.decode

    def spy(embed, extras, rows, cols, sparse, dense, pe):
        seen["sparse"], seen["dense"], seen["embed"] = sparse, dense, embed[rows, cols]
        return original(embed, extras, rows, cols, sparse, dense, pe)

    monkeypatch.setattr(m.backbone, "decode", spy)
    with torch.no_grad():
        m(make_batch())
    assert seen["sparse"].shape[1] == 2 and torch.equal(seen["sparse"][:, 0], seen["sparse"][:, 1])
    assert seen["dense"].shape == seen["embed"].shape and not torch.equal(seen["dense"], seen["embed"])



def test_sam2_decode_goes_through_the_layer_with_the_models_own_pe(monkeypatch) -> None:
    """The SAM2 path calls the layer's decode_embeddings (dense prompt + ST-BAVA's visual PE) and
    gives what SAM2's mask decoder gives when called with the same inputs by hand."""
    m = build("backbone=sam2", "visual_pe.source=random").eval()
    batch = make_batch()
    calls = []
    layer_call = m.backbone.sam.decode_embeddings
    monkeypatch.setattr(m.backbone.sam, "decode_embeddings",
                        lambda *a, **k: calls.append(k) or layer_call(*a, **k))
    with torch.no_grad():
        embed, extras = m.backbone.encode(batch, None)
        rows, cols = torch.tensor([0, 1]), torch.tensor([0, 2])
        g = torch.Generator().manual_seed(3)
        sparse = torch.randn(2, 2, C, generator=g)
        dense = torch.randn(2, C, *embed.shape[-2:], generator=g)
        pe = m.visual_pe(*embed.shape[-2:]).unsqueeze(0)
        low, ious = m.backbone.decode(embed, extras, rows, cols, sparse, dense, pe)
        feats, t = extras
        picked = ImageFeatures(tuple(level[rows * t + cols] for level in feats.levels), feats.projected)
        image_embed, high_res = m.backbone.sam.decoder_inputs(picked)
        ref_low, ref_ious, _, _ = m.backbone.sam.mask_decoder(
            image_embeddings=image_embed, image_pe=pe, sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense, multimask_output=True, repeat_image=False,
            high_res_features=high_res)
    assert len(calls) == 1 and calls[0]["dense"] is dense and calls[0]["image_pe"] is pe
    assert not torch.allclose(pe, m.backbone.sam.prompt_encoder.get_dense_pe())  # its own PE is used
    assert torch.equal(low, ref_low.float()) and torch.equal(ious, ref_ious.float())

def test_config_errors_are_one_line() -> None:
    with pytest.raises(ConfigError, match="trains"):
        build("trains=[fusion,encoder]")
    with pytest.raises(ConfigError, match="adapters"):
        build("trains=[adapters]")
    with pytest.raises(ConfigError, match="backbone"):
        build("backbone=vit")
    with pytest.raises(ConfigError, match="temporal"):
        build("temporal=maybe")


@pytest.mark.parametrize("preset", ["paper-stage1", "paper-stage2"])
def test_paper_presets_name_the_missing_weights(preset: str) -> None:
    cfg = load_config("stbava", preset, [])
    missing = STBAVAModel.missing_weights(cfg)
    assert len(missing) == 2 and "sam.checkpoint" in missing[0] and "vggish" in missing[1]
    assert STBAVAModel.missing_weights({**cfg, "audio": "off"}) == missing[:1]
    sam2 = load_config("stbava", preset, ["backbone=sam2"])
    assert "sam2.checkpoint" in STBAVAModel.missing_weights(sam2)[0]
    assert cfg["train"]["lr"] == 1e-4 and cfg["image_size"] == 1024 and cfg["sam"]["size"] == "full"
    assert (cfg["adapters"], cfg["trains"]) == ((True, ["adapters", "decoder"]) if preset == "paper-stage2"
                                                else (False, ["fusion", "audio_proj", "decoder"]))



def test_cpu_sam2_presets_read_the_sam2_cache_then_run_the_encoder_for_the_adapters() -> None:
    """cpu-sam2 (stage 1) reads the 128 px sam2_image cache with the decoder's skip levels (an 8x8
    grid); cpu-sam2-stage2 must run Hiera on frames, since the adapters prompt every block."""
    stage1 = STBAVAModel.from_config(load_config("stbava", "cpu-sam2", TINY))
    (req,) = [r for r in stage1.feature_requests() if "sam2_image" in str(r)]
    assert not stage1.needs_frames and stage1.backbone.sam.image_size == 128
    assert "image_size=128" in str(req) and "levels=[conv_s0,conv_s1,fpn2]" in str(req)
    assert stage1.backbone.cache_projected() and stage1.adapters is None
    stage2 = STBAVAModel.from_config(load_config("stbava", "cpu-sam2-stage2", TINY))
    assert stage2.needs_frames and stage2.adapters is not None and stage2.backbone.kind == "sam2"
    assert not any("sam2_image" in str(r) for r in stage2.feature_requests())
    assert {n.split(".")[0] for n, p in stage2.named_parameters() if p.requires_grad} == {"adapters", "backbone"}

def test_layers_per_task_follow_the_paper() -> None:
    cfg = load_config("stbava", "paper-stage1", ["sam.size=small", "image_size=64"])
    assert STBAVAModel.from_config({**cfg, "task": "s4"}).layers == 5
    assert STBAVAModel.from_config({**cfg, "task": "ms3"}).layers == 7
    with pytest.raises(ConfigError, match="no entry for task"):
        STBAVAModel.from_config({**cfg, "task": "refavs"})


def test_then_chains_stages_with_the_same_overrides(monkeypatch) -> None:
    from avsbench_kit.runs.run import RunRequest, stage_requests

    req = RunRequest.parse(["baseline=stbava", "dataset=synth-ms3", "then=cpu-small-stage2", "seed=1"])
    (stage,) = stage_requests(req)
    assert (stage.config, stage.overrides, stage.then, stage.init_from) == \
        ("cpu-small-stage2", ["seed=1"], "", "")
    with pytest.raises(ConfigError, match="no config"):
        stage_requests(RunRequest.parse(["baseline=stbava", "then=cpu-small-stage3"]))
    with pytest.raises(ConfigError, match="needs pretrained weights"):  # checked before stage 1 runs
        stage_requests(RunRequest.parse(["baseline=stbava", "then=paper-stage2"]))
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="torchrun"):
        stage_requests(req)
