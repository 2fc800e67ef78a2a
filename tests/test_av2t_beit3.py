"""AV2T-SAM's BEiT-3 prompt encoder: EVF checkpoint layout -> our modules, early fusion, and a
tiny BEiT-3 inside ``av2t`` trained end to end by ``avskit run`` on synth-s4."""

from __future__ import annotations

import json

import pytest
import torch

from avsbench_kit.errors import ConfigError
from baselines.av2t.beit3 import BEiT3, UNUSED_KEYS, beit3_config, beit3_state, load_evf_beit3, map_key
from baselines.av2t.text_prompt import build_text_encoder

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TINY = {"size": "base", "layers": 2, "hidden": 32, "heads": 4, "ffn_dim": 48, "img_size": 32}
TINY_ARGS = [f"text_encoder.beit3.{k}={v}" for k, v in TINY.items()]


def evf_state_dict(layers: int, d: int, ffn: int, patches: int, vocab: int = 64010,
                   text_positions: int = 1024, sam: dict[str, torch.Tensor] | None = None
                   ) -> dict[str, torch.Tensor]:
    """A state dict in EVF-SAM2's layout (``mm_extractor.beit3.`` + torchscale BEiT-3 names),
    written out key by key here so the test does not depend on our own mapping table. With
    ``sam`` (a segment-anything ``Sam`` state dict) it is EVF-SAM's (SAM1) layout instead: the
    whole SAM under ``visual_model.``, the names of the segment-anything package EVF vendors."""
    g = torch.Generator().manual_seed(1)
    sd: dict[str, torch.Tensor] = {}

    def put(name: str, *shape: int) -> None:
        sd["mm_extractor.beit3." + name] = torch.randn(*shape, generator=g)

    put("text_embed.weight", vocab, d)
    put("vision_embed.proj.weight", d, 3, 16, 16)
    put("vision_embed.proj.bias", d)
    put("vision_embed.cls_token", 1, 1, d)
    put("vision_embed.mask_token", 1, 1, d)
    put("encoder.embed_positions.A.weight", patches + 3, d)
    put("encoder.embed_positions.B.weight", text_positions, d)
    for i in range(layers):
        for way in "AB":
            for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
                put(f"encoder.layers.{i}.self_attn.{proj}.{way}.weight", d, d)
                put(f"encoder.layers.{i}.self_attn.{proj}.{way}.bias", d)
            for ln in ("self_attn.inner_attn_ln", "self_attn_layer_norm", "final_layer_norm"):
                put(f"encoder.layers.{i}.{ln}.{way}.weight", d)
                put(f"encoder.layers.{i}.{ln}.{way}.bias", d)
            put(f"encoder.layers.{i}.ffn.{way}.fc1.weight", ffn, d)
            put(f"encoder.layers.{i}.ffn.{way}.fc1.bias", ffn)
            put(f"encoder.layers.{i}.ffn.{way}.fc2.weight", d, ffn)
            put(f"encoder.layers.{i}.ffn.{way}.fc2.bias", d)
            put(f"encoder.layers.{i}.ffn.{way}.ffn_layernorm.weight", ffn)
            put(f"encoder.layers.{i}.ffn.{way}.ffn_layernorm.bias", ffn)
    for way in "AB":
        put(f"encoder.layer_norm.{way}.weight", d)
        put(f"encoder.layer_norm.{way}.bias", d)
    # the rest of an EVF-SAM(2) checkpoint: the projector and SAM2 / SAM (not BEiT-3)
    sd["text_hidden_fcs.0.0.weight"], sd["text_hidden_fcs.0.0.bias"] = torch.randn(d, d), torch.randn(d)
    sd["text_hidden_fcs.0.2.weight"], sd["text_hidden_fcs.0.2.bias"] = torch.randn(256, d), torch.randn(256)
    if sam is None:
        sd["visual_model.sam_mask_decoder.iou_token.weight"] = torch.randn(1, 256)
    else:
        sd.update({"visual_model." + k: v.clone() for k, v in sam.items()})
    return sd


