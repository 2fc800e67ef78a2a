"""The SynthAVS world: object classes (appearance + sound), motion, drawing and sound synthesis.

Everything here is pure numpy/cv2 and deterministic given an RNG, so the scene samplers
(``synth_scenes``) and the writers (``synth``) can rebuild any clip from its seed alone.

Design (why the world looks like this):
* two pairs of classes share an appearance (horn/buzzer: red square; bell/whistle: yellow star)
  and differ only in sound -> only audio can tell which of two look-alikes is sounding;
* one pair shares a sound (motor/engine: deep ~150-160 Hz hum) and differs in appearance ->
  audio alone cannot tell which one is present, vision must;
* fundamentals are spread log-uniformly over ~150-3000 Hz, with distinct timbres (harmonic
  pattern, inharmonic partials, noise band) and temporal patterns (steady, pulsed, struck,
  swept), so log-mel features separate the classes even with a randomly initialised encoder.
"""

from __future__ import annotations

import math
from functools import lru_cache
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

FRAME_SIZE = 224
SAMPLE_RATE = 16000

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 45, 45),
    "yellow": (235, 205, 40),
    "blue": (45, 85, 225),
    "green": (40, 180, 70),
    "cyan": (40, 200, 210),
    "magenta": (205, 50, 190),
    "orange": (240, 140, 30),
    "white": (240, 240, 240),
}
SHAPES = ("circle", "square", "triangle", "star", "ring", "diamond", "cross")


@dataclass(frozen=True)
class SynthClass:
    """One object class: what it looks like and what it sounds like."""

    name: str  # category token: lower-case, no underscores (Ref-AVS uid rule)
    shape: str
    colour: str
    sound: str  # synthesis recipe, see ``_RECIPES``
    f0: float  # fundamental / centre frequency in Hz
    sound_text: str  # how referring expressions describe the sound
    sound_group: str  # classes in one group sound (nearly) alike

    @property
    def appearance(self) -> str:
        return f"{self.colour} {self.shape}"

    @property
    def rgb(self) -> tuple[int, int, int]:
        return COLOURS[self.colour]

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "appearance": self.appearance, "rgb": list(self.rgb)}


CLASSES: tuple[SynthClass, ...] = (
    SynthClass("motor", "circle", "blue", "saw", 150.0, "a deep steady hum", "hum"),
    SynthClass("engine", "diamond", "green", "saw-throb", 150.0, "a deep throbbing hum", "hum"),
    SynthClass("drum", "circle", "orange", "thump", 190.0, "a slow thumping beat", "drum"),
    SynthClass("horn", "square", "red", "odd", 300.0, "a low hollow tone", "horn"),
    SynthClass("buzzer", "square", "red", "pulse", 620.0, "a fast buzzing pulse", "buzzer"),
    SynthClass("siren", "ring", "cyan", "sweep", 1000.0, "a rising and falling wail", "siren"),
    SynthClass("bell", "star", "yellow", "bell", 1150.0, "a ringing chime", "bell"),
    SynthClass("whistle", "star", "yellow", "whistle", 2200.0, "a high steady whistle", "whistle"),
    SynthClass("bird", "triangle", "magenta", "chirp", 3000.0, "quick high chirps", "bird"),
    SynthClass("rattle", "cross", "white", "rattle", 4200.0, "a crackling rattle", "rattle"),
)
BY_NAME: dict[str, SynthClass] = {c.name: c for c in CLASSES}


def appearance_pairs() -> list[tuple[str, str]]:
    """Pairs of classes that look identical (differ only in sound)."""
    return _pairs(lambda c: c.appearance)


def sound_pairs() -> list[tuple[str, str]]:
    """Pairs of classes that sound alike (differ in appearance)."""
    return _pairs(lambda c: c.sound_group)


def _pairs(key) -> list[tuple[str, str]]:
    out = []
    for i, a in enumerate(CLASSES):
        for b in CLASSES[i + 1 :]:
            if key(a) == key(b):
                out.append((a.name, b.name))
    return out


