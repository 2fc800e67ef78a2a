"""The perturbations themselves: seeded permutations of rows and frames, and raw-signal stand-ins.

Pure numpy, no toolkit state: every function is a deterministic function of its arguments and a
seed, so a probe's input is the same on every machine and in every re-run.
"""

from __future__ import annotations

import zlib
from typing import Any, Sequence

import numpy as np

from avsbench_kit.errors import DataError


def derangement(n: int, seed: int) -> np.ndarray:
    """A seeded permutation of ``range(n)`` with no fixed point (every item gets another one)."""
    if n < 2:
        raise DataError(f"a shuffle needs at least 2 clips, the split has {n}",
                        hint="probe a split with more clips (--split)")
    return frame_derangement(n, np.random.default_rng([int(seed), 0x5A77]))


def frame_derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A permutation of ``n`` items in which none keeps its slot (identity when n < 2).

    Sattolo's algorithm: a uniformly random single ``n``-cycle, hence never ``p[i] == i``.
    """
    p = np.arange(n)
    for i in range(n - 1, 0, -1):
        j = int(rng.integers(0, i))  # j < i: Sattolo, not Fisher-Yates
        p[i], p[j] = p[j], p[i]
    return p


def rolled(n: int, shift: int) -> np.ndarray:
    """Frame order of a roll by ``shift`` frames: slot ``t`` reads frame ``(t - shift) mod n``."""
    return (np.arange(n) - int(shift)) % max(n, 1)


def clip_groups(rows: Sequence[dict[str, Any]]) -> tuple[list[str], list[int], list[int]]:
    """(clips in first-use order, first row of each clip, clip index of each row).

    Probes swap whole clips: two expressions of one Ref-AVS clip must never count as "another clip".
    """
    clips: list[str] = []
    first: list[int] = []
    where: dict[str, int] = {}
    of_row = []
    for i, r in enumerate(rows):
        c = r["clip"]
        if c not in where:
            where[c] = len(clips)
            clips.append(c)
            first.append(i)
        of_row.append(where[c])
    return clips, first, of_row


def shuffled_sources(rows: Sequence[dict[str, Any]], seed: int) -> list[int]:
    """Per row, the row whose media it reads: the first row of the clip a clip derangement assigns."""
    _, first, of_row = clip_groups(rows)
    perm = derangement(len(first), seed)
    return [first[int(perm[c])] for c in of_row]


def offscreen_sources(rows: Sequence[dict[str, Any]], present: dict[str, set[str]],
                      sounding: dict[str, set[str]], seed: int) -> list[int]:
    """Per row, a donor clip none of whose sounding classes appears in this clip (seeded choice).

    ``present[clip]``: classes visible in the clip; ``sounding[clip]``: classes heard in it.
    """
    clips, first, of_row = clip_groups(rows)
    rng = np.random.default_rng([int(seed), 0x0FF5])
    donor: list[int] = []
    for c in clips:
        here = present.get(c, set())
        options = [j for j, d in enumerate(clips) if d != c and sounding.get(d) and not (sounding[d] & here)]
        if not options:
            raise DataError(f"audio-offscreen: no clip of the split sounds only classes absent from {c} "
                            f"(present: {sorted(here)})", hint="probe a split with more varied clips (--split)")
        donor.append(options[int(rng.integers(0, len(options)))])
    return [first[donor[c]] for c in of_row]


def unit_rng(seed: int, key: str) -> np.random.Generator:
    """A generator for one clip: the same noise for a clip whatever else is in the split."""
    return np.random.default_rng([int(seed), zlib.crc32(key.encode("utf-8"))])


def noise_like(wave: np.ndarray, color: str, level_db: float, rng: np.random.Generator) -> np.ndarray:
    """White or pink noise of ``wave``'s shape whose RMS is ``level_db`` dBFS (per channel).

    Pink: white noise shaped by 1/sqrt(f) in the frequency domain (power falls 3 dB per octave),
    DC removed, then rescaled to the level.
    """
    x = np.asarray(wave)
    shape = x.shape
    n = shape[-1]
    white = rng.standard_normal(shape)
    if color == "pink":
        spec = np.fft.rfft(white, axis=-1)
        f = np.fft.rfftfreq(n)
        gain = np.zeros_like(f)
        gain[1:] = 1.0 / np.sqrt(f[1:])
        white = np.fft.irfft(spec * gain, n=n, axis=-1)
    elif color != "white":
        raise ValueError(f"noise color {color!r}")
    rms = np.sqrt(np.mean(white ** 2, axis=-1, keepdims=True))
    target = 10.0 ** (float(level_db) / 20.0)
    return (white * (target / np.maximum(rms, 1e-12))).astype(np.float32)
