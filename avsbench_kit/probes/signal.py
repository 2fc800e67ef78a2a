"""A probe's raw-input perturbation wrapped around an encoder, cached under its own fingerprint.

The wrapper changes each loaded unit (``audio`` waveform, ``text``) before the real encoder sees
it, and adds the probe's identity to the fingerprint: the perturbed cache lives next to the clean
one (same encoder name, another fingerprint directory) and is reused by every later probe run.
"""

from __future__ import annotations

from typing import Any

from avsbench_kit.errors import ConfigError
from avsbench_kit.features.base import Encoder, FieldSpec

#: the loaded input a signal probe replaces, per modality (what the encoder must read raw)
RAW_INPUT = {"audio": "audio", "text": "text"}


class PerturbedEncoder(Encoder):
    """``inner`` fed with ``probe``-perturbed inputs."""

    def __init__(self, inner: Encoder, probe: Any, params: dict[str, Any], seed: int) -> None:
        self.inner, self.probe, self.probe_params, self.probe_seed = inner, probe, dict(params), int(seed)
        self.name = inner.name
        self.modality = inner.modality
        self.key_by = inner.key_by
        raw = RAW_INPUT.get(probe.modality)
        if raw is None or raw not in inner.needs:
            got = ", ".join(inner.needs) or "nothing"
            raise ConfigError(
                f"probe {probe.name} replaces the raw {probe.modality} input, but the {inner.registry_name} "
                f"cache is computed from {got}",
                hint=f"extract {inner.registry_name} from WAV audio (e.g. input=wav) to probe it" if raw == "audio"
                else "signal probes need an encoder that reads the raw input")
        self.needs = inner.needs
        super().__init__(inner.cfg, name=inner.registry_name)

    def validate(self) -> None:  # the inner encoder validated its config
        return None

    def output_spec(self) -> dict[str, FieldSpec]:
        return self.inner.output_spec()

    def weights_source(self) -> str:
        return self.inner.weights_source()

    def fingerprint_parts(self) -> dict[str, Any]:
        return {**self.inner.fingerprint_parts(),
                "perturbation": self.probe.identity(self.probe_params, self.probe_seed)}

    def set_device(self, spec: str) -> Any:
        self.inner.set_device(spec)  # the inner adapter moves its own inputs (on_device)
        return super().set_device(spec)

    def _load(self) -> Any:
        return self.inner.model

    def _encode(self, model: Any, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        units = [self.probe.perturb_unit(u, self.probe_params, self.probe_seed) for u in batch]
        return self.inner._encode(model, units)
