"""Building SAM2: config names, image sizes, the one weights policy, and the private-API check.

Weights policy (shared by the ``sam2_image`` cache encoder and every SAM2 baseline): a checkpoint is
a local ``.pt`` path or a hub id already in the local Hugging Face cache — never downloaded here, so
runs stay offline and reproducible. Random weights only when no checkpoint is given at all, and a
caller that requires weights (``require_checkpoint``) refuses to start without them.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import nn

from avsbench_kit.errors import ConfigError, DataError
from avsbench_kit.registry import did_you_mean

#: short config name -> sam2 package config path
SAM2_CONFIGS: dict[str, str] = {
    **{f"sam2.1_hiera_{s}": f"configs/sam2.1/sam2.1_hiera_{s}.yaml" for s in ("t", "s", "b+", "l")},
    **{f"sam2_hiera_{s}": f"configs/sam2/sam2_hiera_{s}.yaml" for s in ("t", "s", "b+", "l")},
}
#: the ``sam2`` releases whose private methods this layer was written and tested against
#: (keep in sync with pyproject.toml)
SAM2_VERSIONS = ">=1.1.0,<1.2"
#: private (underscore) methods of ``sam2`` that the layer calls, with the arguments it passes
PRIVATE_API: dict[str, tuple[str, ...]] = {
    "sam2.modeling.sam2_base:SAM2Base._prepare_memory_conditioned_features": (
        "frame_idx", "is_init_cond_frame", "current_vision_feats", "current_vision_pos_embeds",
        "feat_sizes", "output_dict", "num_frames"),
    "sam2.modeling.sam2_base:SAM2Base._encode_new_memory": (
        "current_vision_feats", "feat_sizes", "pred_masks_high_res", "object_score_logits",
        "is_mask_from_pts"),
    "sam2.modeling.sam.mask_decoder:MaskDecoder._dynamic_multimask_via_stability": (
        "all_mask_logits", "all_iou_scores"),
    "sam2.modeling.backbones.hieradet:Hiera._get_pos_embed": ("hw",),
}
_HUB_ID = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.+-]+$")


def missing_private_api() -> list[str]:
    """The private ``sam2`` methods (or their arguments) this layer needs but the installed package
    lacks; empty when the installed ``sam2`` fits."""
    import importlib

    missing = []
    for target, params in PRIVATE_API.items():
        module_name, qual = target.split(":")
        cls_name, method = qual.split(".")
        try:
            fn = getattr(getattr(importlib.import_module(module_name), cls_name), method)
        except (ImportError, AttributeError):
            missing.append(f"{qual} (not found)")
            continue
        have = set(inspect.signature(fn).parameters)
        lacking = [p for p in params if p not in have]
        if lacking:
            missing.append(f"{qual} (no argument {', '.join(lacking)})")
    return missing


def check_private_api() -> None:
    """Fail with one line naming what is missing, instead of an AttributeError mid-training."""
    missing = missing_private_api()
    if missing:
        from importlib.metadata import PackageNotFoundError, version

        try:
            have = version("sam2")
        except PackageNotFoundError:
            have = "unknown"
        raise ConfigError(f"the installed sam2 {have} lacks private methods the SAM2 layer calls: "
                          + "; ".join(missing),
                          hint=f'install a supported release: pip install "sam2{SAM2_VERSIONS}"')


def check_image_size(image_size: int) -> int:
    """SAM2's Hiera trunk downsamples by 32, so other sizes break deep inside the encoder."""
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size <= 0 \
            or image_size % 32:
        raise ConfigError(
            f"image_size={image_size!r} is not a positive multiple of 32",
            hint="SAM2's Hiera encoder downsamples by 32: use e.g. image_size=128, 256, 512 or 1024",
        )
    return image_size


def sam2_config_path(name: str) -> str:
    """``sam2.1_hiera_t`` -> ``configs/sam2.1/sam2.1_hiera_t.yaml`` (also accepts the full path)."""
    if name in SAM2_CONFIGS:
        return SAM2_CONFIGS[name]
    if name in SAM2_CONFIGS.values():
        return name
    raise ConfigError(f"unknown SAM2 config {name!r}", hint=did_you_mean(name, list(SAM2_CONFIGS)))


