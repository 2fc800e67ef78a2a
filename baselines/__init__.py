"""Baselines shipped with avsbench-kit, one sub-package per method.

The toolkit calls :func:`register` through the ``avsbench_kit.plugins`` entry point; a third-party
package adds its own methods the same way (an entry point in that group whose module has a
``register(registry)`` function calling ``registry.add_spec(BaselineSpec(...))``). Targets are
``"module:Class"`` strings, imported only when a model is built, so listing stays fast.
"""

from __future__ import annotations

from avsbench_kit.baseline_spec import BaselineSpec

_AV2T_PAPER = "AV2T-SAM: Audio Visual Segmentation Through Text Embeddings (K. Lee et al.; code bok-bok/AV2T-SAM)"
#: tiny AV2T-SAM for the conformance test (cpu-small at 64 px with a 1-layer frozen text encoder)
_AV2T_TINY = ("image_size=64", "output_size=32", "text_encoder.kind=transformer",
              "text_encoder.transformer.hidden=32", "text_encoder.transformer.layers=1",
              "text_encoder.transformer.heads=2", "fused_dim=32")
#: the packaged AV2T-SAM presets (the probe entry shares them)
_AV2T_PRESETS = ("cpu-small", "paper", "paper-noadapter", "paper-sam1", "paper-sam1-noadapter")
_STBAVA_PAPER = ("ST-BAVA: Extending Segment Anything Model into Auditory and Temporal Dimensions for "
                 "Audio-Visual Segmentation (Seon et al., ICIP 2024; code Sunjuhyeong/SAM_STBAVA)")
_REFERENCE = ("s4", "ms3", "refavs", "avss")
_SAM2LOVE_PAPER = ("SAM2-LOVE: Segment Anything Model 2 in Language-aided Audio-Visual Scenes ("
                   "CVPR 2025; no code released: re-implementation)")
#: tiny SAM2-LOVE for the conformance test (64 px SAM2, 1-layer 32-wide fusion)
_SAM2LOVE_TINY = ("image_size=64", "output_size=32", "fusion.layers=1", "fusion.width=32", "fusion.heads=2",
                  "fusion.ffn=64")
_AURALSAM2_PAPER = ("AuralSAM2: Enabling SAM2 Hear Through Pyramid Audio-Visual Feature Prompting "
                    "(Y. Liu et al., arXiv 2506.01015; code yyliu01/AuralSAM2)")
#: tiny AuralSAM2 for the conformance test (64 px, one visual block on the finest level only)
_AURALSAM2_TINY = ("image_size=64", "output_size=32", "fuser.visual_blocks=[1,0,0]", "fuser.audio_blocks=1",
                   "fuser.sr_ratio=1")


def register(registry) -> None:
    """Add this package's baselines to the toolkit's baseline registry."""
    registry.add_spec(BaselineSpec(
        name="av2t", target="baselines.av2t.model:AV2TSAM", tasks=("s4", "ms3"), modalities=("audio", "image"),
        paper=_AV2T_PAPER, presets=_AV2T_PRESETS, config_dir="av2t", tiny=_AV2T_TINY,
        description="CLAP⊙CLIP -> pseudo text tokens -> frozen text encoder -> SAM2 (or SAM) prompt"))
    registry.add_spec(BaselineSpec(
        name="probe-clip-only", target="baselines.av2t.model:AV2TSAM", tasks=("s4", "ms3"), modalities=("image",),
        paper=_AV2T_PAPER + " — vision-only ablation (Tab. 2)", presets=_AV2T_PRESETS, config_dir="av2t",
        preset_overrides=("prompt_feature=clip",), tiny=_AV2T_TINY,
        description="AV2T-SAM prompted by CLIP image features only: no audio at all"))
    registry.add_spec(BaselineSpec(
        name="stbava", target="baselines.stbava.model:STBAVAModel", tasks=("s4", "ms3"),
        modalities=("audio", "image"), paper=_STBAVA_PAPER,
        presets=("cpu-small", "cpu-small-stage2", "cpu-sam2", "cpu-sam2-stage2", "paper-stage1",
                 "paper-stage2"), config_dir="stbava",
        tiny=("image_size=32", "output_size=32", "layers=1"),
        description="SAM ViT (or SAM2) + spatio-temporal bidirectional audio-visual attention, two stages"))
    registry.add_spec(BaselineSpec(
        name="sam2love", target="baselines.sam2love.model:SAM2LOVE", tasks=("refavs",),
        modalities=("audio", "image", "text"), paper=_SAM2LOVE_PAPER, presets=("cpu-small", "cpu-small-points", "paper"),
        config_dir="sam2love", tiny=_SAM2LOVE_TINY,
        description="fused audio/text/vision [seg] token prompts SAM2 on frame 0; SAM2 memory propagates"))
    registry.add_spec(BaselineSpec(
        name="auralsam2", target="baselines.auralsam2.model:AuralSAM2", tasks=("s4", "ms3", "refavs", "avss"),
        modalities=("audio", "image", "text"), paper=_AURALSAM2_PAPER, presets=("cpu-small", "paper"),
        config_dir="auralsam2", tiny=_AURALSAM2_TINY,
        description="frozen SAM2 + AuralFuser pyramid prompts in the mask decoder + AudioCon, tracked without prompts"))
    for kind, what in (("empty", "background everywhere"), ("full", "foreground everywhere"),
                       ("gt", "the ground truth itself (an oracle that checks the scoring path)")):
        registry.add_spec(BaselineSpec(
            name=kind, target="baselines.reference.model:ReferencePredictor", tasks=_REFERENCE, modalities=(),
            paper="reference predictor", presets=("default",), default_preset="default", config_dir="reference",
            trains=False, outputs=("binary",) if kind == "full" else ("semantic", "binary"),
            description=f"no features, no training: {what}"))
