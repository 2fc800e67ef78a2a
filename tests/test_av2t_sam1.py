"""AV2T-SAM's SAM1 variant (``sam.backbone=sam1``, EVF-SAM's decoder path): EVF-SAM's checkpoint
layout -> our modules, the decoder path against the segment-anything package, the paper presets'
weight requirements, and a tiny run end to end on synth-s4."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from avsbench_kit.errors import ConfigError
from baselines.av2t.beit3 import UNUSED_KEYS, map_key
from baselines.conformance import build, synthetic_batch
from test_av2t_beit3 import TINY, TINY_ARGS, evf_state_dict

pytestmark = pytest.mark.usefixtures("one_torch_thread")
#: a tiny av2t on a random 4-block SAM ViT at 64 px
SMALL = ("image_size=64", "output_size=32", "fused_dim=32", "sam.backbone=sam1", "sam1.size=small")
TRANSFORMER = ("text_encoder.kind=transformer", "text_encoder.transformer.hidden=32",
               "text_encoder.transformer.layers=1", "text_encoder.transformer.heads=2")


def tiny_sam_state(seed: int = 5) -> dict[str, torch.Tensor]:
    """A segment-anything ``Sam`` state dict of the small CPU layout at 64 px (other values than
    the model's own random init, so a load is visible)."""
    from avsbench_kit.models.sam1 import build_sam

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        donor = build_sam("vit_h", "small", 64)
        for p in donor.parameters():  # not the init's values (zeros/ones of norms included)
            p.data.add_(torch.randn_like(p) * 0.01)
    return donor.state_dict()


def tiny_evf_sam1(tmp_path, sam: dict[str, torch.Tensor] | None = None):
    """An EVF-SAM (SAM1) checkpoint directory at tiny size; returns (dir, state dict)."""
    from safetensors.torch import save_file

    sd = evf_state_dict(TINY["layers"], TINY["hidden"], TINY["ffn_dim"], (TINY["img_size"] // 16) ** 2,
                        sam=tiny_sam_state() if sam is None else sam)
    save_file(sd, str(tmp_path / "model.safetensors"))
    return tmp_path, sd


def test_every_evf_sam1_key_lands_in_the_model(tmp_path) -> None:
    """Each key of EVF-SAM's layout: BEiT-3 -> text encoder, ``text_hidden_fcs.0`` -> projector,
    ``visual_model.*`` -> the SAM1 wrapper (strict), values unchanged; nothing left over."""
    path, sd = tiny_evf_sam1(tmp_path)
    model = build("av2t", "s4", *SMALL, "sam1.from_evf=true", "text_encoder.kind=beit3", *TINY_ARGS,
                  f"text_encoder.beit3.checkpoint={path}", tiny=())
    beit, proj, sam = (m.state_dict() for m in (model.text_encoder.beit3, model.text_hidden_fcs, model.sam.model))
    parts = {"mm_extractor.beit3.": 0, "text_hidden_fcs.0.": 0, "visual_model.": 0}
    for key, value in sd.items():
        prefix = next(p for p in parts if key.startswith(p))  # every key is in one of the three parts
        inner = key[len(prefix):]
        if prefix == "mm_extractor.beit3.":
            if inner in UNUSED_KEYS:
                continue
            target = beit[map_key(inner)]
        else:
            target = (proj if prefix == "text_hidden_fcs.0." else sam)[inner]
        assert torch.equal(target, value), key
        parts[prefix] += 1
    assert parts["visual_model."] == len(sam) and parts["text_hidden_fcs.0."] == len(proj) == 4
    assert parts["mm_extractor.beit3."] == len(beit)
    info = model.describe()
    assert info["backbone"]["sam1"]["weights"].endswith("(visual_model.*)")
    assert model.text_encoder.evf_sam == {}  # the loaded copy is dropped
    # EVF trained the decoder and no_mask_embed: they train here too; the ViT stays frozen
    assert all(p.requires_grad for p in model.sam.mask_decoder.parameters())
    assert model.sam.prompt_encoder.no_mask_embed.weight.requires_grad
    assert not any(p.requires_grad for p in model.sam.image_encoder.parameters())


def test_evf_sam1_checkpoint_errors_are_one_line(tmp_path) -> None:
    beit = ("text_encoder.kind=beit3", *TINY_ARGS)
    # an EVF-SAM2 checkpoint has SAM2 under visual_model.*: it does not fit SAM's modules
    from safetensors.torch import save_file

    sam2_dir = tmp_path / "evf2"
    sam2_dir.mkdir()
    save_file(evf_state_dict(TINY["layers"], TINY["hidden"], TINY["ffn_dim"], 4), str(sam2_dir / "model.safetensors"))
    with pytest.raises(ConfigError, match="does not fit variant") as err:
        build("av2t", "s4", *SMALL, "sam1.from_evf=true", *beit, f"text_encoder.beit3.checkpoint={sam2_dir}", tiny=())
    assert "\n" not in str(err.value)
    # a checkpoint without any SAM weights
    bare = tmp_path / "bare"
    bare.mkdir()
    sd = {k: v for k, v in evf_state_dict(TINY["layers"], TINY["hidden"], TINY["ffn_dim"], 4).items()
          if not k.startswith("visual_model.")}
    save_file(sd, str(bare / "model.safetensors"))
    with pytest.raises(ConfigError, match="holds no SAM weights"):
        build("av2t", "s4", *SMALL, "sam1.from_evf=true", *beit, f"text_encoder.beit3.checkpoint={bare}", tiny=())
    # two sources of SAM weights, or from_evf without an EVF encoder
    with pytest.raises(ConfigError, match="both give SAM's weights"):
        build("av2t", "s4", *SMALL, "sam1.from_evf=true", "sam1.checkpoint=/w/sam_vit_h.pth", *beit, tiny=())
    with pytest.raises(ConfigError, match="has none"):
        build("av2t", "s4", *SMALL, "sam1.from_evf=true", *TRANSFORMER, tiny=())


def test_decoder_path_is_evf_sams_on_the_package(tmp_path) -> None:
    """The SAM1 logits of a frame = the package's mask decoder fed the projected BEiT-3/text token
    as the only sparse prompt and ``no_mask_embed`` as the dense one; best predicted IoU of 3."""
    model = build("av2t", "s4", *SMALL, *TRANSFORMER, tiny=()).eval()
    batch = synthetic_batch(model, "s4", batch_size=2, frames=2, size=48)
    with torch.no_grad():
        out = model(batch)
        rows, cols = torch.tensor([1]), torch.tensor([0])
        token = model.text_hidden_fcs(model.text_encoder(model.pseudo_tokens(
            model.fused_feature(batch, rows, cols)))).unsqueeze(1)
        sam = model.sam.model
        embed = sam.image_encoder(model.sam.preprocess(batch["frames"][rows, cols]))
        sparse, dense = sam.prompt_encoder(points=None, boxes=None, masks=None)
        assert sparse.shape[1] == 0  # no point or box prompt: the token is the only sparse one
        low, ious = sam.mask_decoder(image_embeddings=embed, image_pe=sam.prompt_encoder.get_dense_pe(),
                                     sparse_prompt_embeddings=torch.cat([sparse, token], 1),
                                     dense_prompt_embeddings=dense, multimask_output=True)
        best = low[:, int(ious.argmax())][:, None]
        expected = F.interpolate(best, size=(32, 32), mode="bilinear", align_corners=False)[0, 0]
        assert torch.allclose(out.logits[1, 0], expected, atol=1e-4)
        assert out.aux["ious"].shape[-1] == 3
        model.fusion.image_proj.weight.mul_(-1)  # another prompt token -> another mask
        assert (model(batch).logits - out.logits).abs().max() > 1e-5


def test_sam1_adapters_have_the_release_shape() -> None:
    """SAMA's shape (per block Linear–GELU, one shared Linear to the ViT width); at the paper's size
    (F_av 512, SAM-H 32 blocks of 1280) the release's 9.06 M parameters."""
    from baselines.common.adapters import AudioAdapters

    paper = AudioAdapters(512, 512, [1280] * 32)
    assert sum(p.numel() for p in paper.parameters()) == 32 * (512 * 512 + 512) + 512 * 1280 + 1280 == 9_061_632
    model = build("av2t", "s4", *SMALL, *TRANSFORMER, "adapters=true", tiny=())
    assert isinstance(model.adapters, AudioAdapters) and len(model.adapters.private) == 4  # one per block
    batch = synthetic_batch(model, "s4", batch_size=1, frames=2, size=48)
    model.eval()
    with torch.no_grad():
        before = model(batch).logits
        model.adapters.shared["96"].bias.add_(1.0)  # the prompts reach the ViT
        assert (model(batch).logits - before).abs().max() > 1e-5


PAPER_TINY = ("require_weights=false", "image_size=64", "output_size=32", "fused_dim=32", "sam1.size=small",
              *TINY_ARGS)


@pytest.mark.parametrize("preset,adapters", [("paper-sam1", True), ("paper-sam1-noadapter", False)])
def test_sam1_paper_presets_are_complete_and_honest(preset: str, adapters: bool) -> None:
    """Each published SAM1 row: EVF-SAM (BEiT-3-L + projector + SAM-H), CLAP and CLIP required in
    one line; every key of the preset read (a tiny build of the same key set)."""
    from avsbench_kit.plugins import load_plugins
    from avsbench_kit.runs.run import RunRequest, check_weights, resolve_config
    from baselines.av2t.model import AV2TSAM
    from baselines.common.adapters import AudioAdapters

    load_plugins()
    req = RunRequest.parse(["baseline=av2t", "dataset=synth-s4", f"config={preset}"])
    cfg = resolve_config(req)
    assert cfg["sam"]["backbone"] == "sam1" and cfg["adapters"] is adapters and cfg["image_size"] == 1024
    assert cfg["sam1"] == {**cfg["sam1"], "variant": "vit_h", "size": "full", "from_evf": True, "checkpoint": None}
    assert cfg["text_encoder"]["kind"] == "beit3" and cfg["text_encoder"]["beit3"]["size"] == "large"
    assert (cfg["train"]["epochs"], cfg["train"]["batch_size"], cfg["seed"]) == (40, 8, 123)
    missing = AV2TSAM.missing_weights(cfg)
    assert len(missing) == 3, missing
    for part in ("text_encoder.beit3.checkpoint", "features.audio_overrides", "features.image_overrides"):
        assert sum(part in m for m in missing) == 1, (part, missing)
    assert "SAM vit_h" in next(m for m in missing if m.startswith("text_encoder.beit3"))
    with pytest.raises(ConfigError) as err:
        check_weights(req, cfg)
    assert "\n" not in str(err.value) and "EVF-SAM checkpoint" in str(err.value)
    weights = ["features.audio_overrides=[channels=concat,weights=/w/clap]", "features.image_overrides=[weights=/w/clip]"]
    given = RunRequest.parse(["baseline=av2t", "dataset=synth-s4", f"config={preset}",
                              "text_encoder.beit3.checkpoint=/w/evf-sam-multitask", *weights])
    assert AV2TSAM.missing_weights(resolve_config(given)) == []
    # SAM's own release instead of EVF's SAM: then the .pth is required as well
    own = resolve_config(RunRequest.parse(["baseline=av2t", "dataset=synth-s4", f"config={preset}",
                                           "sam1.from_evf=false", "text_encoder.beit3.checkpoint=/w/evf", *weights]))
    assert AV2TSAM.missing_weights(own) == ["sam1.checkpoint (SAM vit_h sam_vit_h_*.pth)"]
    model = build("av2t", "s4", f"config={preset}", tiny=PAPER_TINY)  # raises on an unread key
    assert model.backbone == "sam1" and model.adapters_on is adapters and model.text_encoder.sees_image
    assert isinstance(model.adapters, AudioAdapters) is adapters
    assert model.feature_requests() and all("sam2" not in r.encoder for r in model.feature_requests())


def test_tiny_sam1_trains_inside_av2t_on_synth_s4(tmp_path) -> None:
    """``avskit run baseline=av2t dataset=synth-s4 sam.backbone=sam1 adapters=true ...`` end to end."""
    from avsbench_kit.runs.run import RunRequest, execute
    from synth_home import synth_home

    synth_home(tmp_path)
    req = RunRequest.parse(["baseline=av2t", "dataset=synth-s4", "sam.backbone=sam1", "adapters=true",
                            *TRANSFORMER, "image_size=64", "output_size=32", "fused_dim=32", "train.epochs=1",
                            "train.val_every=1"])
    rec = execute(req, tmp_path, progress=False, say=lambda m: None)
    assert rec.status == "complete"
    assert all(math.isfinite(v) for v in rec.metrics["test"]["avsbench-v1"].values())
    assert rec.model["backbone"]["sam1"]["size"] == "small" and "sam2" not in rec.model["backbone"]
    modules = rec.model["modules"]
    assert modules["adapters"]["trainable"] > 0 and modules["text_encoder"]["trainable"] == 0
    assert 0 < modules["sam"]["trainable"] < modules["sam"]["trainable"] + modules["sam"]["frozen"]
    assert not any("sam2" in str(f) for f in rec.features)  # no SAM2 cache requested
