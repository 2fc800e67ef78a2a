"""Packaged baseline configs: ``baselines/<dir>/configs/<preset>.yaml`` + ``key=value`` overrides.

A preset may start with ``_base_: <other preset>`` and set only what differs (a recursive merge;
chains are allowed, cycles are an error). A registered name may reuse another method's configs
with fixed overrides (``probe-clip-only`` is AV2T-SAM with ``prompt_feature=clip``): the registry
entry's ``config_dir`` and ``preset_overrides`` say so, and :func:`load_config` enforces them.
Light module (YAML only), safe to import from the CLI.
"""

from __future__ import annotations

from importlib import resources
from typing import Any, Iterable

import yaml

from avsbench_kit.config import apply_overrides, flatten, parse_override
from avsbench_kit.errors import ConfigError
from avsbench_kit.registry import did_you_mean

BASE_KEY = "_base_"


def _spec(name: str):
    from avsbench_kit.plugins import baseline_spec

    return baseline_spec(name)  # RegistryError with did-you-mean for unknown names


def preset_names(name: str) -> list[str]:
    """Config presets shipped for a registered baseline (e.g. ``["cpu-small", "paper"]``)."""
    root = resources.files("baselines").joinpath(_spec(name).configs_dir, "configs")
    if not root.is_dir():
        return []
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def merge(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """``child`` over ``base``, recursively for mappings (lists and scalars are replaced)."""
    out = dict(base)
    for key, value in child.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def read_preset(config_dir: str, preset: str, _chain: tuple[str, ...] = ()) -> dict[str, Any]:
    """One preset file with its ``_base_`` chain resolved."""
    if preset in _chain:
        raise ConfigError(f"config {config_dir}/{preset}: _base_ cycle {' -> '.join(_chain + (preset,))}")
    path = resources.files("baselines").joinpath(config_dir, "configs", f"{preset}.yaml")
    if not path.is_file():
        raise ConfigError(f"config {config_dir}/{_chain[-1] if _chain else preset}: _base_ {preset!r} does not exist")
    cfg = yaml.safe_load(path.read_text("utf-8")) or {}
    if not isinstance(cfg, dict):
        raise ConfigError(f"config {config_dir}/{preset} is not a mapping")
    base = cfg.pop(BASE_KEY, None)
    if base is None:
        return cfg
    return merge(read_preset(config_dir, str(base), _chain + (preset,)), cfg)


def load_config(name: str, preset: str = "cpu-small", overrides: Iterable[str] = ()) -> dict[str, Any]:
    """The resolved config of baseline ``name``: its preset, its fixed overrides, then the user's.

    A user override that contradicts a fixed one fails (``probe-clip-only prompt_feature=clap``
    would silently stop being the probe).
    """
    spec = _spec(name)
    names = preset_names(name)
    if preset not in names:
        raise ConfigError(f"baseline {name!r} has no config {preset!r}", hint=did_you_mean(preset, names))
    cfg = read_preset(spec.configs_dir, preset)
    fixed = list(spec.preset_overrides)
    cfg = apply_overrides(cfg, fixed)
    if "name" in cfg:
        cfg["name"] = name
    cfg = apply_overrides(cfg, list(overrides))
    resolved = flatten(cfg)
    for text in fixed:
        key, value = parse_override(text)
        if resolved.get(key) != value:
            raise ConfigError(
                f"baseline {name!r} fixes {key}={value!r}; got {key}={resolved.get(key)!r}",
                hint=f"drop the override, or use the base method ({spec.configs_dir}) for other values",
            )
    return cfg