def world_json() -> dict[str, Any]:
    """The world as recorded in ``synth.json``."""
    return {
        "classes": [c.to_json() for c in CLASSES],
        "appearance_pairs": [list(p) for p in appearance_pairs()],
        "sound_pairs": [list(p) for p in sound_pairs()],
        "frame_size": FRAME_SIZE,
        "sample_rate": SAMPLE_RATE,
    }


# --------------------------------------------------------------------------------------- motion


def bounce(p0: float, v: float, lo: float, hi: float, t: np.ndarray | float) -> np.ndarray:
    """Position at time ``t`` of a point moving at speed ``v`` and reflecting off ``lo``/``hi``."""
    span = hi - lo
    if span <= 0:
        return np.full_like(np.asarray(t, dtype=np.float64), (lo + hi) / 2)
    u = np.mod(p0 - lo + v * np.asarray(t, dtype=np.float64), 2 * span)
    return lo + np.where(u < span, u, 2 * span - u)


@dataclass(frozen=True)
class Track:
    """One object instance in a clip: class, size, smooth bouncing motion, slow spin."""

    cls: str
    radius: float
    x0: float
    y0: float
    vx: float
    vy: float
    angle0: float
    spin: float

    def centre(self, t: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.radius, FRAME_SIZE - 1 - self.radius
        return bounce(self.x0, self.vx, lo, hi, t), bounce(self.y0, self.vy, lo, hi, t)

    def angle(self, t: float) -> float:
        return self.angle0 + self.spin * t


def sample_track(rng: np.random.Generator, cls: str, radius: tuple[float, float], speed: tuple[float, float]) -> Track:
    r = float(rng.uniform(*radius))
    lo, hi = r, FRAME_SIZE - 1 - r
    s = float(rng.uniform(*speed))
    direction = float(rng.uniform(0, 2 * math.pi))
    return Track(
        cls=cls,
        radius=r,
        x0=float(rng.uniform(lo, hi)),
        y0=float(rng.uniform(lo, hi)),
        vx=s * math.cos(direction),
        vy=s * math.sin(direction),
        angle0=float(rng.uniform(0, 2 * math.pi)),
        spin=float(rng.uniform(-0.4, 0.4)),
    )


# -------------------------------------------------------------------------------------- drawing


def _polygon(cx: float, cy: float, radii: list[float], angle: float, offset: float = 0.0) -> np.ndarray:
    n = len(radii)
    th = angle + offset + np.arange(n) * (2 * math.pi / n)
    r = np.asarray(radii)
    pts = np.stack([cx + r * np.cos(th), cy + r * np.sin(th)], axis=1)
    return np.round(pts).astype(np.int32)


def silhouette(shape: str, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """Boolean ``[H, W]`` mask of one shape: the single geometric truth for pixels and GT."""
    import cv2

    canvas = np.zeros((FRAME_SIZE, FRAME_SIZE), np.uint8)
    c = (int(round(cx)), int(round(cy)))
    if shape == "circle":
        cv2.circle(canvas, c, int(round(0.9 * r)), 1, thickness=-1, lineType=cv2.LINE_8)
    elif shape == "ring":
        cv2.circle(canvas, c, int(round(0.95 * r)), 1, thickness=-1, lineType=cv2.LINE_8)
        cv2.circle(canvas, c, int(round(0.5 * r)), 0, thickness=-1, lineType=cv2.LINE_8)
    else:
        if shape == "square":
            pts = _polygon(cx, cy, [r] * 4, angle, math.pi / 4)
        elif shape == "triangle":
            pts = _polygon(cx, cy, [1.05 * r] * 3, angle)
        elif shape == "star":
            pts = _polygon(cx, cy, [r, 0.45 * r] * 5, angle)
        elif shape == "diamond":
            pts = _polygon(cx, cy, [r, 0.6 * r] * 2, angle)
        elif shape == "cross":
            w = 0.32 * r
            base = np.array(
                [(w, -r), (w, -w), (r, -w), (r, w), (w, w), (w, r), (-w, r), (-w, w), (-r, w), (-r, -w), (-w, -w), (-w, -r)]
            )
            ca, sa = math.cos(angle), math.sin(angle)
            rot = base @ np.array([[ca, sa], [-sa, ca]])
            pts = np.round(rot + [cx, cy]).astype(np.int32)
        else:
            raise ValueError(f"unknown shape {shape!r}")
        cv2.fillPoly(canvas, [pts], 1, lineType=cv2.LINE_8)
    return canvas.astype(bool)


def background(rng: np.random.Generator) -> np.ndarray:
    """A static, lightly textured, desaturated RGB background (uint8 ``[H, W, 3]``).

    Channels stay within [35, 175], so no background pixel is ever close to an object colour
    (every object colour has a channel >= 200) -- tests can find objects by colour.
    """
    import cv2

    base = rng.uniform(75, 135) + rng.uniform(-12, 12, size=3)
    coarse = rng.normal(0, 10, size=(7, 7, 3)).astype(np.float32)
    field = cv2.resize(coarse, (FRAME_SIZE, FRAME_SIZE), interpolation=cv2.INTER_CUBIC)
    img = np.clip(base + field, 40, 170).astype(np.uint8)
    n = int(rng.integers(20, 40))  # faint speckles and strokes, drawn from one batch of numbers
    tones = np.clip(base + rng.normal(0, 20, size=(n, 3)), 35, 175).astype(int).tolist()
    points = rng.integers(0, FRAME_SIZE, size=(n, 2)).tolist()
    ends = np.clip(np.array(points) + rng.integers(-25, 26, size=(n, 2)), 0, FRAME_SIZE - 1).tolist()
    kinds = (rng.random(n) < 0.5).tolist()
    sizes = rng.integers(2, 6, size=n).tolist()
    for colour, p, q, dot, size in zip(tones, points, ends, kinds, sizes):
        if dot:
            cv2.circle(img, tuple(p), size, tuple(colour), -1, lineType=cv2.LINE_8)
        else:
            cv2.line(img, tuple(p), tuple(q), tuple(colour), 1, lineType=cv2.LINE_8)
    return img


def render(tracks: list[Track], visible: list[bool], t: float, bg: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Draw the visible tracks in list order (later ones on top) at time ``t``.

    Returns the RGB frame and, per track, its *visible* silhouette (after occlusion by the
    tracks drawn above it; all-False if not visible).
    """
    frame = bg.copy()
    shapes: list[np.ndarray] = []
    for tr, vis in zip(tracks, visible):
        if not vis:
            shapes.append(np.zeros((FRAME_SIZE, FRAME_SIZE), bool))
            continue
        cls = BY_NAME[tr.cls]
        x, y = tr.centre(t)
        shapes.append(silhouette(cls.shape, float(x), float(y), tr.radius, tr.angle(t)))
    visible_parts: list[np.ndarray] = [np.zeros(1)] * len(tracks)
    covered = np.zeros((FRAME_SIZE, FRAME_SIZE), bool)
    for i in range(len(tracks) - 1, -1, -1):  # top-most first
        visible_parts[i] = shapes[i] & ~covered
        covered |= shapes[i]
    for tr, part in zip(tracks, visible_parts):
        frame[part] = BY_NAME[tr.cls].rgb
    return frame, visible_parts


# ---------------------------------------------------------------------------------------- sound

_WAVETABLE = 8192  # power of two: phase -> index is a mask; nearest lookup error < -60 dB
#: per-object peak before panning (x sqrt(2) pan gain: even 3 objects peaking together stay below full scale)
PEAK_PER_OBJECT = 0.2


@lru_cache(maxsize=64)
def _wavetable(amps: tuple[tuple[int, float], ...]) -> np.ndarray:
    ph = np.arange(_WAVETABLE) / _WAVETABLE
    table = sum(a * np.sin(2 * math.pi * k * ph) for k, a in amps)
    return (table / np.max(np.abs(table))).astype(np.float32)


def _osc(freq: np.ndarray | float, t: np.ndarray, table: np.ndarray, phase0: float) -> np.ndarray:
    """Wavetable oscillator with (possibly time-varying) frequency: cost independent of harmonics."""
    if np.ndim(freq) == 0:
        phase = phase0 + float(freq) * t
    else:
        inc = np.asarray(freq, dtype=np.float64) / SAMPLE_RATE
        phase = phase0 + np.cumsum(inc) - inc[0]
    idx = (phase * _WAVETABLE).astype(np.int64) & (_WAVETABLE - 1)
    return table[idx]


def _harmonics(f0: float, odd_only: bool = False, tilt: float = 1.0, fmax: float = 6500.0) -> tuple[tuple[int, float], ...]:
    """Harmonic amplitudes 1/k^tilt up to ``fmax`` (band-limited for the jittered f0 too)."""
    ks = [k for k in range(1, int(fmax // f0) + 1) if not odd_only or k % 2]
    return tuple((k, 1.0 / k**tilt) for k in ks)


def _strikes(t: np.ndarray, period: float, decay: float, phase: float) -> np.ndarray:
    """Repeating exponentially decaying envelope (struck sounds)."""
    local = np.mod(t + phase * period, period)
    return np.exp(-local / decay) * np.minimum(local / 0.003, 1.0)


def class_sound(cls: SynthClass, n: int, rng: np.random.Generator, pitch_jitter: float, start: int = 0) -> np.ndarray:
    """``n`` samples (from sample ``start`` of the clip) of one object instance's sound, peak 1."""
    f0 = cls.f0 * float(np.exp(rng.uniform(-pitch_jitter, pitch_jitter)))
    t = (start + np.arange(n)) / SAMPLE_RATE
    ph = float(rng.random())
    kind = cls.sound
    if kind == "saw":
        y = _osc(f0, t, _wavetable(_harmonics(cls.f0)), ph)
    elif kind == "saw-throb":
        y = _osc(f0, t, _wavetable(_harmonics(cls.f0)), ph) * (1 - 0.45 * (0.5 + 0.5 * np.sin(2 * math.pi * 5.0 * t + 6.28 * ph)))
    elif kind == "odd":
        y = _osc(f0, t, _wavetable(_harmonics(cls.f0, odd_only=True, tilt=1.3)), ph)
    elif kind == "pulse":
        pulses = 0.5 + 0.5 * np.tanh(8 * np.sin(2 * math.pi * 8.0 * t + 6.28 * ph))
        y = _osc(f0, t, _wavetable(_harmonics(cls.f0, tilt=0.8)), ph) * pulses
    elif kind == "sweep":
        freq = f0 * (1 + 0.3 * np.sin(2 * math.pi * 0.5 * t + 6.28 * ph))
        y = _osc(freq, t, _wavetable(((1, 1.0), (2, 0.35), (3, 0.15))), ph)
    elif kind == "bell":
        partials = ((1.0, 1.0), (2.76, 0.6), (5.40, 0.35), (6.1, 0.2))
        y = sum(a * np.sin(2 * math.pi * f0 * r * t + 6.28 * rng.random()) for r, a in partials)
        y = y * _strikes(t, 0.8, 0.3, ph)
    elif kind == "whistle":
        freq = f0 * (1 + 0.015 * np.sin(2 * math.pi * 5.5 * t))
        y = _osc(freq, t, _wavetable(((1, 1.0), (2, 0.08))), ph)
    elif kind == "chirp":
        period = 0.25
        local = np.mod(t + ph * period, period)
        freq = f0 * (0.85 + 0.3 * np.minimum(local / 0.08, 1.0))
        y = _osc(freq, t, _wavetable(((1, 1.0),)), ph) * ((local < 0.08) * np.sin(math.pi * np.minimum(local / 0.08, 1.0)))
    elif kind == "thump":
        env = _strikes(t, 0.4, 0.12, ph)
        freq = f0 * (1 + 0.6 * env)  # pitch drops as the hit decays
        y = _osc(freq, t, _wavetable(((1, 1.0), (2, 0.3), (3, 0.1))), ph) * env
        y = y + 0.25 * rng.normal(0, 1, n) * env**4
    elif kind == "rattle":
        spec = np.fft.rfft(rng.normal(0, 1, n))
        freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
        spec[(freqs < 0.7 * f0) | (freqs > 1.45 * f0)] = 0
        noise = np.fft.irfft(spec, n)
        y = noise * _strikes(t, 1 / 14.0, 0.035, ph)
    else:
        raise ValueError(f"unknown sound recipe {kind!r}")
    y = np.asarray(y, dtype=np.float64)
    return y / (np.max(np.abs(y)) + 1e-12)


def gate(on_seconds: np.ndarray, n: int, ramp: float = 0.01) -> np.ndarray:
    """Per-sample on/off envelope from per-second flags, with short linear ramps (no clicks).

    The ramps sit inside the sounding seconds, so a second flagged off is exactly silent.
    """
    per = SAMPLE_RATE
    g = np.repeat(np.asarray(on_seconds, dtype=np.float64), per)[:n]
    if len(g) < n:
        g = np.pad(g, (0, n - len(g)))
    r = int(ramp * SAMPLE_RATE)
    up = np.linspace(0, 1, r, endpoint=False)
    flags = list(on_seconds)
    for s, on in enumerate(flags):
        if not on:
            continue
        a, b = s * per, min((s + 1) * per, n)
        if s == 0 or not flags[s - 1]:
            g[a : a + r] = up
        if s == len(flags) - 1 or not flags[s + 1]:
            g[b - r : b] = np.minimum(g[b - r : b], np.linspace(1, 0, r))
    return g


def background_noise(n: int, rms: float, rng: np.random.Generator) -> np.ndarray:
    """Low white stereo noise ``[n, 2]`` (uniform, cheaper than Gaussian): the 'room' under the objects."""
    return (rng.random((n, 2), dtype=np.float32) - np.float32(0.5)) * np.float32(rms * math.sqrt(12))


def pan_gains(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Equal-power stereo gains for horizontal positions ``x`` in pixels (left edge = left)."""
    theta = np.clip(x / (FRAME_SIZE - 1), 0, 1) * (math.pi / 2)
    return np.cos(theta), np.sin(theta)


_PAN_RATE = 100  # pan gains follow x(t) in 10-ms steps (an object moves < 0.5 px per step)


def mix_audio(
    tracks: list[Track],
    sounding: np.ndarray,
    seconds: int,
    rng: np.random.Generator,
    object_rms: float,
    noise_rms: float,
    pitch_jitter: float,
) -> np.ndarray:
    """Stereo int16 ``[n, 2]``: each track's sound, gated by its sounding seconds, panned by its x.

    ``sounding`` is a bool ``[num_tracks, seconds]`` array.
    """
    n = seconds * SAMPLE_RATE
    out = background_noise(n, noise_rms, rng)
    step = SAMPLE_RATE // _PAN_RATE
    control = (np.arange(seconds * _PAN_RATE) + 0.5) / _PAN_RATE
    for i, tr in enumerate(tracks):
        # a child RNG per track: silent tracks skip synthesis without shifting anyone's randomness
        sub = np.random.default_rng(rng.integers(1 << 63))
        on = np.flatnonzero(sounding[i])
        if not len(on):
            continue
        a, b = int(on[0]) * SAMPLE_RATE, min(n, (int(on[-1]) + 1) * SAMPLE_RATE)  # synthesise the active span only
        loud = float(np.exp(sub.uniform(-0.2, 0.2)))
        y = class_sound(BY_NAME[tr.cls], b - a, sub, pitch_jitter, start=a)
        g = gate(sounding[i], n)[a:b]
        active = g > 0.5
        rms = float(np.sqrt(np.mean(np.square(y[active], dtype=np.float64))))
        scale = min(object_rms * loud / (rms + 1e-12), PEAK_PER_OBJECT)
        left, right = pan_gains(tr.centre(control)[0])
        mono = (y * g).astype(np.float32) * np.float32(scale * math.sqrt(2))  # centred: unit gain per channel
        out[a:b, 0] += mono * np.repeat(left, step)[a:b].astype(np.float32)
        out[a:b, 1] += mono * np.repeat(right, step)[a:b].astype(np.float32)
    return np.round(np.clip(out, -1, 1 - 1 / 32768) * 32767).astype(np.int16)


def wav_bytes(pcm: np.ndarray) -> bytes:
    """16-bit PCM WAV bytes at 16 kHz (stdlib ``wave``: no timestamps, byte-stable)."""
    import io
    import wave

    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(pcm.shape[1])
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(np.ascontiguousarray(pcm, dtype="<i2").tobytes())
    return buf.getvalue()