def resolve_checkpoint(spec: str | Path | None, config: str | None = None) -> Path | None:
    """A local ``.pt`` path, or a hub id already present in the local Hugging Face cache.

    With ``config`` (a short name or config path), a hub id made for another architecture is
    refused before loading. Never downloads.
    """
    if spec is None or str(spec) == "":
        return None
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    text = str(spec)
    if _HUB_ID.match(text) and not path.exists():
        from sam2.build_sam import HF_MODEL_ID_TO_FILENAMES

        hub_config, filename = HF_MODEL_ID_TO_FILENAMES.get(text, (None, None))
        if filename is None:
            raise ConfigError(
                f"unknown SAM2 hub id {text!r}",
                hint=did_you_mean(text, list(HF_MODEL_ID_TO_FILENAMES)) + " or pass a local .pt path",
            )
        if config is not None and sam2_config_path(config).split("/")[-1] != hub_config.split("/")[-1]:
            short = next((k for k, v in SAM2_CONFIGS.items() if v.split("/")[-1] == hub_config.split("/")[-1]),
                         hub_config)
            raise ConfigError(f"SAM2 checkpoint {text} is made for {hub_config}, not {config}",
                              hint=f"pass the matching config ({short})")
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(text, filename)
        except Exception:  # no hub client, or a broken cache: treat as not cached
            cached = None
        if isinstance(cached, str) and Path(cached).is_file():
            return Path(cached)
        raise ConfigError(
            f"SAM2 checkpoint {text!r} is not in the local Hugging Face cache (no download here)",
            hint=f"download it once: `huggingface-cli download {text} {filename}`, "
                 f"then pass {text} or the local path of {filename}",
        )
    raise ConfigError(
        f"SAM2 checkpoint {text} does not exist",
        hint="pass a local .pt file (e.g. sam2.1_hiera_tiny.pt) or leave the checkpoint empty for "
             "random weights",
    )


def load_state(model: nn.Module, path: Path, config: str) -> None:
    """Load a SAM2 ``.pt``; a corrupt file or a config mismatch becomes a one-line user error."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(
            f"cannot read SAM2 checkpoint {path}: {type(exc).__name__}",
            hint="the file is truncated or not a SAM2 .pt: download it again",
        ) from None
    state = blob.get("model", blob) if isinstance(blob, dict) else blob
    if not isinstance(state, Mapping):
        raise DataError(f"SAM2 checkpoint {path} holds no state dict", hint="download it again")
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        first = str(exc).strip().splitlines()[-1].strip()[:160]
        raise ConfigError(
            f"SAM2 checkpoint {path} does not fit sam2.config={config}: {first}",
            hint="pass the config the checkpoint was made for (e.g. sam2.1_hiera_large.pt -> "
                 "sam2.config=sam2.1_hiera_l)",
        ) from None
    if missing or unexpected:
        raise ConfigError(
            f"SAM2 checkpoint {path} does not fit sam2.config={config}: {len(missing)} missing "
            f"keys (e.g. {list(missing)[:2]}), {len(unexpected)} unexpected (e.g. {list(unexpected)[:2]})",
            hint="pass the config the checkpoint was made for (e.g. sam2_hiera_large.pt -> "
                 "sam2.config=sam2_hiera_l)",
        )


def build_sam2_model(config: str, checkpoint: Path | None, image_size: int, init_seed: int) -> nn.Module:
    """The SAM2 model (eval mode, CPU) of ``config`` at ``image_size``; random weights are a
    function of ``init_seed`` only, so the cache encoder and a baseline get the same ones."""
    from sam2.build_sam import build_sam2

    check_private_api()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        model = build_sam2(sam2_config_path(config), None, device="cpu", mode="eval",
                           hydra_overrides_extra=[f"++model.image_size={image_size}"],
                           apply_postprocessing=False)
    if checkpoint is not None:
        load_state(model, checkpoint, config)
    return model


def hiera_block_dims(embed_dim: int, stages: Sequence[int], dim_mul: float = 2.0) -> list[int]:
    """Input width of every Hiera block (a stage's first block still sees the previous width).

    These are the adapter widths of SAMA-style prompts (Hiera-L: 144x3, 288x6, 576x36, 1152x3).
    """
    dims, width = [], embed_dim
    for s, depth in enumerate(stages):
        for i in range(depth):
            dims.append(width if not (s > 0 and i == 0) else int(width / dim_mul))
        width = int(width * dim_mul)
    return dims
