"""The contract every baseline fulfils, so one trainer, one scorer and one probe suite serve them all.

A baseline never opens dataset files: it declares the feature caches it consumes
(:meth:`Baseline.feature_requests`), receives batches from the feature reader, and returns a
:class:`BaselineOutput` — per-frame logits at ``cfg["output_size"]`` plus whatever auxiliary
outputs its losses need. :meth:`Baseline.loss` returns a dict of named components with a ``total``
(the trainer logs every component, the run record keeps them). :meth:`Baseline.param_groups` says
which parameters train with which learning-rate multiplier and weight decay. :meth:`describe` and
:meth:`missing_weights` make runs honest about what built them.

Config discipline: a baseline reads its whole config in ``__init__``; the run tracks the reads
(:class:`TrackedConfig`) and refuses a key that nothing read — a preset key the code ignores
would otherwise look like a setting that had an effect.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from avsbench_kit.errors import ConfigError, DataError

#: top-level keys the toolkit itself reads (the trainer, the run orchestration)
TOOLKIT_KEYS = ("name", "seed", "train", "augment", "task", "num_classes")
#: parameter-name fragments that get no weight decay (norms, biases, embeddings, learned tokens)
NO_DECAY = ("bias", "norm", "embed", "token", "pos", "bn", "ln")


@dataclass
class BaselineOutput:
    """What ``forward`` returns: logits ``[B,T,H,W]`` (binary) or ``[B,T,C,H,W]`` (AVSS classes,
    index 0 = background) and auxiliary tensors (predicted IoUs, object scores, embeddings...)."""

    logits: torch.Tensor
    aux: dict[str, Any] = field(default_factory=dict)


@dataclass
class ParamGroup:
    """Parameters that share an LR multiplier and a weight decay (None = ``train.weight_decay``).
    The schedule's learning rate is multiplied by ``lr_mult`` at every step."""

    name: str
    params: list[nn.Parameter]
    lr_mult: float = 1.0
    weight_decay: float | None = None


# -- helpers -------------------------------------------------------------------------------------
def feature_request(encoder: str, overrides: tuple[str, ...] | list[str] = ()) -> Any:
    """A :class:`avsbench_kit.features.base.FeatureRequest` (imported lazily: the features
    package is heavy and owned elsewhere)."""
    from avsbench_kit.features.base import FeatureRequest

    return FeatureRequest(encoder, tuple(str(o) for o in overrides))


def as_size(value: Any, key: str = "output_size") -> tuple[int, int]:
    """``224`` or ``[224, 224]`` -> ``(224, 224)``."""
    if isinstance(value, bool):
        value = None
    if isinstance(value, int) and value > 0:
        return (value, value)
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        return (int(value[0]), int(value[1]))
    raise ConfigError(f"{key}={value!r} is not a size", hint=f"use {key}=224 or {key}=[224,224]")


