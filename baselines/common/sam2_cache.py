"""The ``sam2_image`` cache request of a SAM2-based baseline, derived from its own config keys."""

from __future__ import annotations

from typing import Any


def sam2_cache_overrides(cfg: dict[str, Any]) -> tuple[str, ...]:
    """Overrides making the ``sam2_image`` cache come from the same SAM2 (config, weights or
    random-init seed) at the same image size as the model reading it.

    Reads ``sam2.{config,checkpoint,init_seed}``, ``image_size`` and
    ``features.{sam2_levels,sam2_overrides}``.
    """
    from avsbench_kit.models.sam2 import sam2_config_path

    sam_cfg, feats = cfg["sam2"], cfg["features"]
    out = [f"model_config={sam2_config_path(sam_cfg['config'])}",
           f"image_size={cfg['image_size']}", f"seed={int(sam_cfg.get('init_seed', 0))}"]
    if sam_cfg.get("checkpoint"):
        out.append(f"weights={sam_cfg['checkpoint']}")
    if feats.get("sam2_levels"):
        out.append("levels=[" + ",".join(feats["sam2_levels"]) + "]")
    return tuple(out) + tuple(feats.get("sam2_overrides") or ())
