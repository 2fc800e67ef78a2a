"""Baseline plugins: registration, packaged configs, fixed overrides, light imports."""

from __future__ import annotations

import subprocess
import sys

import pytest

from avsbench_kit.config import apply_overrides, flatten
from avsbench_kit.errors import ConfigError, RegistryError
from avsbench_kit.plugins import BASELINES, load_plugins
from baselines.configs import load_config, preset_names

REQUIRED_KEYS = {
    "output_size", "image_size", "sam2.config", "sam2.checkpoint", "prompt_feature", "adapters",
    "seed", "train.epochs", "train.batch_size", "train.lr", "train.min_lr", "train.weight_decay",
    "train.grad_accum", "train.val_every", "features.audio", "features.image", "features.sam2",
}


def test_registry_resolves_av2t_and_the_probe() -> None:
    load_plugins()
    from baselines.av2t.model import AV2TSAM

    assert BASELINES.get("av2t") is AV2TSAM
    assert BASELINES.get("probe-clip-only") is AV2TSAM  # same class, its own config preset
    assert BASELINES.spec("probe-clip-only").preset_overrides == ("prompt_feature=clip",)
    assert BASELINES.spec("probe-clip-only").modalities == ("image",)
    assert BASELINES.spec("av2t").modalities == ("audio", "image")
    for name in ("av2t", "probe-clip-only"):
        spec = BASELINES.spec(name)
        assert spec.tasks == ("s4", "ms3") and spec.paper
        assert list(spec.presets) == preset_names(name) == ["cpu-small", "paper", "paper-noadapter",
                                                                "paper-sam1", "paper-sam1-noadapter"]
    with pytest.raises(RegistryError, match="unknown baseline"):
        BASELINES.get("av2t-sam")


@pytest.mark.parametrize("preset", ["cpu-small", "paper"])
def test_presets_carry_every_overridable_key(preset: str) -> None:
    cfg = load_config("av2t", preset)
    assert REQUIRED_KEYS <= set(flatten(cfg))
    changed = apply_overrides(cfg, ["image_size=256", "sam2.config=sam2.1_hiera_s",
                                    "sam2.checkpoint=/w/sam2.pt", "train.lr=1e-4", "adapters=true"])
    assert (changed["image_size"], changed["sam2"]["config"], changed["train"]["lr"]) == \
        (256, "sam2.1_hiera_s", 1e-4)
    with pytest.raises(ConfigError, match="unknown config key"):
        load_config("av2t", preset, ["train.learning_rate=1e-4"])


def test_paper_preset_has_the_published_sizes() -> None:
    cfg = load_config("av2t", "paper")
    assert cfg["sam2"]["config"] == "sam2_hiera_l" and cfg["image_size"] == 1024
    assert (cfg["train"]["epochs"], cfg["train"]["batch_size"], cfg["train"]["lr"],
            cfg["train"]["min_lr"], cfg["seed"]) == (40, 8, 2e-4, 1e-7, 123)
    small = load_config("av2t", "cpu-small")
    assert small["sam2"]["config"] == "sam2.1_hiera_t" and 128 <= small["image_size"] <= 256
    assert small["adapters"] is False and small["features"]["sam2"] == "sam2_image"


def test_probe_config_forces_clip_only() -> None:
    cfg = load_config("probe-clip-only", "cpu-small", ["seed=3"])
    assert cfg["prompt_feature"] == "clip" and cfg["name"] == "probe-clip-only" and cfg["seed"] == 3
    assert load_config("av2t", "cpu-small")["prompt_feature"] == "clip_x_clap"
    with pytest.raises(ConfigError, match="fixes prompt_feature='clip'"):
        load_config("probe-clip-only", "cpu-small", ["prompt_feature=clip_x_clap"])
    with pytest.raises(ConfigError, match="has no config"):
        load_config("av2t", "gpu-huge")


def test_registering_and_loading_configs_does_not_import_torch() -> None:
    code = ("import sys; from avsbench_kit.plugins import BASELINES, load_plugins; load_plugins(); "
            "from baselines.configs import load_config; load_config('probe-clip-only'); "
            "BASELINES.meta('av2t'); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
