"""The probe registry: every input perturbation is one named, versioned entry.

Two kinds, chosen by where the perturbation is defined:

* ``read``: a rearrangement of cached features (another clip's audio, rolled or permuted frames):
  the reader applies it while joining the caches, no encoder work.
* ``signal``: a change of the raw input (silence, noise, an empty expression): the perturbed input
  goes through the encoder once and is cached under its own fingerprint (the encoder's
  fingerprint plus the probe's name, version, parameters and, where it draws noise, the seed).

A probe's numbers change only with a new ``version``; its parameters are part of its identity
(``NAME:key=value,...`` on the command line) and are stored with every result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from avsbench_kit.errors import ConfigError
from avsbench_kit.registry import Registry, did_you_mean


@dataclass(frozen=True)
class Probe:
    """Base class; subclasses implement :meth:`read_plan` (read) or :meth:`perturb_unit` (signal)."""

    name: str
    version: str
    modality: str  # the input it perturbs: "audio" | "text" | "image"
    description: str
    negative: bool = False  # the correct output under this probe is an empty mask (AVSBench-Robust)
    defaults: dict[str, Any] = field(default_factory=dict)
    kind: ClassVar[str] = "read"
    seeded: ClassVar[bool] = True  # whether the seed changes the perturbed input

    def params(self, given: dict[str, Any] | None = None) -> dict[str, Any]:
        """The defaults with ``given`` applied (unknown keys and wrong types are ConfigErrors)."""
        out = dict(self.defaults)
        for key, value in (given or {}).items():
            if key not in out:
                raise ConfigError(f"probe {self.name} has no parameter {key!r}",
                                  hint=did_you_mean(key, list(out)) if out else f"{self.name} takes no parameters")
            old = out[key]
            if isinstance(old, (int, float)) and not isinstance(old, bool):
                try:
                    value = type(old)(value)
                except (TypeError, ValueError):
                    raise ConfigError(f"probe {self.name}: {key}={value!r} is not a number",
                                      hint=f"the default is {key}={old}") from None
            out[key] = value
        self.check(out)
        return out

    def check(self, params: dict[str, Any]) -> None:
        """Raise ConfigError for impossible parameters."""

    def identity(self, params: dict[str, Any], seed: int) -> dict[str, Any]:
        """What defines the perturbed input (a signal probe's cache fingerprint hashes this)."""
        out = {"probe": self.name, "version": self.version, "params": dict(sorted(params.items()))}
        if self.seeded:
            out["seed"] = int(seed)
        return out

    # -- read probes ---------------------------------------------------------------------------
    def read_plan(self, rows: list[dict[str, Any]], params: dict[str, Any], seed: int, manifest: Any):
        """A :class:`~avsbench_kit.features.reader.ReadPerturbation` over the split's rows."""
        raise NotImplementedError

    # -- signal probes -------------------------------------------------------------------------
    def perturb_unit(self, unit: dict[str, Any], params: dict[str, Any], seed: int) -> dict[str, Any]:
        """A loaded encoder unit (``audio``/``text``...) with the raw input replaced."""
        raise NotImplementedError


def _plan(**kwargs: Any):
    from avsbench_kit.features.reader import ReadPerturbation

    return ReadPerturbation(**kwargs)


@dataclass(frozen=True)
class ShuffledProbe(Probe):
    """The modality's input of another clip of the split: a seeded clip derangement."""

    def read_plan(self, rows, params, seed, manifest):
        from avsbench_kit.probes.perturb import shuffled_sources

        return _plan(sources={self.modality: shuffled_sources(rows, seed)})


@dataclass(frozen=True)
class OffscreenProbe(Probe):
    """Audio of a clip whose sounding classes are all absent from this clip."""

    def read_plan(self, rows, params, seed, manifest):
        from avsbench_kit.probes.labels import clip_classes
        from avsbench_kit.probes.perturb import offscreen_sources

        present, sounding = clip_classes(manifest)
        return _plan(sources={"audio": offscreen_sources(rows, present, sounding, seed)})


@dataclass(frozen=True)
class TimeShiftProbe(Probe):
    """The clip's own audio rolled by ``shift_s`` seconds (features are one per 1-s frame)."""

    seeded: ClassVar[bool] = False

    def check(self, params):
        if int(params["shift_s"]) != params["shift_s"] or params["shift_s"] == 0:
            raise ConfigError(f"probe {self.name}: shift_s={params['shift_s']} must be a non-zero whole "
                              "number of seconds (one feature per 1-s frame)", hint="e.g. shift_s=2")

    def read_plan(self, rows, params, seed, manifest):
        from avsbench_kit.probes.perturb import rolled

        shift = int(params["shift_s"])
        return _plan(orders={"audio": [rolled(len(r["annotated"]), shift) for r in rows]})


@dataclass(frozen=True)
class FramesShuffledProbe(Probe):
    """Visual frames (image features, raw frames) and their GT permuted together in time, audio
    and text left in place: each prediction is still scored against its own frame's GT."""

    def read_plan(self, rows, params, seed, manifest):
        from avsbench_kit.probes.perturb import clip_groups, frame_derangement, unit_rng

        clips, first, of_row = clip_groups(rows)
        per_clip = [frame_derangement(len(rows[i]["annotated"]), unit_rng(seed, c)) for c, i in zip(clips, first)]
        orders = [per_clip[c] for c in of_row]
        return _plan(orders={"image": orders, "target": orders})


@dataclass(frozen=True)
class SilentProbe(Probe):
    """Digital silence of the clip's length and channels."""

    kind: ClassVar[str] = "signal"
    seeded: ClassVar[bool] = False

    def perturb_unit(self, unit, params, seed):
        return {**unit, "audio": np.zeros_like(np.asarray(unit["audio"], dtype=np.float32))}


@dataclass(frozen=True)
class NoiseProbe(Probe):
    """White or pink noise at ``level_db`` dBFS RMS instead of the clip's audio (seeded per clip)."""

    kind: ClassVar[str] = "signal"

    def check(self, params):
        if params["color"] not in ("white", "pink"):
            raise ConfigError(f"probe {self.name}: color={params['color']!r} is not white or pink",
                              hint="e.g. audio-noise:color=pink")
        if not -120.0 <= float(params["level_db"]) <= 0.0:
            raise ConfigError(f"probe {self.name}: level_db={params['level_db']} must be in [-120, 0] dBFS",
                              hint="e.g. audio-noise:level_db=-25")

    def perturb_unit(self, unit, params, seed):
        from avsbench_kit.probes.perturb import noise_like, unit_rng

        wave = np.asarray(unit["audio"], dtype=np.float32)
        rng = unit_rng(seed, str(unit.get("clip", unit.get("key", ""))))
        return {**unit, "audio": noise_like(wave, params["color"], params["level_db"], rng)}


@dataclass(frozen=True)
class TextRemovedProbe(Probe):
    """The empty expression instead of the referring text."""

    kind: ClassVar[str] = "signal"
    seeded: ClassVar[bool] = False

    def perturb_unit(self, unit, params, seed):
        return {**unit, "text": ""}


PROBES: Registry[Probe] = Registry("probe")


def _add(probe: Probe) -> None:
    PROBES.add(probe.name, probe, version=probe.version, modality=probe.modality, kind=probe.kind,
               negative=probe.negative, description=probe.description)


_add(ShuffledProbe("audio-shuffled", "1", "audio",
                   "audio of another clip of the same split (seeded clip derangement)"))
_add(SilentProbe("audio-silent", "1", "audio", "digital silence instead of the clip's audio", negative=True))
_add(NoiseProbe("audio-noise", "1", "audio", "noise instead of the clip's audio (color, level_db dBFS RMS)",
                negative=True, defaults={"color": "white", "level_db": -25.0}))
_add(OffscreenProbe("audio-offscreen", "1", "audio",
                    "audio of a clip whose sounding classes are all absent from this clip", negative=True))
_add(TimeShiftProbe("audio-time-shifted", "1", "audio", "the clip's own audio rolled by shift_s seconds",
                    defaults={"shift_s": 2}))
_add(TextRemovedProbe("text-removed", "1", "text", "the empty expression instead of the referring text"))
_add(ShuffledProbe("text-shuffled", "1", "text", "the expression of a sample of another clip (seeded)"))
_add(FramesShuffledProbe("frames-shuffled", "1", "image",
                         "visual frames and their GT permuted in time (no frame in place), audio/text kept"))

#: what `avskit probe` runs when no --probe is given (those the model can take)
DEFAULT_PROBES = tuple(PROBES.names())


def parse_probe(text: str) -> tuple[Probe, dict[str, Any]]:
    """``"audio-noise:color=pink,level_db=-30"`` -> (probe, its full parameters)."""
    name, _, rest = text.partition(":")
    probe = PROBES.get(name.strip())
    given: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = part.partition("=")
        if not eq:
            raise ConfigError(f"probe parameter {part!r} is not key=value", hint=f"e.g. {name}:key=value")
        given[key.strip()] = value.strip()
    return probe, probe.params(given)
