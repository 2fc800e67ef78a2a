"""Device and precision choices shared by training, feature extraction and evaluation.

One place decides what ``device=auto|cpu|cuda|cuda:N|mps`` and ``precision=fp32|bf16|fp16`` mean,
so ``run``, ``features extract`` and ``eval`` fail the same way (one line, before anything is
written) when a machine cannot do what was asked, and record the same facts about the hardware.
``torch`` is imported inside the functions: importing this module stays cheap for the CLI.
"""

from __future__ import annotations

import contextlib
import re
from typing import TYPE_CHECKING, Any, Iterator

from avsbench_kit.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
PRECISIONS = ("fp32", "bf16", "fp16")
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(spec: str | None = "auto") -> "torch.device":
    """``auto`` = CUDA if present, else MPS, else CPU; an explicit device must exist here.

    ``auto`` and ``cuda`` without an index take this process's GPU under ``torchrun`` / ``srun``
    (``LOCAL_RANK`` / ``SLURM_LOCALID``), so N processes on a node use N GPUs.

    Asking for a device the machine lacks is a user error (ConfigError with the fix), raised before
    a run directory or a cache is created.
    """
    import torch

    text = "auto" if spec is None else str(spec).strip().lower()
    if not _DEVICE.match(text):
        raise ConfigError(f"device={spec!r} is not one of {', '.join(DEVICE_CHOICES)}",
                          hint="e.g. device=auto (CUDA if present, else MPS, else CPU) or device=cuda:0")
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", _local_gpu(torch.cuda.device_count()))
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "mps":
        if not _mps_available():
            raise ConfigError("device=mps but this machine has no usable Apple MPS backend",
                              hint="pick the device cpu (or auto: the best one present)")
        return torch.device("mps")
    if not torch.cuda.is_available():
        raise ConfigError(f"device={text} but torch sees no CUDA GPU here "
                          f"(torch {torch.__version__}, built for CUDA {torch.version.cuda or 'none'})",
                          hint="pick the device cpu (or auto: the best one present), or install a CUDA "
                               "build of torch on a machine with an NVIDIA driver")
    count = torch.cuda.device_count()
    index = int(text.split(":")[1]) if ":" in text else _local_gpu(count)
    if index >= count:
        raise ConfigError(f"device={text} but only {count} CUDA device(s) are visible",
                          hint=f"use device=cuda:0 .. cuda:{count - 1}, or check CUDA_VISIBLE_DEVICES")
    return torch.device("cuda", index)


def _local_gpu(count: int) -> int:
    """The GPU of this process: ``LOCAL_RANK`` (torchrun) or ``SLURM_LOCALID`` (srun), modulo the
    visible GPUs (a task that sees only its own GPU gets index 0); 0 outside a launcher."""
    import os

    for var in ("LOCAL_RANK", "SLURM_LOCALID"):
        value = os.environ.get(var, "")
        if value.isdigit():
            return int(value) % max(count, 1)
    return 0


def device_info(device: "torch.device | str") -> dict[str, Any]:
    """Facts about the device for a run record: what ran the numbers, not what was asked for."""
    import platform

    import torch

    device = torch.device(device)
    info: dict[str, Any] = {"device": str(device), "device_type": device.type,
                            "torch": torch.__version__, "torch_cuda": torch.version.cuda}
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        info.update({"gpu_model": props.name, "gpu_memory_gib": round(props.total_memory / 2**30, 1),
                     "gpu_capability": f"{props.major}.{props.minor}",
                     "cudnn": torch.backends.cudnn.version(), "driver": _nvidia_driver()})
    elif device.type == "mps":
        info["gpu_model"] = f"Apple MPS ({platform.machine()})"
    else:
        info["gpu_model"] = None
    return info


def _nvidia_driver() -> str | None:
    """The NVIDIA driver version, from the driver's own proc file or NVML; None when unknown."""
    from pathlib import Path

    proc = Path("/proc/driver/nvidia/version")
    if proc.is_file():
        match = re.search(r"Kernel Module\s+([\d.]+)", proc.read_text(errors="replace"))
        if match:
            return match.group(1)
    try:  # NVML ships with torch's CUDA wheels as pynvml on some installs
        import pynvml  # type: ignore[import-not-found]

        pynvml.nvmlInit()
        version = pynvml.nvmlSystemGetDriverVersion()
        return version.decode() if isinstance(version, bytes) else str(version)
    except Exception:
        return None


def check_precision(device: "torch.device", precision: str) -> str:
    """Refuse precision/device pairs that cannot work, with the fix in the hint."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision={precision!r} is not one of {', '.join(PRECISIONS)}",
                          hint="precision=fp32 (default), bf16 (CPU or recent GPUs) or fp16 (CUDA)")
    if precision == "fp16" and device.type == "cpu":
        raise ConfigError("precision=fp16 is not supported on the CPU (no fp16 autocast kernels "
                          "or grad scaler there)", hint="use precision=bf16 or fp32 on the CPU")
    return precision


@contextlib.contextmanager
def autocast_context(device: "torch.device | str", precision: str = "fp32") -> Iterator[None]:
    """``torch.autocast`` for bf16/fp16, a no-op for fp32 (the CPU path stays bit-identical)."""
    import torch

    device = torch.device(device)
    check_precision(device, precision)
    if precision == "fp32":
        yield
        return
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def to_device(value: Any, device: "torch.device") -> Any:
    """Move every tensor inside nested dicts/lists/tuples to ``device``.

    Copies from pinned host memory are non-blocking (they overlap with compute on CUDA); the CPU
    case returns the same objects (no copy).
    """
    import torch

    if isinstance(value, torch.Tensor):
        if value.device == device:
            return value
        return value.to(device, non_blocking=value.device.type == "cpu" and value.is_pinned())
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    if isinstance(value, list):
        return [to_device(v, device) for v in value]
    if isinstance(value, tuple):
        return tuple(to_device(v, device) for v in value)
    return value