def tiny_evf() -> dict[str, torch.Tensor]:
    return evf_state_dict(TINY["layers"], TINY["hidden"], TINY["ffn_dim"], (TINY["img_size"] // 16) ** 2)


def test_every_evf_key_maps_and_nothing_is_left_unset() -> None:
    sd = tiny_evf()
    model = BEiT3(beit3_config(TINY))
    mapped, prefix = beit3_state(sd)
    assert prefix == "mm_extractor.beit3."
    beit_keys = [k for k in sd if k.startswith(prefix)]
    skipped = [k for k in beit_keys if k[len(prefix):] in UNUSED_KEYS]
    assert skipped == ["mm_extractor.beit3.vision_embed.mask_token"]
    assert len(mapped) == len(beit_keys) - len(skipped)  # every other key has its own target
    own = model.state_dict()
    assert set(mapped) == set(own)  # none missing, none unexpected
    assert all(mapped[k].shape == own[k].shape for k in own)
    model.load_state_dict(mapped, strict=True)
    # a few mappings spelled out (A = vision expert, B = text expert)
    assert map_key("encoder.layers.1.ffn.B.fc1.weight") == "blocks.1.ffn.text.fc_in.weight"
    assert map_key("encoder.layers.0.self_attn.q_proj.A.bias") == "blocks.0.q.vision.bias"
    assert map_key("encoder.layers.0.self_attn.rel_pos.weight") is None


def test_loader_reads_an_evf_directory_and_the_projector(tmp_path) -> None:
    from safetensors.torch import save_file

    sd = tiny_evf()
    names = sorted(sd)
    half = len(names) // 2
    save_file({k: sd[k] for k in names[:half]}, str(tmp_path / "model-00001-of-00002.safetensors"))
    save_file({k: sd[k] for k in names[half:]}, str(tmp_path / "model-00002-of-00002.safetensors"))
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {k: f"model-0000{1 if i < half else 2}-of-00002.safetensors" for i, k in enumerate(names)}}))
    enc = build_text_encoder({"kind": "beit3", "beit3": {**TINY, "checkpoint": str(tmp_path)}})
    assert torch.equal(enc.beit3.blocks[1].ffn.text.fc_out.weight,
                       sd["mm_extractor.beit3.encoder.layers.1.ffn.B.fc2.weight"])
    assert torch.equal(enc.beit3.pos_vision.weight, sd["mm_extractor.beit3.encoder.embed_positions.A.weight"])
    assert set(enc.evf_projector) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    assert not any(p.requires_grad for p in enc.parameters())
    # a checkpoint of another size is refused with the key that does not fit
    with pytest.raises(ConfigError, match="layers|shape|missing"):
        build_text_encoder({"kind": "beit3", "beit3": {**TINY, "layers": 3, "checkpoint": str(tmp_path)}})
    with pytest.raises(ConfigError, match=r"\(32,\).*\(40,\)|is \("):
        build_text_encoder({"kind": "beit3", "beit3": {**TINY, "hidden": 40, "heads": 4,
                                                        "checkpoint": str(tmp_path)}})
    # an unknown layout (a key no rule maps) is refused, not skipped
    bad = {**sd, "mm_extractor.beit3.encoder.layers.0.self_attn.rel_pos.weight": torch.zeros(1)}
    torch.save(bad, tmp_path / "bad.bin")
    with pytest.raises(ConfigError, match="map to nothing"):
        load_evf_beit3(BEiT3(beit3_config(TINY)), str(tmp_path / "bad.bin"))


