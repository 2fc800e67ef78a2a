"""Baselines shipped with avsbench-kit, one sub-package per method.

The toolkit calls :func:`register` through the ``avsbench_kit.plugins`` entry point; a third-party
package adds its own methods the same way (an entry point in that group whose module has a
``register(registry)`` function). Register lazily (``"module:Class"``) so listing stays fast.

Registry metadata: ``task`` (comma-separated dataset tasks), ``paper``, ``configs`` (preset names),
``config_dir`` (which ``baselines/<dir>/configs/`` holds them) and ``preset_overrides`` (overrides
that define the entry, applied and enforced by :func:`baselines.configs.load_config`).
"""

from __future__ import annotations

_AURALSAM2_PAPER = ("AuralSAM2: Enabling SAM2 Hear Through Pyramid Audio-Visual Feature Prompting "
                    "(Y. Liu et al., arXiv 2506.01015; code yyliu01/AuralSAM2)")
_AV2T_PAPER = "AV2T-SAM: Audio Visual Segmentation Through Text Embeddings (K. Lee et al.; code bok-bok/AV2T-SAM)"


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
    registry.add("auralsam2", "baselines.auralsam2.model:AuralSAM2", task="s4,ms3,refavs,avss",
                 paper=_AURALSAM2_PAPER, configs=("cpu-small", "paper"), config_dir="auralsam2",
                 preset_overrides=(),
                 description="frozen SAM2 + AuralFuser pyramid prompts in the mask decoder + AudioCon, "
                             "tracked without prompts")