def masks_at(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Ground-truth masks [..., H, W] resized with nearest neighbour (binary stays binary)."""
    if tuple(masks.shape[-2:]) == tuple(size):
        return masks.float()
    lead = masks.shape[:-2]
    flat = masks.reshape(-1, 1, *masks.shape[-2:]).float()
    return F.interpolate(flat, size=size, mode="nearest").reshape(*lead, *size)


def check_batch(batch: dict, needed: list[str]) -> None:
    """Fail with the missing encoder names (a reader/config mismatch), not a KeyError."""
    feats = batch.get("features", {})
    missing = [n for n in needed if n not in feats]
    if missing:
        raise DataError(
            f"batch {batch.get('key', [])[:2]}... lacks features {missing} (has {sorted(feats)})",
            hint="request them through the baseline's feature_requests() when building batches",
        )


_ON, _OFF = (True, "on", "true", "yes", 1), (False, "off", "false", "no", 0)
MODALITY_MODES = {"full": (), "vision-only": ("audio", "text"), "no-audio": ("audio",), "no-text": ("text",)}


def input_enabled(cfg: dict[str, Any], modality: str) -> bool:
    """Whether input ``modality`` (``audio`` / ``text``) is on: the ``audio:`` / ``text:`` switch
    (on|off|true|false; absent = on) and ``modality:`` (full | vision-only | no-audio | no-text)."""
    mode = cfg.get("modality", "full")
    if mode not in MODALITY_MODES:
        from avsbench_kit.registry import did_you_mean

        raise ConfigError(f"modality={mode!r} is not one of {', '.join(MODALITY_MODES)}",
                          hint=did_you_mean(str(mode), list(MODALITY_MODES)))
    value = cfg.get(modality, True)
    value = value.lower() if isinstance(value, str) else value
    if value not in _ON + _OFF:
        raise ConfigError(f"{modality}={cfg.get(modality)!r} must be on or off", hint=f"e.g. {modality}=off")
    return value in _ON and modality not in MODALITY_MODES[mode]


def decay_groups(named: Iterable[tuple[str, nn.Parameter]] | nn.Module, *, name: str = "all",
                 lr_mult: float = 1.0, no_decay: tuple[str, ...] = NO_DECAY) -> list[ParamGroup]:
    """Trainable parameters split into ``<name>`` (decayed) and ``<name>.no_decay`` (norms, biases,
    embeddings, learned tokens, 1-d tensors: weight decay 0, as SAM2 and most transformers train)."""
    items = named.named_parameters() if isinstance(named, nn.Module) else named
    decay, keep = [], []
    for pname, p in items:
        if not p.requires_grad:
            continue
        parts = pname.lower().replace(".", "_").split("_")
        (keep if p.ndim <= 1 or any(f in parts for f in no_decay) else decay).append(p)
    groups = [ParamGroup(name, decay, lr_mult)] if decay else []
    if keep:
        groups.append(ParamGroup(f"{name}.no_decay", keep, lr_mult, 0.0))
    return groups


def encoder_weights_missing(encoder: str, overrides: Iterable[str], key: str) -> str | None:
    """``"<key>: weights=... (<encoder> pretrained weights)"`` when feature encoder ``encoder``
    would run on random weights (its preset and ``overrides`` name none), else None."""
    from avsbench_kit.features.base import build_encoder
    from avsbench_kit.features.encoders.handcrafted import ParameterFreeEncoder

    enc = build_encoder(encoder, tuple(overrides))
    if enc.weights or isinstance(enc, ParameterFreeEncoder):
        return None
    return f"{key}: weights=<local dir or hub id> ({encoder} pretrained weights)"


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class TrackedConfig(dict):
    """A config dict that records which dotted keys were read (``cfg[k]``, ``cfg.get(k)``,
    iteration). Copies share the record, so ``copy.deepcopy(cfg)`` inside a model still counts."""

    def __init__(self, data: dict[str, Any], reads: set[str] | None = None, prefix: str = "",
                 inactive: set[str] | None = None) -> None:
        super().__init__()
        self.reads = reads if reads is not None else set()
        #: dotted prefixes the model declared unused in this configuration (another variant's keys)
        self.inactive = inactive if inactive is not None else set()
        self.prefix = prefix
        for k, v in data.items():
            super().__setitem__(k, TrackedConfig(v, self.reads, f"{prefix}{k}.", self.inactive)
                                if isinstance(v, dict) and not isinstance(v, TrackedConfig) else v)

    def _mark(self, key: Any) -> None:
        self.reads.add(f"{self.prefix}{key}")

    def __getitem__(self, key: Any) -> Any:
        self._mark(key)
        return super().__getitem__(key)

    def get(self, key: Any, default: Any = None) -> Any:
        self._mark(key)
        return super().get(key, default)

    def __iter__(self):
        for k in dict.keys(self):  # iterating (also dict(cfg), {**cfg}) reads every key
            self._mark(k)
            yield k

    def items(self):  # type: ignore[override]
        return [(k, dict.__getitem__(self, k)) for k in self]

    def values(self):  # type: ignore[override]
        return [v for _, v in self.items()]

    def __deepcopy__(self, memo: dict) -> "TrackedConfig":
        out = TrackedConfig({}, self.reads, self.prefix, self.inactive)
        for k in dict.keys(self):
            dict.__setitem__(out, k, copy.deepcopy(dict.__getitem__(self, k), memo))
        return out

    def is_inactive(self, key: str) -> bool:
        return any(key == p or key.startswith(p + ".") for p in self.inactive)

    def unread(self, keys: Iterable[str]) -> list[str]:
        """Dotted ``keys`` (leaves of the preset) that nothing read, nor any parent of (keys of a
        variant the model declared inactive are not counted: see :meth:`Baseline.inactive`)."""
        out = []
        for key in keys:
            parts = key.split(".")
            if parts[0] in TOOLKIT_KEYS or self.is_inactive(key):
                continue
            if not any(".".join(parts[:i]) in self.reads and not self._is_dict(parts[:i])
                       for i in range(1, len(parts) + 1)):
                out.append(key)
        return out

    def _is_dict(self, parts: list[str]) -> bool:
        node: Any = self
        for p in parts:
            node = dict.get(node, p) if isinstance(node, dict) else None
        return isinstance(node, dict)


def plain(cfg: Any) -> Any:
    """A tracked config as plain dicts (for JSON, hashing and records)."""
    if isinstance(cfg, dict):
        return {k: plain(dict.__getitem__(cfg, k)) for k in dict.keys(cfg)}
    if isinstance(cfg, list):
        return [plain(v) for v in cfg]
    return cfg


# -- the contract --------------------------------------------------------------------------------
class Baseline(nn.Module):
    """Base class: build from a config dict, forward a reader batch to a :class:`BaselineOutput`."""

    #: registry name of the method
    name: ClassVar[str] = "baseline"
    #: whether batches must carry raw ``frames`` (e.g. an image encoder run on the fly)
    needs_frames: bool = False

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        self.cfg = copy.deepcopy(cfg)
        self.output_size = as_size(self.cfg.get("output_size"))
        self.inputs = {m: input_enabled(self.cfg, m) for m in ("audio", "text")}

    def inactive(self, *keys: str) -> None:
        """Declare config keys (or sub-blocks) that this configuration does not use — another
        variant's settings, e.g. ``text_encoder.transformer`` under ``text_encoder.kind=minilm``.
        The preset may keep them as that variant's defaults; a user override of one is refused."""
        if isinstance(self.cfg, TrackedConfig):
            self.cfg.inactive.update(keys)

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> "Baseline":
        """Build from a resolved config (a packaged preset with ``key=value`` overrides applied)."""
        return cls(cfg)

    # ---- what subclasses implement -------------------------------------------------------------
    def feature_requests(self) -> list:
        """The feature caches (``FeatureRequest``) this baseline consumes. With an input switched
        off, no cache of that modality may be requested (the probes and the conformance test rely
        on it)."""
        raise NotImplementedError

    def forward(self, batch: dict) -> BaselineOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss(self, out: BaselineOutput, batch: dict) -> dict[str, torch.Tensor]:  # pragma: no cover
        """``{"total": scalar with grad, "<component>": scalar, ...}``."""
        raise NotImplementedError

    # ---- defaults subclasses may refine --------------------------------------------------------
    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters the paper trains (everything with ``requires_grad``)."""
        return [p for p in self.parameters() if p.requires_grad]

    def param_groups(self) -> list[ParamGroup]:
        """One group of every trainable parameter at the schedule's LR and ``train.weight_decay``."""
        return [ParamGroup("all", self.trainable_parameters())]

    def modalities(self) -> tuple[str, ...]:
        """Inputs this configured instance reads (``audio``/``image``/``text``): the registry
        spec's, minus the ones switched off."""
        from avsbench_kit.plugins import BASELINES, load_plugins

        load_plugins()
        name = str(self.cfg.get("name", self.name))
        declared = BASELINES.spec(name).modalities if name in BASELINES else ("audio", "image", "text")
        return tuple(m for m in declared if self.inputs.get(m, True))

    def backbone_info(self) -> dict[str, Any]:
        """What built the frozen parts (config names, image size...)."""
        return {}

    def checkpoints(self) -> dict[str, str]:
        """``{part: local file}`` of pretrained weights loaded (their sha256 goes to the record)."""
        return {}

    @classmethod
    def missing_weights(cls, cfg: dict[str, Any]) -> list[str]:
        """Pretrained parts ``cfg`` requires but does not give (``"sam2.checkpoint: SAM2 Hiera-L
        .pt"``), checked before the model is built so the run fails at once, naming all of them."""
        return []

    def parameter_counts(self) -> dict[str, int]:
        """Trainable / frozen / total parameter counts (for run records and listings)."""
        trainable = sum(p.numel() for p in self.trainable_parameters())
        total = sum(p.numel() for p in self.parameters())
        return {"trainable": trainable, "frozen": total - trainable, "total": total}

    def describe(self) -> dict[str, Any]:
        """Backbone, checkpoint hashes and trainable/frozen counts per top-level module."""
        trainable = {id(p) for p in self.trainable_parameters()}
        modules: dict[str, dict[str, int]] = {}
        for mname, module in self.named_children():
            counts = {"trainable": 0, "frozen": 0}
            for p in module.parameters():
                counts["trainable" if id(p) in trainable else "frozen"] += p.numel()
            modules[mname] = counts
        own = [p for n, p in self.named_parameters(recurse=False)]
        if own:
            modules["<self>"] = {"trainable": sum(p.numel() for p in own if id(p) in trainable),
                                 "frozen": sum(p.numel() for p in own if id(p) not in trainable)}
        return {"name": str(self.cfg.get("name", self.name)), "class": f"{type(self).__module__}.{type(self).__name__}",
                "backbone": self.backbone_info(),
                "checkpoints": {k: {"path": str(v), "sha256": file_sha256(v)} for k, v in self.checkpoints().items()},
                "parameters": self.parameter_counts(), "modules": modules,
                "modalities": list(self.modalities())}