def test_early_fusion_the_output_depends_on_frame_and_tokens() -> None:
    enc = build_text_encoder({"kind": "beit3", "beit3": {**TINY, "seed": 2}})
    g = torch.Generator().manual_seed(0)
    tokens, frames = torch.randn(2, 3, 32, generator=g), torch.rand(2, 3, 48, 48, generator=g)
    with torch.no_grad():
        out = enc(tokens, frames)
        assert out.shape == (2, 32) and enc.sees_image
        assert (out - enc(tokens, frames.flip(-1))).abs().max() > 1e-4  # sees the frame
        assert (out - enc(tokens.flip(1), frames)).abs().max() > 1e-4  # positions on pseudo tokens
        same = build_text_encoder({"kind": "beit3", "beit3": {**TINY, "seed": 2}})
        assert torch.equal(out, same(tokens, frames))  # random init is a function of the seed
        # the vision and text experts really differ: swapping them changes the output
        blk = enc.beit3.blocks[0].ffn
        blk.vision, blk.text = blk.text, blk.vision
        assert (out - enc(tokens, frames)).abs().max() > 1e-4


def test_tiny_beit3_trains_inside_av2t_on_synth_s4(tmp_path) -> None:
    """``avskit run baseline=av2t text_encoder.kind=beit3 ...`` end to end (1 epoch, synth-s4)."""
    import math

    from avsbench_kit.runs.run import RunRequest, execute
    from synth_home import synth_home

    synth_home(tmp_path)
    req = RunRequest.parse(["baseline=av2t", "dataset=synth-s4", "text_encoder.kind=beit3", *TINY_ARGS,
                            "image_size=64", "output_size=32", "fused_dim=32", "train.epochs=1",
                            "train.val_every=1"])
    rec = execute(req, tmp_path, progress=False, say=lambda m: None)
    assert rec.status == "complete"
    values = rec.metrics["test"]["avsbench-v1"]
    assert all(math.isfinite(v) for v in values.values())
    assert rec.model["backbone"]["text_encoder"]["kind"] == "beit3"
    frozen = rec.model["modules"]["text_encoder"]
    assert frozen["trainable"] == 0 and frozen["frozen"] > 0  # BEiT-3 stays frozen


PAPER_TINY = ("require_weights=false", "image_size=64", "output_size=32", "fused_dim=32",
              "sam2.config=sam2.1_hiera_t", "text_encoder.beit3.size=base", "text_encoder.beit3.layers=1",
              "text_encoder.beit3.hidden=32", "text_encoder.beit3.heads=4", "text_encoder.beit3.ffn_dim=48",
              "text_encoder.beit3.img_size=32")


@pytest.mark.parametrize("preset,adapters", [("paper", True), ("paper-noadapter", False)])
def test_paper_presets_are_complete_and_honest(preset: str, adapters: bool) -> None:
    """Each published SAM2 row: every pretrained part required (one line naming all of them),
    and every key of the preset read (a tiny build of the same key set passes the unread-key check)."""
    from avsbench_kit.plugins import load_plugins
    from avsbench_kit.runs.run import RunRequest, check_weights, resolve_config
    from baselines.av2t.model import AV2TSAM
    from baselines.conformance import build

    load_plugins()
    req = RunRequest.parse(["baseline=av2t", "dataset=synth-s4", f"config={preset}"])
    cfg = resolve_config(req)
    missing = AV2TSAM.missing_weights(cfg)
    assert len(missing) == 4
    for part in ("sam2.checkpoint", "text_encoder.beit3.checkpoint", "features.audio_overrides",
                 "features.image_overrides"):
        assert sum(part in m for m in missing) == 1, (part, missing)
    with pytest.raises(ConfigError) as err:
        check_weights(req, cfg)
    assert "\n" not in str(err.value) and "beit3" in str(err.value)
    given = RunRequest.parse(["baseline=av2t", "dataset=synth-s4", f"config={preset}",
                              "sam2.checkpoint=/w/sam2_hiera_large.pt", "text_encoder.beit3.checkpoint=/w/evf",
                              "features.audio_overrides=[channels=concat,weights=/w/clap]",
                              "features.image_overrides=[weights=/w/clip]"])
    assert AV2TSAM.missing_weights(resolve_config(given)) == []
    assert cfg["text_encoder"]["kind"] == "beit3" and cfg["adapters"] is adapters
    model = build("av2t", "s4", f"config={preset}", tiny=PAPER_TINY)  # raises on an unread key
    assert model.adapters_on is adapters and model.text_encoder.sees_image
