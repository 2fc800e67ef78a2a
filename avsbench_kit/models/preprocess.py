"""The image preprocessing SAM (v1) and SAM2 share: square resize + ImageNet mean/std.

Why one helper: the ``sam_image``-style caches and every SAM-based baseline must feed the encoder
exactly the same pixels, so both wrappers call this instead of each keeping its own copy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: SAM's and SAM2's normalisation (ImageNet statistics; SAM states them on the 0-255 scale)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def register_pixel_stats(module: nn.Module) -> None:
    """Give ``module`` non-persistent ``pixel_mean`` / ``pixel_std`` buffers [1,3,1,1] (they follow
    the module's device, and are not part of any checkpoint)."""
    module.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
    module.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)


def resize_normalise(frames: torch.Tensor, size: int, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """[N,3,H,W] RGB in [0,1] -> [N,3,size,size]: plain antialiased bilinear resize to a square
    (not SAM's longest-side resize + pad; the same for square frames) and ``(x - mean) / std``."""
    frames = frames.float()
    if frames.shape[-2:] != (size, size):
        frames = F.interpolate(frames, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return (frames - mean) / std
