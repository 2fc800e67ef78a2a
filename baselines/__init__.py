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
_REFERENCE = ("s4", "ms3", "refavs", "avss")


def register(registry) -> None:
    """Add this package's baselines to the toolkit's baseline registry."""
    registry.add_spec(BaselineSpec(
        name="av2t", target="baselines.av2t.model:AV2TSAM", tasks=("s4", "ms3"), modalities=("audio", "image"),
        paper=_AV2T_PAPER, presets=("cpu-small", "paper", "paper-noadapter"), config_dir="av2t", tiny=_AV2T_TINY,
        description="CLAP⊙CLIP -> pseudo text tokens -> frozen text encoder -> SAM2 prompt"))
    registry.add_spec(BaselineSpec(
        name="probe-clip-only", target="baselines.av2t.model:AV2TSAM", tasks=("s4", "ms3"), modalities=("image",),
        paper=_AV2T_PAPER + " — vision-only ablation (Tab. 2)", presets=("cpu-small", "paper"), config_dir="av2t",
        preset_overrides=("prompt_feature=clip",), tiny=_AV2T_TINY,
        description="AV2T-SAM prompted by CLIP image features only: no audio at all"))
    for kind, what in (("empty", "background everywhere"), ("full", "foreground everywhere"),
                       ("gt", "the ground truth itself (an oracle that checks the scoring path)")):
        registry.add_spec(BaselineSpec(
            name=kind, target="baselines.reference.model:ReferencePredictor", tasks=_REFERENCE, modalities=(),
            paper="reference predictor", presets=("default",), default_preset="default", config_dir="reference",
            trains=False, outputs=("binary",) if kind == "full" else ("semantic", "binary"),
            description=f"no features, no training: {what}"))
