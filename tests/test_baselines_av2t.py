"""AV2T-SAM (and its CLIP-only probe): shapes, loss, ablation switches, trainable split."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch

from avsbench_kit.errors import ConfigError, DataError
from baselines.av2t.heads import AdapterGenerator, PromptFeature, PseudoTokens, text_hidden_fcs
from baselines.av2t.model import AV2TSAM
from baselines.base import BaselineOutput
from baselines.av2t.text_prompt import build_text_encoder
from avsbench_kit.models.sam2 import hiera_block_dims
from baselines.configs import load_config

B, T, A_DIM, V_DIM = 2, 3, 32, 24
# the paper's encoders (cpu-small's default stand-ins are swapped back to CLAP/CLIP here)
SMALL = ["features.audio=clap", "features.image=clip", "text_encoder.kind=transformer", "text_encoder.transformer.hidden=64", "text_encoder.transformer.layers=1",
         "image_size=128", "output_size=64", f"dims.audio={A_DIM}", f"dims.image={V_DIM}"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def build(*overrides: str, name: str = "av2t") -> AV2TSAM:
    return AV2TSAM.from_config(load_config(name, "cpu-small", SMALL + list(overrides)))


@pytest.fixture(scope="module")
def model() -> AV2TSAM:
    return build()


@pytest.fixture(scope="module")
def batch(model: AV2TSAM) -> dict:
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(B, T, 3, 96, 96, generator=g)
    with torch.no_grad():
        feats = model.sam.features(model.sam.preprocess(frames.flatten(0, 1)))
    cache = {k: v.float().unflatten(0, (B, T)) for k, v in feats.to_cache().items()}
    yy, xx = torch.meshgrid(torch.arange(80), torch.arange(80), indexing="ij")
    masks = torch.stack([torch.stack([((yy - 20 - 10 * t - 15 * b) ** 2 + (xx - 40) ** 2 < 300).float()
                                      for t in range(T)]) for b in range(B)])
    return {"key": ["clip_a", "clip_b"], "masks": masks,
            "annotated": torch.tensor([[True, False, False], [True, True, True]]),
            "features": {"clap": torch.randn(B, T, A_DIM, generator=g),
                         "clip": torch.randn(B, T, V_DIM, generator=g), "sam2_image": cache},
            "frames": frames}


def total(model: AV2TSAM, logits: torch.Tensor, batch: dict) -> torch.Tensor:
    return model.loss(BaselineOutput(logits), batch)["total"]


def without(batch: dict, *names: str) -> dict:
    out = {**batch, "features": {k: v for k, v in batch["features"].items() if k not in names}}
    return out


def test_forward_shapes_and_annotated_only_training(model: AV2TSAM, batch: dict) -> None:
    model.eval()
    with torch.no_grad():
        logits = model(batch).logits
    assert logits.shape == (B, T, 64, 64) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all() and (logits != 0).flatten(2).any(-1).all()
    model.train()
    train_logits = model(batch).logits
    ann = batch["annotated"]
    assert (train_logits[~ann] == 0).all()  # S4: only the annotated frame is run
    assert torch.allclose(train_logits[ann], logits[ann], atol=1e-5)  # heads have no dropout
    loss = model.loss(BaselineOutput(train_logits), batch)["total"]
    assert loss.ndim == 0 and torch.isfinite(loss)
    model.eval()


def test_loss_uses_annotated_frames_only(model: AV2TSAM, batch: dict) -> None:
    with torch.no_grad():
        logits = model(batch).logits
        flipped = {**batch, "masks": batch["masks"].clone()}
        flipped["masks"][0, 1:] = 1 - flipped["masks"][0, 1:]  # frames 2-3 of clip a: unannotated
        assert torch.equal(total(model, logits, batch), total(model, logits, flipped))
        flipped["masks"][0, 0] = 1 - flipped["masks"][0, 0]
        assert not torch.equal(total(model, logits, batch), total(model, logits, flipped))


def test_loss_decreases_when_overfitting_one_batch(batch: dict) -> None:
    m = build("seed=1")
    m.train()
    opt = torch.optim.AdamW(m.trainable_parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        opt.zero_grad()
        loss = m.loss(m(batch), batch)["total"]
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.9 * losses[0], losses
    assert sum(losses[4:]) < sum(losses[:4]), losses


def test_clip_only_probe_ignores_audio_and_full_model_does_not(model: AV2TSAM, batch: dict) -> None:
    probe = build(name="probe-clip-only")
    assert probe.name == "probe-clip-only" and probe.prompt_feature == "clip"
    assert [r.encoder for r in probe.feature_requests()] == ["clip", "sam2_image"]
    other_audio = {**batch, "features": {**batch["features"], "clap": -batch["features"]["clap"]}}
    with torch.no_grad():
        p = probe(batch).logits
        assert torch.equal(p, probe(other_audio).logits)
        assert torch.equal(p, probe(without(batch, "clap")).logits)  # it never reads audio at all
        full_a, full_b = model(batch).logits, model(other_audio).logits
    assert (full_a - full_b).abs().max() > 1e-4
    with pytest.raises(DataError, match="clap"):
        model(without(batch, "clap"))


def test_clap_only_ablation_ignores_image_features(batch: dict) -> None:
    m = build("prompt_feature=clap")
    other = {**batch, "features": {**batch["features"], "clip": torch.zeros(B, T, V_DIM)}}
    with torch.no_grad():
        assert torch.equal(m(batch).logits, m(other).logits)
    assert [r.encoder for r in m.feature_requests()] == ["clap", "sam2_image"]


def _numel(*modules) -> int:
    return sum(p.numel() for mod in modules for p in mod.parameters())


def test_trainable_split_follows_the_paper(model: AV2TSAM) -> None:
    raw = build("features.sam2_levels=[fpn0,fpn1,fpn2]")  # raw FPN cache: whole decoder trains
    for m in (raw, model):
        trainable = {id(p) for p in m.trainable_parameters()}
        assert not any(id(p) in trainable for p in m.sam.image_encoder.parameters())
        assert not any(id(p) in trainable for p in m.text_encoder.parameters())
        assert not any(id(p) in trainable for p in m.sam.model.memory_attention.parameters())
        assert id(m.sam.prompt_encoder.no_mask_embed.weight) in trainable
        convs = {id(p) for c in (m.sam.mask_decoder.conv_s0, m.sam.mask_decoder.conv_s1)
                 for p in c.parameters()}
        assert all(id(p) in trainable for p in m.sam.mask_decoder.parameters() if id(p) not in convs)
        expected = _numel(m.fusion, m.pseudo_tokens, m.text_hidden_fcs, m.sam.mask_decoder,
                          m.sam.prompt_encoder.no_mask_embed)
        if m is model:  # forward_image cache: conv_s0/conv_s1 were applied at extraction, frozen
            assert not convs & trainable
            expected -= _numel(m.sam.mask_decoder.conv_s0, m.sam.mask_decoder.conv_s1)
        else:
            assert convs <= trainable
        assert m.parameter_counts()["trainable"] == expected
        assert sum(p.numel() for p in m.trainable_parameters()) == expected


def test_feature_widths_default_to_the_encoder_presets() -> None:
    from avsbench_kit.features.base import build_encoder

    m = AV2TSAM.from_config(load_config("av2t", "cpu-small", SMALL[:4]))  # dims.* = null
    cfg = m.cfg["features"]
    audio = build_encoder(cfg["audio"], tuple(cfg["audio_overrides"])).output_spec()["emb"].shape[-1]
    image = build_encoder(cfg["image"], tuple(cfg["image_overrides"])).output_spec()["emb"].shape[-1]
    assert m.fusion.audio_proj.in_features == audio and m.fusion.image_proj.in_features == image


def test_adapters_add_per_block_heads_and_get_gradients(batch: dict) -> None:
    m = build("adapters=true")
    assert m.needs_frames and [r.encoder for r in m.feature_requests()] == ["clap", "clip"]
    width, dims = 512, m.sam.block_dims
    expected = sum(width * width + width + width * c + c for c in dims)
    assert _numel(m.adapters) == expected
    base = build("features.sam2_levels=[fpn0,fpn1,fpn2]")  # on the fly: conv_s0/s1 train too
    assert m.parameter_counts()["trainable"] == base.parameter_counts()["trainable"] + expected
    m.train()
    small = {**without(batch, "sam2_image"), "annotated": torch.tensor([[True, False, False],
                                                                         [False, False, False]])}
    m.loss(m(small), small)["total"].backward()
    grads = [p.grad for p in m.adapters.parameters()]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0
    assert all(p.grad is None for p in m.sam.image_encoder.parameters())


def test_cached_features_and_frames_give_identical_logits(model: AV2TSAM, batch: dict) -> None:
    with torch.no_grad():
        cached = model({k: v for k, v in batch.items() if k != "frames"}).logits
        from_frames = model(without(batch, "sam2_image")).logits
    assert torch.equal(cached, from_frames)


def test_paper_sized_heads_match_the_released_code_counts() -> None:
    # counts of the released code per the method note: projector 2.63 M (incl. the pseudo-token
    # MLP), EVF text_hidden_fcs 1.31 M, SAM2 adapter generator 26.1 M (Hiera-L)
    projector = _numel(PromptFeature("clip_x_clap", 1024, 512, 512), PseudoTokens(512, 1024, 3))
    assert round(projector / 1e6, 2) == 2.63
    assert round(_numel(text_hidden_fcs(1024, 256)) / 1e6, 2) == 1.31
    adapters = AdapterGenerator(512, hiera_block_dims(144, (2, 6, 36, 4)))
    assert round(_numel(adapters) / 1e6, 1) == 26.1


def test_config_errors_are_one_line_user_errors(batch: dict) -> None:
    with pytest.raises(ConfigError, match="multiple of 32"):
        build("image_size=100")
    with pytest.raises(ConfigError, match="prompt_feature"):
        build("prompt_feature=clip_x_vggish")
    with pytest.raises(ConfigError, match="needs pretrained SAM2 weights"):
        AV2TSAM.from_config(load_config("av2t", "paper"))
    m = build(f"dims.image={V_DIM + 1}")
    with pytest.raises(ConfigError, match="clip") as err:
        with torch.no_grad():
            m(batch)
    assert f"dims.image={V_DIM}" in err.value.hint


def test_feature_requests_pin_the_sam2_cache_to_the_model(model: AV2TSAM) -> None:
    reqs = {r.encoder: r for r in model.feature_requests()}
    assert set(reqs) == {"clap", "clip", "sam2_image"}
    assert {"model_config=configs/sam2.1/sam2.1_hiera_t.yaml", "image_size=128", "seed=0",
            "levels=[conv_s0,conv_s1,fpn2]"} <= set(reqs["sam2_image"].overrides)
    assert reqs["clap"].overrides == ("channels=concat",)
    # the requests must resolve against the encoders' presets (names and types of the keys)
    from avsbench_kit.features.base import build_encoder

    enc = build_encoder("sam2_image", reqs["sam2_image"].overrides)
    assert enc.cfg["image_size"] == model.sam.image_size
    assert set(enc.output_spec()) == {"conv_s0", "conv_s1", "fpn2"}
    with_weights = copy.deepcopy(model.cfg)
    with_weights["sam2"]["checkpoint"] = "/w/sam2.1_hiera_tiny.pt"
    assert "weights=/w/sam2.1_hiera_tiny.pt" in AV2TSAM.sam2_overrides(SimpleNamespace(cfg=with_weights))
    m = build("features.sam2=null")
    assert m.needs_frames and "sam2_image" not in [r.encoder for r in m.feature_requests()]


def test_text_encoders() -> None:
    minilm = build_text_encoder({"kind": "minilm"})
    assert minilm.hidden_size == 384 and not any(p.requires_grad for p in minilm.parameters())
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 3, 384, generator=g), torch.randn(2, 3, 384, generator=g)
    with torch.no_grad():
        minilm.train()  # stays in eval: deterministic
        assert not minilm.training
        out_a = minilm(a)
        assert out_a.shape == (2, 384) and torch.equal(out_a, minilm(a))
        assert (out_a - minilm(b)).abs().max() > 1e-3
    rand = build_text_encoder({"kind": "transformer", "transformer": {"hidden": 32, "layers": 1, "heads": 4, "seed": 3}})
    same = build_text_encoder({"kind": "transformer", "transformer": {"hidden": 32, "layers": 1, "heads": 4, "seed": 3}})
    x = torch.randn(2, 3, 32, generator=g)
    with torch.no_grad():
        assert torch.equal(rand(x), same(x))  # random init is a function of the seed
    with pytest.raises(ConfigError, match="text_encoder.beit3.checkpoint") as err:
        build_text_encoder({"kind": "beit3", "beit3": {"checkpoint": "/nonexistent/evf-sam2"}})
    assert "YxZhang/evf-sam2" in err.value.hint  # names what to download, never downloads
    with pytest.raises(ConfigError, match="unknown text_encoder.kind"):
        build_text_encoder({"kind": "bert"})


def test_bn_l2_feature_norm_standardises_with_running_stats(batch: dict) -> None:
    m = build("feature_norm=bn_l2")
    assert m.fusion.audio_bn is not None and m.fusion.image_bn is not None
    before = m.fusion.audio_bn.running_mean.clone()
    m.train()
    one = {**batch, "annotated": torch.tensor([[True, False, False], [False, False, False]])}
    m(one)  # a single training frame has no batch statistics: running stats, no crash
    assert torch.equal(m.fusion.audio_bn.running_mean, before)
    m(batch)
    assert not torch.equal(m.fusion.audio_bn.running_mean, before)  # 4 frames update the stats
    # constant offsets shared by every clip (an anisotropic encoder) are removed in training mode
    shifted = {**batch, "features": {**batch["features"],
                                     "clap": batch["features"]["clap"] + 100.0}}
    assert torch.allclose(m(batch).logits, m(shifted).logits, atol=1e-3)
    m.eval()
    with torch.no_grad():
        assert torch.isfinite(m(batch).logits).all()
    assert build().fusion.audio_bn is None  # the paper's plain L2 by default
    with pytest.raises(ConfigError, match="feature_norm"):
        build("feature_norm=layer")
