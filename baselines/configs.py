"""Packaged baseline configs: ``baselines/<dir>/configs/<preset>.yaml`` + ``key=value`` overrides.

A registered name may reuse another method's configs with fixed overrides (``probe-clip-only`` is
AV2T-SAM with ``prompt_feature=clip``): the registry entry's ``config_dir`` and
``preset_overrides`` say so, and :func:`load_config` enforces them. Light module (YAML only), safe
to import from the CLI.
"""

from __future__ import annotations

from importlib import resources
from typing import Any, Iterable

import yaml

from avsbench_kit.config import apply_overrides, flatten, parse_override
from avsbench_kit.errors import ConfigError
from avsbench_kit.registry import did_you_mean


def _meta(name: str) -> dict[str, Any]:
    from avsbench_kit.plugins import BASELINES, load_plugins

    load_plugins()
    return BASELINES.meta(name)  # RegistryError with did-you-mean for unknown names


def preset_names(name: str) -> list[str]:
    """Config presets shipped for a registered baseline (e.g. ``["cpu-small", "paper"]``)."""
    root = resources.files("baselines").joinpath(_meta(name).get("config_dir", name), "configs")
    if not root.is_dir():
        return []
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def load_config(name: str, preset: str = "cpu-small", overrides: Iterable[str] = ()) -> dict[str, Any]:
    """The resolved config of baseline ``name``: its preset, its fixed overrides, then the user's.

    A user override that contradicts a fixed one fails (``probe-clip-only prompt_feature=clap``
    would silently stop being the probe).
    """
    meta = _meta(name)
    names = preset_names(name)
    if preset not in names:
        raise ConfigError(f"baseline {name!r} has no config {preset!r}", hint=did_you_mean(preset, names))
    text = resources.files("baselines").joinpath(meta.get("config_dir", name), "configs",
                                                  f"{preset}.yaml").read_text("utf-8")
    cfg = yaml.safe_load(text) or {}
    if not isinstance(cfg, dict):
        raise ConfigError(f"config {name}/{preset} is not a mapping")
    fixed = list(meta.get("preset_overrides", ()))
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
                hint=f"drop the override, or use the base method ({meta.get('config_dir', name)}) "
                     "for other values",
            )
    return cfg
