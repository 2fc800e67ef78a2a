"""VGGish: 0.96 s log-mel examples -> 128-d embeddings, one per frame of the clip.

The network's state dict matches torchvggish's ``vggish-10086976.pth`` exactly
(``features.{0,3,6,8,11,13}``, ``embeddings.{0,2,4}``) and is loaded strictly. The flatten order
after the conv stack is channels-last (as in the TF original), so the released fc weights apply.
PCA post-processing (``vggish_pca_params-970ea276.pth``: eigenvectors, means; clip to [-2, 2],
quantise to 0..255) is off by default, as AVSBench and AuralSAM2 use it.

``channels: stereo`` runs each stereo channel separately (mono files are duplicated) -> [T, 2, 128]
as AuralSAM2 does; ``input: log_mel`` reads AVSBench's shipped ``audio_log_mel`` pickles instead
of the WAV.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from avsbench_kit.errors import ConfigError, DataError
from avsbench_kit.features.base import Encoder, FieldSpec, choice, positive
from avsbench_kit.features.vggish_frontend import FrontEnd, examples, fit_examples

FULL = {"channels": [64, 128, 256, 256, 512, 512], "hidden": 4096, "embedding": 128}
SMALL = {"channels": [8, 16, 16, 16, 32, 32], "hidden": 128, "embedding": 128}
#: index of each conv in ``features`` (ReLU after every conv, max-pool after convs 0, 1, 3, 5)
_CONV_INDEX = (0, 3, 6, 8, 11, 13)
_POOL_AFTER = (0, 1, 3, 5)


def build_vggish(arch: dict[str, Any]):
    """The VGGish network (torch) for an architecture dict (FULL matches the released weights)."""
    import torch
    from torch import nn

    class VGGish(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layers: list[nn.Module] = []
            in_ch = 1
            for i, out_ch in enumerate(arch["channels"]):
                layers += [nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.ReLU(inplace=True)]
                if i in _POOL_AFTER:
                    layers.append(nn.MaxPool2d(2, 2))
                in_ch = out_ch
            self.features = nn.Sequential(*layers)
            flat = in_ch * (96 // 16) * (64 // 16)
            h, e = arch["hidden"], arch["embedding"]
            self.embeddings = nn.Sequential(
                nn.Linear(flat, h), nn.ReLU(inplace=True),
                nn.Linear(h, h), nn.ReLU(inplace=True),
                nn.Linear(h, e), nn.ReLU(inplace=True),
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, 1, 96, 64] -> [N, 128]
            x = self.features(x)
            x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)  # channels-last flatten (TF order)
            return self.embeddings(x)

    return VGGish()


def load_state_dict_strict(model, path: str) -> None:
    """Load a VGGish state dict strictly; a key or shape mismatch names the file and the keys."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(f"cannot read VGGish weights {path}: {exc}",
                        hint="pass the torchvggish checkpoint vggish-10086976.pth") from None
    if not isinstance(state, dict):
        raise DataError(f"{path} holds a {type(state).__name__}, not a state dict",
                        hint="pass the torchvggish checkpoint vggish-10086976.pth")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or wrong:
        detail = "; ".join(
            f"{label}: {keys[:4]}" for label, keys in
            (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys
        )
        raise DataError(f"{path} is not a VGGish state dict ({detail})",
                        hint="pass the torchvggish checkpoint vggish-10086976.pth (keys features.*, embeddings.*)")
    model.load_state_dict(state, strict=True)


class VGGishEncoder(Encoder):
    name = "vggish"
    modality = "audio"
    key_by = "clip"
    code_version = "1"

    def validate(self) -> None:
        choice(self.cfg, "config", ("small", "full"))
        choice(self.cfg, "input", ("wav", "log_mel"))
        choice(self.cfg, "channels", ("mono", "stereo"))
        choice(self.cfg, "pad", ("repeat_last", "zero"))
        choice(self.cfg, "resampler", ("soxr",))
        positive(self.cfg, "batch_size")
        positive(self.cfg, "shard_size")
        if self.cfg["input"] == "log_mel" and self.cfg["channels"] == "stereo":
            raise ConfigError("input=log_mel has one (mono) channel: channels=stereo needs input=wav",
                              hint="use input=wav channels=stereo")
        if self.cfg["pca"] and not self.cfg["pca_weights"]:
            raise ConfigError("pca=true needs pca_weights=PATH (vggish_pca_params-970ea276.pth)",
                              hint="or leave pca=false (AVSBench's setting)")
        if int(self.cfg["num_examples"]) < 0:
            raise ConfigError("num_examples must be >= 0 (0 = one example per frame of the clip)")
        try:
            self.frontend = FrontEnd(**{k: self.cfg[k] for k in FrontEnd().as_dict()})
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"invalid VGGish front end: {exc}") from None

    @property
    def needs(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("log_mel",) if self.cfg["input"] == "log_mel" else ("audio",)

    @property
    def arch(self) -> dict[str, Any]:
        return FULL if (self.weights or self.cfg["config"] == "full") else SMALL

    def random_config(self) -> dict[str, Any]:
        return {"arch": self.arch}

    def output_spec(self) -> dict[str, FieldSpec]:
        per = (2, 128) if self.cfg["channels"] == "stereo" else (128,)
        return {"emb": FieldSpec(("T",) + per, "float32")}

    def _load(self) -> Any:
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.cfg.get("seed", 0)))
            model = build_vggish(self.arch)
        if self.weights:
            load_state_dict_strict(model, self.weights)
        pca = None
        if self.cfg["pca"]:
            params = torch.load(self.cfg["pca_weights"], map_location="cpu", weights_only=True)
            try:
                pca = (params["pca_eigen_vectors"].double(), params["pca_means"].double().reshape(-1, 1))
            except (KeyError, TypeError) as exc:
                raise DataError(f"{self.cfg['pca_weights']} is not a VGGish PCA file ({exc})",
                                hint="pass vggish_pca_params-970ea276.pth") from None
        return model.eval(), pca

    # ---- inputs -> examples ----------------------------------------------------------------
    def unit_examples(self, unit: dict[str, Any]) -> np.ndarray:
        """One unit -> float32 ``[T, C, 96, 64]`` examples (C = 1, or 2 for stereo)."""
        count = int(self.cfg["num_examples"]) or int(unit["num_frames"])
        if self.cfg["input"] == "log_mel":
            ex = np.asarray(unit["log_mel"], dtype=np.float32)
            if ex.ndim != 4 or ex.shape[1:] != (1, 96, 64):
                raise DataError(f"clip {unit.get('clip')}: log-mel of shape {list(ex.shape)}, expected [N, 1, 96, 64]")
            return fit_examples(ex, count, self.cfg["pad"])
        wave = np.asarray(unit["audio"], dtype=np.float32)
        if wave.ndim == 1:
            wave = wave[None]
        sr = int(unit["sample_rate"])
        if self.cfg["channels"] == "mono":
            chans = [wave.mean(axis=0)]
        else:
            chans = [wave[0], wave[1]] if wave.shape[0] >= 2 else [wave[0], wave[0]]
        per_channel = [fit_examples(examples(c, sr, self.frontend, self.cfg["resampler"]), count, self.cfg["pad"])
                       for c in chans]
        return np.stack(per_channel, axis=1)  # [T, C, 96, 64]

    def _encode(self, model: Any, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        import torch

        net, pca = model
        exs = [self.unit_examples(u) for u in batch]
        counts = [e.shape[0] * e.shape[1] for e in exs]
        flat = torch.from_numpy(np.concatenate([e.reshape(-1, 1, 96, 64) for e in exs]))
        emb = net(self.on_device(flat))
        if pca is not None:
            emb = postprocess_pca(emb, *pca)
        emb = emb.float().cpu().numpy()  # one copy back per batch
        out, start = [], 0
        for e, n in zip(exs, counts):
            part = emb[start:start + n].reshape(e.shape[0], e.shape[1], -1)
            start += n
            out.append({"emb": np.ascontiguousarray(part[:, 0] if self.cfg["channels"] == "mono" else part)})
        return out


def postprocess_pca(emb, eigen, means):
    """AudioSet's PCA + whitening-free quantisation: project, clip to [-2, 2], map to 0..255."""
    import torch

    projected = (eigen @ (emb.double().T - means)).T
    clipped = torch.clamp(projected, -2.0, 2.0)
    return torch.round((clipped + 2.0) * (255.0 / 4.0)).float()
