"""Device/precision choices: what a CPU-only machine can check of `avsbench_kit.device`."""

from __future__ import annotations

import pytest
import torch

from avsbench_kit.device import (autocast_context, device_info, resolve_device, to_device)
from avsbench_kit.errors import ConfigError


def _no_accelerators(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("avsbench_kit.device._mps_available", lambda: False)


def test_auto_falls_back_to_cpu_and_cpu_is_cpu(monkeypatch) -> None:
    _no_accelerators(monkeypatch)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")


def test_auto_prefers_mps_when_no_cuda(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("avsbench_kit.device._mps_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")


@pytest.mark.parametrize("spec", ["cuda", "cuda:1"])
def test_cuda_without_cuda_is_one_line_config_error(monkeypatch, spec: str) -> None:
    _no_accelerators(monkeypatch)
    with pytest.raises(ConfigError, match=f"device={spec} but torch sees no CUDA GPU") as err:
        resolve_device(spec)
    assert "\n" not in str(err.value) and "cpu" in err.value.hint


def test_cuda_index_beyond_visible_devices(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ConfigError, match="only 2 CUDA device"):
        resolve_device("cuda:2")


def test_auto_and_cuda_take_the_local_rank_gpu(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.delenv("SLURM_LOCALID", raising=False)
    assert resolve_device("auto") == torch.device("cuda", 0)
    monkeypatch.setenv("SLURM_LOCALID", "3")
    assert resolve_device("cuda") == torch.device("cuda", 3)
    monkeypatch.setenv("LOCAL_RANK", "2")  # torchrun wins over srun
    assert resolve_device("auto") == torch.device("cuda", 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)  # an explicit index is kept
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # each task sees only its GPU
    assert resolve_device("cuda") == torch.device("cuda", 0)


def test_mps_missing_and_bad_spellings(monkeypatch) -> None:
    _no_accelerators(monkeypatch)
    with pytest.raises(ConfigError, match="device=mps"):
        resolve_device("mps")
    for bad in ("gpu", "cuda:x", "cuda0", ""):
        with pytest.raises(ConfigError, match="is not one of auto, cpu, cuda, cuda:N, mps"):
            resolve_device(bad)


def test_device_info_on_cpu() -> None:
    info = device_info(torch.device("cpu"))
    assert info["device"] == "cpu" and info["device_type"] == "cpu"
    assert info["torch"] == torch.__version__ and info["gpu_model"] is None


def test_bf16_autocast_on_cpu_runs_in_bf16_and_fp32_is_untouched() -> None:
    a, b = torch.randn(4, 8), torch.randn(8, 3)
    with autocast_context("cpu", "bf16"):
        low = a @ b
    with autocast_context(torch.device("cpu"), "fp32"):
        plain = a @ b
    assert low.dtype == torch.bfloat16
    assert plain.dtype == torch.float32 and torch.equal(plain, a @ b)


def test_fp16_on_cpu_and_unknown_precision_are_refused() -> None:
    with pytest.raises(ConfigError, match="fp16 is not supported on the CPU") as err:
        with autocast_context("cpu", "fp16"):
            pass
    assert "bf16" in err.value.hint
    with pytest.raises(ConfigError, match="precision='half'"):
        with autocast_context("cpu", "half"):
            pass


def test_to_device_moves_nested_tensors_and_keeps_the_rest() -> None:
    batch = {"masks": torch.ones(2), "features": {"a": [torch.zeros(1)]}, "key": ["x"]}
    moved = to_device(batch, torch.device("cpu"))
    assert moved["masks"] is batch["masks"] and moved["features"]["a"][0] is batch["features"]["a"][0]
    assert moved["key"] == ["x"]
    meta = to_device(batch, torch.device("meta"))
    assert meta["masks"].device.type == "meta" and meta["features"]["a"][0].device.type == "meta"
