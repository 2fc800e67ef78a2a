"""Interim stand-ins for contract-v2 names until the lead's `Contract v2` commit is merged
(then this module is deleted and model.py imports them from baselines.base)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass
class BaselineOutput:
    logits: torch.Tensor
    aux: dict[str, Any] = field(default_factory=dict)


@dataclass
class ParamGroup:
    name: str
    params: list
    lr_mult: float = 1.0
    weight_decay: float | None = None


_NO_DECAY = ("norm", "bn", "bias", "pos_embed", "token")


def decay_groups(named, lr_mult: float = 1.0, name: str = "all") -> list[ParamGroup]:
    named = list(named.named_parameters() if isinstance(named, nn.Module) else named)
    no = [p for n, p in named if p.ndim <= 1 or any(k in n.lower() for k in _NO_DECAY)]
    ids = {id(p) for p in no}
    return [ParamGroup(f"{name}.decay", [p for _, p in named if id(p) not in ids], lr_mult),
            ParamGroup(f"{name}.no_decay", no, lr_mult, 0.0)]


def input_enabled(cfg: dict, kind: str) -> bool:
    if cfg.get("modality") == "vision-only":
        return False
    value = cfg.get(kind, True)
    return value not in (False, "off", "false", "no")


def encoder_weights_missing(encoder: str, overrides, key: str):
    from avsbench_kit.features.base import build_encoder
    from avsbench_kit.features.encoders.handcrafted import ParameterFreeEncoder

    enc = build_encoder(encoder, tuple(overrides))
    if enc.weights or isinstance(enc, ParameterFreeEncoder):
        return None
    return f"{key}: weights=<local dir or hub id> ({encoder} pretrained weights)"
