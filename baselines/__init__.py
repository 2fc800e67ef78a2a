"""Baselines shipped with avsbench-kit, one sub-package per method.

The toolkit calls :func:`register` through the ``avsbench_kit.plugins`` entry point; a third-party
package adds its own methods the same way (an entry point in that group whose module has a
``register(registry)`` function). Register lazily (``"module:Class"``) so listing stays fast.

Registry metadata: ``task`` (comma-separated dataset tasks), ``paper``, ``configs`` (preset names),
``config_dir`` (which ``baselines/<dir>/configs/`` holds them) and ``preset_overrides`` (overrides
that define the entry, applied and enforced by :func:`baselines.configs.load_config`).
"""

from __future__ import annotations

_AV2T_PAPER = "AV2T-SAM: Audio Visual Segmentation Through Text Embeddings (K. Lee et al.; code bok-bok/AV2T-SAM)"
_SAM2LOVE_PAPER = ("SAM2-LOVE: Segment Anything Model 2 in Language-aided Audio-Visual Scenes (CVPR 2025; "
                   "no code released — re-implementation)")


def register(registry) -> None:
    """Add this package's baselines to the toolkit's baseline registry."""
    registry.add("av2t", "baselines.av2t.model:AV2TSAM", task="s4,ms3", paper=_AV2T_PAPER,
                 configs=("cpu-small", "paper"), config_dir="av2t", preset_overrides=(),
                 description="CLAP⊙CLIP -> pseudo text tokens -> frozen text encoder -> SAM2 prompt")
    registry.add("probe-clip-only", "baselines.av2t.model:AV2TSAM", task="s4,ms3",
                 paper=_AV2T_PAPER + " — vision-only ablation (Tab. 2)",
                 configs=("cpu-small", "paper"), config_dir="av2t",
                 preset_overrides=("prompt_feature=clip",),
                 description="AV2T-SAM prompted by CLIP image features only: no audio at all")
    registry.add("sam2love", "baselines.sam2love.model:SAM2LOVE", task="refavs", paper=_SAM2LOVE_PAPER,
                 configs=("cpu-small", "paper"), config_dir="sam2love", preset_overrides=(),
                 description="fused audio/text/vision [seg] token prompts SAM2 frame 0; memory propagates")
