"""SynthAVS scene samplers: which objects a clip holds, when they are visible and when they sound,
and (Ref-AVS) which referring expressions are unambiguous for it.

Pure and cheap (no pixels, no audio): ``synth`` samples every scene first, then renders.
Each sampler takes the clip's own RNG, so a clip never depends on the clips sampled before it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from avsbench_kit.data.synth_world import BY_NAME, CLASSES, COLOURS, SHAPES, Track, appearance_pairs, sample_track

_MAX_TRIES = 200


@dataclass
class Scene:
    """One clip: tracks in drawing order (index = Ref-AVS fid) + per-second visibility/sounding."""

    name: str
    split: str
    seconds: int
    tracks: list[Track]
    visible: np.ndarray  # bool [n_tracks, seconds]
    sounding: np.ndarray  # bool [n_tracks, seconds]; sounding implies visible
    expressions: list["Expression"] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "split": self.split,
            "objects": [
                {
                    "fid": i,
                    "class": tr.cls,
                    "radius": round(tr.radius, 3),
                    # x(t), y(t): start point + velocity, bouncing in [radius, 223 - radius]
                    "motion": [round(v, 4) for v in (tr.x0, tr.y0, tr.vx, tr.vy, tr.angle0, tr.spin)],
                    "visible": [int(s) for s in np.flatnonzero(self.visible[i])],
                    "sounding": [int(s) for s in np.flatnonzero(self.sounding[i])],
                }
                for i, tr in enumerate(self.tracks)
            ],
            "expressions": [e.to_json() for e in self.expressions],
        }


@dataclass(frozen=True)
class Expression:
    """A Ref-AVS expression: ``fid`` of the referred track, or -1 for a null expression."""

    kind: str  # appearance | sound | first | last | null_c | null_m
    text: str
    fid: int
    category: str  # the uid token: the referred class, or "null"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "text": self.text, "fid": self.fid, "category": self.category}


def _speed(cfg: dict[str, Any]) -> tuple[float, float]:
    return tuple(float(v) for v in cfg["motion"]["speed"])  # type: ignore[return-value]


def _radius(sub: dict[str, Any]) -> tuple[float, float]:
    return tuple(float(v) for v in sub["radius"])  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------- S4


def s4_scene(rng: np.random.Generator, cfg: dict[str, Any], name: str, split: str, index: int) -> Scene:
    """Exactly one object, visible and sounding in every second (category = its class).

    Classes cycle with the clip index, so every split is class-balanced.
    """
    return _single_source(rng, cfg["s4"], _speed(cfg), name, split, index)


def _single_source(rng: np.random.Generator, sub: dict[str, Any], speed: tuple[float, float], name: str,
                   split: str, index: int) -> Scene:
    cls = CLASSES[index % len(CLASSES)].name
    seconds = 5
    track = sample_track(rng, cls, _radius(sub), speed)
    on = np.ones((1, seconds), bool)
    return Scene(name, split, seconds, [track], on.copy(), on.copy())


# ------------------------------------------------------------------------------------------ MS3


def _pick_classes(rng: np.random.Generator, n: int, pool: list[str], twin_prob: float,
                  required: list[str] | None = None) -> tuple[list[str], tuple[str, str] | None]:
    """``n`` distinct classes from ``pool``; with probability ``twin_prob`` include a look-alike pair."""
    chosen = list(required or [])
    twin = None
    pairs = [p for p in appearance_pairs() if p[0] in pool and p[1] in pool]
    if chosen:  # prefer a pair that contains a required class, if there is one
        pairs = [p for p in pairs if chosen[0] in p] or pairs
    if pairs and n >= 2 and rng.random() < twin_prob:
        pair = pairs[int(rng.integers(len(pairs)))]
        if len([c for c in chosen if c not in pair]) + 2 <= n:
            twin = pair
            chosen = [c for c in chosen if c not in pair] + list(pair)
    rest = [c for c in pool if c not in chosen]
    k = max(0, n - len(chosen))
    chosen += [rest[i] for i in rng.choice(len(rest), size=min(k, len(rest)), replace=False)]
    order = rng.permutation(len(chosen))
    return [chosen[i] for i in order], twin


def _markov_flags(rng: np.random.Generator, seconds: int, p_on: float = 0.55, p_switch: float = 0.35) -> np.ndarray:
    flags = np.zeros(seconds, bool)
    flags[0] = rng.random() < p_on
    for s in range(1, seconds):
        flags[s] = (not flags[s - 1]) if rng.random() < p_switch else flags[s - 1]
    return flags


def ms3_scene(rng: np.random.Generator, cfg: dict[str, Any], name: str, split: str) -> Scene:
    """2-4 visible objects; only some sound and the sounding set changes over the seconds.

    When a look-alike pair is present, some second has exactly one of the two sounding, so
    appearance alone cannot tell which object to segment.
    """
    return _multi_source(rng, cfg["ms3"], _speed(cfg), name, split)


def _multi_source(rng: np.random.Generator, sub: dict[str, Any], speed: tuple[float, float], name: str,
                  split: str) -> Scene:
    seconds = 5
    lo, hi = (int(v) for v in sub["objects"])
    n = int(rng.integers(lo, hi + 1))
    classes, twin = _pick_classes(rng, n, [c.name for c in CLASSES], float(sub["twin_prob"]))
    tracks = [sample_track(rng, c, _radius(sub), speed) for c in classes]
    for _ in range(_MAX_TRIES):
        sounding = np.stack([_markov_flags(rng, seconds) for _ in tracks])
        if _ms3_ok(sounding, classes, twin):
            break
    else:  # pragma: no cover - the constraints are satisfiable with high probability per try
        raise RuntimeError(f"could not sample a valid MS3 schedule for {name}")
    return Scene(name, split, seconds, tracks, np.ones_like(sounding), sounding)


def _ms3_ok(sounding: np.ndarray, classes: list[str], twin: tuple[str, str] | None) -> bool:
    if not sounding.any() or sounding.all():
        return False  # someone sounds, someone is silent at some point
    if all((sounding[:, s] == sounding[:, 0]).all() for s in range(sounding.shape[1])):
        return False  # the sounding set changes over the seconds
    if twin is not None:
        a, b = classes.index(twin[0]), classes.index(twin[1])
        if not (sounding[a] ^ sounding[b]).any():
            return False  # some second where exactly one look-alike sounds
    return True


# ----------------------------------------------------------------------------------------- AVSS


def avss_scene(rng: np.random.Generator, cfg: dict[str, Any], subset: str, name: str, split: str,
               index: int) -> Scene:
    """A clip of the AVSBench-semantic subset ``subset``, built like its official counterpart.

    v1s: one object sounding all 5 s (classes cycle with the index, as S4); v1m: 2-4 objects, only
    some sounding, the sounding set changing (as MS3); v2: see :func:`_avss_v2`.
    """
    sub, speed = cfg["avss"], _speed(cfg)
    if subset == "v1s":
        return _single_source(rng, sub, speed, name, split, index)
    if subset == "v1m":
        return _multi_source(rng, sub, speed, name, split)
    if subset == "v2":
        return _avss_v2(rng, sub, speed, name, split)
    raise ValueError(f"unknown AVSS subset {subset!r}")


def _avss_v2(rng: np.random.Generator, sub: dict[str, Any], speed: tuple[float, float], name: str,
             split: str) -> Scene:
    """10 s with one to ``objects[1]`` objects (v2 mixes single- and multi-source clips); objects may
    enter late or leave early and each sounds in one segment or stays silent; someone always sounds."""
    seconds = 10
    hi = int(sub["objects"][1])
    for _ in range(_MAX_TRIES):
        n = int(rng.integers(1, hi + 1))
        classes, _twin = _pick_classes(rng, n, [c.name for c in CLASSES], float(sub["twin_prob"]))
        tracks = [sample_track(rng, c, _radius(sub), speed) for c in classes]
        visible, sounding = _refavs_schedule(rng, n, seconds, float(sub["silent_prob"]))
        if sounding.any():
            return Scene(name, split, seconds, tracks, visible, sounding)
    raise RuntimeError(f"could not sample a v2 scene with a sounding object for {name}")  # pragma: no cover


# -------------------------------------------------------------------------------------- Ref-AVS

_TEMPLATES = {
    "appearance": ("the {colour} {shape}", "the {colour} {shape} in the video", "the {shape} that is {colour}"),
    "sound": ("the object making {sound}", "the object that makes {sound}", "the thing producing {sound}"),
    "first": ("the first object to make a sound", "the object that starts sounding first",
              "the object that is heard first"),
    "last": ("the last object to start making a sound", "the object whose sound starts last",
             "the object that starts sounding last"),
}
_KINDS = ("appearance", "sound", "first", "last")

#: ``refavs.sound_style=relational``: sound expressions in the forms real Ref-AVS uses, which say
#: *how* an object sounds relative to the others, never *what* it sounds like (Ref-AVS metadata:
#: "the sounding object" 703, "the object making the loudest sound" 802, "... the longest / shortest
#: sound duration" 478, "... a lowest sound" 209, "the instrument that didn't make any sound" 86),
#: so the text does not name the class and the look: only the audio tells which object is meant.
#: (Loudness is left out: every SynthAVS object sounds at one level.)
SOUND_FORMS: dict[str, tuple[str, ...]] = {
    "sounding": ("the sounding object", "the source of the sound", "the only object making a sound"),
    "longest": ("the object making the longest sound", "the object with the longest sound duration"),
    "shortest": ("the object making the shortest sound", "the object with the shortest sound duration"),
    "lowest": ("the object making the lowest sound", "the object with the lowest pitch"),
    "highest": ("the object making the highest sound", "the object with the highest pitch"),
    "silent": ("the object that does not make any sound", "the silent object", "the object making no sound"),
}
SOUND_STYLES = ("named", "relational")
_PITCH_MARGIN = 1.25  # lowest / highest only when the next pitch is this far (a major third) away


def expression_kind(text: str) -> str | None:
    """The kind (appearance / sound / first / last) of a SynthAVS Ref-AVS expression, recovered
    from its template; None for text no template produced (e.g. real Ref-AVS expressions).

    The manifest keeps the official Ref-AVS columns only, so per-kind analyses read the kind back
    from the text: the templates of different kinds never produce the same sentence. Null
    expressions use the appearance / sound templates too; tell them apart with ``is_null``.
    """
    import re

    if sound_form(text) not in (None, "named"):
        return "sound"
    slots = {"colour": r"\S+", "shape": r"\S+", "sound": ".+"}  # colours and shapes are one word
    for kind in ("first", "last", "sound", "appearance"):  # fixed sentences before open slots
        for template in _TEMPLATES[kind]:
            pattern = re.escape(template)
            for slot, rx in slots.items():
                pattern = pattern.replace(re.escape("{" + slot + "}"), rx)
            if re.fullmatch(pattern, text.strip()):
                return kind
    return None


def sound_form(text: str) -> str | None:
    """How a SynthAVS sound expression refers: a :data:`SOUND_FORMS` key (relational style),
    ``"named"`` (names the sound, so the class), or None for any other text."""
    clean = text.strip()
    for form, templates in SOUND_FORMS.items():
        if clean in templates:
            return form
    prefixes = [t.split("{sound}")[0] for t in _TEMPLATES["sound"]]
    return "named" if any(clean.startswith(p) and len(clean) > len(p) for p in prefixes) else None


def refavs_scene(rng: np.random.Generator, cfg: dict[str, Any], name: str, split: str, pool: list[str],
                 refer: list[str] | None = None) -> Scene:
    """10-s clip with several objects, visibility windows, one sound segment per sounding object,
    and 2-4 unambiguous expressions.

    ``pool``: classes allowed in the clip; ``refer``: classes expressions may refer to (test_u:
    the unseen ones; one or two of them are always in the clip). Resamples until enough
    expressions exist.
    """
    sub = cfg["refavs"]
    seconds = 10
    lo, hi = (int(v) for v in sub["objects"])
    e_lo, e_hi = (int(v) for v in sub["expressions"])
    for _ in range(_MAX_TRIES):
        n = int(rng.integers(lo, hi + 1))
        # test_u: up to two unseen objects per clip, so each clip yields several expressions
        required = [refer[j] for j in rng.permutation(len(refer))[: min(2, n)]] if refer else None
        classes, _twin = _pick_classes(rng, n, pool, float(sub["twin_prob"]), required)
        tracks = [sample_track(rng, c, _radius(sub), _speed(cfg)) for c in classes]
        visible, sounding = _refavs_schedule(rng, len(tracks), seconds, float(sub["silent_prob"]))
        scene = Scene(name, split, seconds, tracks, visible, sounding)
        candidates = _candidates(scene, set(refer) if refer else None, str(sub["sound_style"]))
        if len(candidates) >= e_lo:
            k = int(rng.integers(e_lo, e_hi + 1))
            scene.expressions = _choose(rng, candidates, k, scene)
            return scene
    raise RuntimeError(f"could not sample a Ref-AVS scene with {e_lo} expressions for {name}")  # pragma: no cover


def _refavs_schedule(rng: np.random.Generator, n: int, seconds: int, silent_prob: float) -> tuple[np.ndarray, np.ndarray]:
    visible = np.zeros((n, seconds), bool)
    sounding = np.zeros((n, seconds), bool)
    for i in range(n):
        if rng.random() < 0.7:
            start, end = 0, seconds
        else:  # enters late or leaves early: visible for 5-9 s
            length = int(rng.integers(5, seconds))
            start = int(rng.integers(0, seconds - length + 1))
            end = start + length
        visible[i, start:end] = True
        if rng.random() < silent_prob:
            continue
        onset = int(rng.integers(start, end - 1))
        dur = int(rng.integers(2, min(6, end - onset) + 1))
        sounding[i, onset : onset + dur] = True
    return visible, sounding


def _onset(scene: Scene, i: int) -> int | None:
    on = np.flatnonzero(scene.sounding[i])
    return int(on[0]) if len(on) else None


def _candidates(scene: Scene, refer: set[str] | None, sound_style: str = "named") -> list[tuple[str, int, str]]:
    """Every (kind, fid, sound form) whose expression picks out exactly one track of the scene
    (the form is "" except for sound expressions)."""
    classes = [BY_NAME[t.cls] for t in scene.tracks]
    onsets = [_onset(scene, i) for i in range(len(classes))]
    heard = [o for o in onsets if o is not None]
    relational = _relational_sound(scene) if sound_style == "relational" else {}
    out: list[tuple[str, int, str]] = []
    for i, c in enumerate(classes):
        if refer is not None and c.name not in refer:
            continue
        if sum(o.appearance == c.appearance for o in classes) == 1:
            out.append(("appearance", i, ""))
        if sound_style == "relational":
            out.extend(("sound", i, form) for form in relational.get(i, []))
        elif onsets[i] is not None and sum(o.sound_group == c.sound_group for o in classes) == 1:
            out.append(("sound", i, "named"))
        if onsets[i] is not None and heard.count(onsets[i]) == 1:
            if onsets[i] == min(heard):
                out.append(("first", i, ""))
            if len(heard) >= 2 and onsets[i] == max(heard):
                out.append(("last", i, ""))
    return out


def _relational_sound(scene: Scene) -> dict[int, list[str]]:
    """fid -> the :data:`SOUND_FORMS` that pick out that track alone (among two or more objects)."""
    n = len(scene.tracks)
    if n < 2:
        return {}
    seconds = scene.sounding.sum(axis=1)
    heard = [i for i in range(n) if seconds[i] > 0]
    silent = [i for i in range(n) if seconds[i] == 0]
    out: dict[int, list[str]] = {}

    def unique_extreme(values: dict[int, float], form: str, lowest: bool, margin: float = 1.0) -> None:
        ordered = sorted(values, key=values.__getitem__)
        if lowest and values[ordered[0]] * margin < values[ordered[1]]:
            out.setdefault(ordered[0], []).append(form)
        if not lowest and values[ordered[-1]] > values[ordered[-2]] * margin:
            out.setdefault(ordered[-1], []).append(form)

    if len(heard) == 1:
        out.setdefault(heard[0], []).append("sounding")
    if len(silent) == 1 and heard:
        out.setdefault(silent[0], []).append("silent")
    if len(heard) >= 2:
        length = {i: float(seconds[i]) for i in heard}
        pitch = {i: BY_NAME[scene.tracks[i].cls].f0 for i in heard}
        unique_extreme(length, "longest", lowest=False)
        unique_extreme(length, "shortest", lowest=True)
        unique_extreme(pitch, "lowest", lowest=True, margin=_PITCH_MARGIN)
        unique_extreme(pitch, "highest", lowest=False, margin=_PITCH_MARGIN)
    return out


def _choose(rng: np.random.Generator, candidates: list[tuple[str, int, str]], k: int, scene: Scene) -> list[Expression]:
    """Up to ``k`` candidates, round-robin over kinds so every clip mixes expression types."""
    by_kind: dict[str, list[tuple[str, int, str]]] = {}
    for cand in (candidates[i] for i in rng.permutation(len(candidates))):
        by_kind.setdefault(cand[0], []).append(cand)
    kinds = [kd for kd in (_KINDS[i] for i in rng.permutation(len(_KINDS))) if kd in by_kind]
    picked: list[tuple[str, int, str]] = []
    while len(picked) < k and any(by_kind[kd] for kd in kinds):
        for kd in kinds:
            if by_kind[kd] and len(picked) < k:
                picked.append(by_kind[kd].pop(0))
    return [_expression(rng, kind, fid, scene, form) for kind, fid, form in picked]


def _expression(rng: np.random.Generator, kind: str, fid: int, scene: Scene, form: str = "") -> Expression:
    cls = BY_NAME[scene.tracks[fid].cls]
    templates = SOUND_FORMS[form] if form in SOUND_FORMS else _TEMPLATES[kind]
    text = templates[int(rng.integers(len(templates)))].format(colour=cls.colour, shape=cls.shape, sound=cls.sound_text)
    return Expression(kind, text, fid, cls.name)


def null_expression(rng: np.random.Generator, scene: Scene, pool: list[str], sound_style: str = "named") -> Expression:
    """An expression about something absent from ``scene`` (its GT is empty in every frame).

    ``null_c``: an appearance no object in the clip has (an absent class's look, or a colour/shape
    combination no class has). ``null_m``: a sound no object makes -- preferably the sound of the
    look-alike of a visible object, so only audio reveals that nothing matches. With the
    relational ``sound_style`` only ``null_c``: a named sound would be the one sound sentence of
    its kind in the data, so the text alone would give the null away.
    """
    present = [BY_NAME[t.cls] for t in scene.tracks]
    looks = {c.appearance for c in present}
    groups = {c.sound_group for c in present}
    absent = [BY_NAME[c] for c in pool if BY_NAME[c].sound_group not in groups]
    hard = [c for c in absent if c.appearance in looks]
    sounds = sorted({c.sound_text for c in (hard or absent)})
    use_sound = rng.random() >= 0.5
    pick = rng.random()
    if use_sound and sounds and sound_style == "named":
        text = _TEMPLATES["sound"][int(rng.integers(3))].format(sound=sounds[int(rng.integers(len(sounds)))])
        return Expression("null_m", text, -1, "null")
    options = sorted({BY_NAME[c].appearance for c in pool} - looks)
    if not options or pick < 0.5:
        options = sorted({f"{col} {shp}" for col in COLOURS for shp in SHAPES} - {c.appearance for c in CLASSES})
    colour, shape = options[int(rng.integers(len(options)))].split(" ")
    text = _TEMPLATES["appearance"][int(rng.integers(3))].format(colour=colour, shape=shape)
    return Expression("null_c", text, -1, "null")
