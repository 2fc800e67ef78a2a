"""Training-time frame augmentation: horizontal flip and scale-crop, applied identically to a
sample's frames and GT masks (and to every frame of the clip, so motion stays coherent).

Config block (off by default)::

    augment: {hflip: 0.5, scale_crop: [0.8, 1.0]}

``hflip``: probability of mirroring a sample; ``scale_crop: [lo, hi]``: crop a square-scaled
window whose side is a uniform fraction in [lo, hi] of the image side, at a uniform position,
and resize it back (frames bilinear, masks nearest so class ids and 0/1 stay exact). Frames and
masks may have different resolutions: both are resampled through one normalised transform.

Why a guard: features cached from images (``sam2_image``, ``vit``, ``clip``...) describe the
un-augmented frames, so they would no longer line up with augmented masks; and a flip mirrors
left/right while a stereo audio cache keeps them. :func:`check_augment_allowed` refuses both.
"""

from __future__ import annotations

from typing import Any, Iterable

from avsbench_kit.errors import ConfigError

AUGMENT_DEFAULTS: dict[str, Any] = {"hflip": 0.0, "scale_crop": None}
_OFF_HINT = "set augment.hflip=0 and augment.scale_crop=null (the default)"


def augment_config(raw: dict[str, Any] | None) -> dict[str, Any]:
    """The validated ``augment`` block with defaults filled in (ConfigError naming the key)."""
    raw = dict(raw or {})
    unknown = sorted(set(raw) - set(AUGMENT_DEFAULTS))
    if unknown:
        raise ConfigError(f"augment.{unknown[0]} is not an augmentation", hint=f"known: {sorted(AUGMENT_DEFAULTS)}")
    cfg = {**AUGMENT_DEFAULTS, **raw}
    p = cfg["hflip"]
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ConfigError(f"augment.hflip={p!r} must be a probability in [0, 1]", hint="e.g. augment.hflip=0.5")
    cfg["hflip"] = float(p)
    sc = cfg["scale_crop"]
    if sc is not None:
        if not (isinstance(sc, (list, tuple)) and len(sc) == 2
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in sc)
                and 0.0 < sc[0] <= sc[1] <= 1.0):
            raise ConfigError(f"augment.scale_crop={sc!r} must be [min, max] side fractions with 0 < min <= max <= 1",
                              hint="e.g. augment.scale_crop=[0.8,1.0], or null for no crop")
        cfg["scale_crop"] = [float(sc[0]), float(sc[1])]
    return cfg


def is_enabled(cfg: dict[str, Any] | None) -> bool:
    """True when the (validated) block changes anything."""
    cfg = augment_config(cfg)
    return cfg["hflip"] > 0 or (cfg["scale_crop"] is not None and cfg["scale_crop"][0] < 1.0)


def check_augment_allowed(requests: Iterable[Any], cfg: dict[str, Any] | None = None) -> None:
    """Refuse augmentation next to caches it would invalidate: any image-modality cache, and (when
    flipping) a stereo audio cache. ``cfg`` None = assume flips and crops are both on."""
    from avsbench_kit.features.base import build_encoder

    flips = cfg is None or augment_config(cfg)["hflip"] > 0
    for req in requests:
        enc = build_encoder(req.encoder, req.overrides)
        if enc.modality == "image":
            raise ConfigError(
                f"augment: the {req.encoder} feature cache is spatial (image features of the un-augmented "
                "frames), so it would no longer match augmented masks",
                hint=f"{_OFF_HINT}, or use a baseline that reads raw frames",
            )
        if flips and enc.modality == "audio" and enc.cfg.get("channels") == "stereo":
            raise ConfigError(
                f"augment.hflip mirrors left and right but the stereo {req.encoder} cache keeps them",
                hint=f"use {req.encoder} channels=mono, or augment.hflip=0",
            )


def augment_batch(batch: dict[str, Any], cfg: dict[str, Any] | None, generator: Any) -> dict[str, Any]:
    """A copy of ``batch`` with ``frames [B,T,3,H,W]`` and ``masks [B,T,h,w]`` augmented per sample.

    Four uniforms per sample are drawn from ``generator`` (a seeded ``torch.Generator``) in
    batch order -- flip, scale, x, y -- whichever parts are switched on, so a run's augmentations
    depend only on its seed. Padded time steps stay zero; nothing else in the batch changes.
    """
    import torch
    import torch.nn.functional as F

    cfg = augment_config(cfg)
    if not is_enabled(cfg):
        return batch
    frames, masks = batch.get("frames"), batch.get("masks")
    if frames is None:
        raise ConfigError("augment needs raw frames in the batch (a baseline with needs_frames=True)",
                          hint=_OFF_HINT)
    lo, hi = cfg["scale_crop"] or (1.0, 1.0)
    out = dict(batch)
    new_frames = frames.clone()
    new_masks = None if masks is None else masks.clone()
    draws = torch.rand(frames.shape[0], 4, generator=generator, dtype=torch.float64)
    for i, (u_flip, u_scale, u_x, u_y) in enumerate(draws.tolist()):
        flip = u_flip < cfg["hflip"]
        s = lo + (hi - lo) * u_scale
        if s >= 1.0:  # no crop: nothing, or an exact flip
            if flip:
                new_frames[i] = frames[i].flip(-1)
                if new_masks is not None:
                    new_masks[i] = masks[i].flip(-1)
            continue
        # output coordinate u in [-1, 1] reads input x = cx + (+-s) u: a window of side s at centre cx, cy
        cx, cy = (2 * u_x - 1) * (1 - s), (2 * u_y - 1) * (1 - s)
        theta = torch.tensor([[-s if flip else s, 0.0, cx], [0.0, s, cy]], dtype=frames.dtype, device=frames.device)
        new_frames[i] = _warp(frames[i], theta, "bilinear", F)
        if new_masks is not None:
            new_masks[i] = _warp(masks[i].unsqueeze(1), theta.to(masks.dtype), "nearest", F).squeeze(1)
    out["frames"] = new_frames
    if new_masks is not None:
        out["masks"] = new_masks
    return out


def _warp(x: Any, theta: Any, mode: str, F: Any) -> Any:
    """Resample ``x [T, C, H, W]`` through the 2x3 normalised transform ``theta`` (same for all T)."""
    grid = F.affine_grid(theta.unsqueeze(0).expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode=mode, padding_mode="border", align_corners=False)
