"""Packaged YAML presets + ``key=value`` overrides, validated, with a stable hash.

We use OmegaConf only as a YAML/dot-list parser and container: no Hydra global state (sam2 uses
Hydra internally and must be free to initialise it).
"""

from __future__ import annotations

from importlib import resources
from typing import Any, Iterable

import yaml

from avsbench_kit.errors import ConfigError
from avsbench_kit.hashing import sha256_obj
from avsbench_kit.registry import did_you_mean

PRESET_PACKAGE = "avsbench_kit.presets"


def preset_names(group: str) -> list[str]:
    """Names of the presets of a group (``presets/<group>/<name>.yaml``)."""
    root = resources.files(PRESET_PACKAGE).joinpath(group)
    if not root.is_dir():
        return []
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def load_preset(group: str, name: str) -> dict[str, Any]:
    """Load ``presets/<group>/<name>.yaml`` as a plain nested dict."""
    names = preset_names(group)
    if name not in names:
        raise ConfigError(f"unknown {group} preset {name!r}", hint=did_you_mean(name, names))
    text = resources.files(PRESET_PACKAGE).joinpath(group, f"{name}.yaml").read_text("utf-8")
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"preset {group}/{name} is not a mapping")
    return data


def flatten(cfg: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}} -> {"a.b": 1}`` (leaves only)."""
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``key=value`` and parse the value as YAML (so ``3`` is an int, ``true`` a bool)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {text!r} is not of the form key=value", hint="example: seed=3")
    from omegaconf import OmegaConf

    try:
        value = OmegaConf.to_container(OmegaConf.from_dotlist([f"v={raw}"]))["v"]  # type: ignore[index]
    except Exception:
        value = raw
    return key, value


def _type_ok(old: Any, new: Any) -> bool:
    if old is None or new is None:
        return True
    if isinstance(old, bool) or isinstance(new, bool):
        return isinstance(old, bool) and isinstance(new, bool)
    if isinstance(old, float) and isinstance(new, int):
        return True
    if isinstance(old, (list, tuple)):
        return isinstance(new, (list, tuple))
    return isinstance(new, type(old))


def apply_overrides(cfg: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of ``cfg`` with dotted ``key=value`` overrides applied.

    Unknown keys and values whose type differs from the preset's fail with a did-you-mean hint:
    a typo must never silently become a new key.
    """
    import copy

    out = copy.deepcopy(cfg)
    known = flatten(cfg)
    for text in overrides:
        key, value = parse_override(text)
        if key not in known:
            raise ConfigError(f"unknown config key {key!r}", hint=did_you_mean(key, list(known)))
        old = known[key]
        if not _type_ok(old, value):
            raise ConfigError(
                f"{key}={value!r} has type {type(value).__name__}, expected {type(old).__name__}",
                hint=f"the default is {key}={old!r}",
            )
        if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return out


def config_hash(cfg: dict[str, Any]) -> str:
    """Stable hash of a resolved config (sorted keys, canonical JSON)."""
    return sha256_obj(cfg)
