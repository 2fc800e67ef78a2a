"""SynthAVS: a small audio-visual segmentation benchmark generated from a seed, written in the
*official* S4, MS3, Ref-AVS and AVSBench-semantic layouts so the real-benchmark loaders read it
unchanged.

The world (classes, sounds, drawing) lives in ``synth_world``, the scene samplers in
``synth_scenes``, the AVSS label set and metadata in ``synth_avss``; this module resolves the
config, renders every clip and writes the files.
Output is byte-deterministic for a (seed, config): every clip has its own RNG seeded from
(seed, subset, split, index), and nothing time- or machine-dependent is written.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import sys
import time
import zlib
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from avsbench_kit import __version__
from avsbench_kit.config import apply_overrides, config_hash, load_preset
from avsbench_kit.errors import ConfigError, DataError

#: bump when the same (seed, config) would produce different bytes
GENERATOR_VERSION = 2  # 2: + the AVSBench-semantic subset (avs_released/)
REFAVS_SPLITS = ("train", "val", "test_s", "test_u")
NULL_SPLITS = ("train", "val", "test_n")


# --------------------------------------------------------------------------------------- config


def resolve_config(size: str = "small", overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The preset ``synth/<size>`` with ``overrides`` applied, validated (ConfigError otherwise)."""
    cfg = apply_overrides(load_preset("synth", size), list(overrides))
    validate_config(cfg)
    return cfg


def validate_config(cfg: dict[str, Any]) -> None:
    """Reject values the generator cannot honour, naming the key."""
    from avsbench_kit.data.synth_scenes import SOUND_STYLES
    from avsbench_kit.data.synth_world import BY_NAME

    def bad(key: str, why: str, hint: str) -> ConfigError:
        return ConfigError(f"synth config {key}: {why}", hint=hint)

    for sub, splits in (("s4", ("train", "val", "test")), ("ms3", ("train", "val", "test")),
                        ("refavs", REFAVS_SPLITS)):
        for split in splits:
            v = cfg[sub]["clips"][split]
            if not isinstance(v, int) or v < 0 or v > 100_000:
                raise bad(f"{sub}.clips.{split}={v!r}", "must be an integer in [0, 100000]", f"e.g. {sub}.clips.{split}=16")
    for split in NULL_SPLITS:
        v = cfg["refavs"]["nulls"][split]
        if not isinstance(v, int) or v < 0:
            raise bad(f"refavs.nulls.{split}={v!r}", "must be a non-negative integer", f"e.g. refavs.nulls.{split}=4")
        host = "test_s" if split == "test_n" else split
        if v and not cfg["refavs"]["clips"][host]:
            raise bad(f"refavs.nulls.{split}={v}", f"null expressions need {host} clips to point at",
                      f"set refavs.clips.{host} > 0 or refavs.nulls.{split}=0")
    from avsbench_kit.data.synth_avss import SPLITS, SUBSETS

    for subset in SUBSETS:
        for split in SPLITS:
            v = cfg["avss"]["clips"][subset][split]
            if not isinstance(v, int) or isinstance(v, bool) or v < 0 or v > 100_000:
                raise bad(f"avss.clips.{subset}.{split}={v!r}", "must be an integer in [0, 100000]",
                          f"e.g. avss.clips.{subset}.{split}=8")

    def int_range(key: str, lo_min: int, hi_max: int) -> None:
        sub, leaf = key.split(".")
        v = cfg[sub][leaf]
        if not (isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) for x in v)
                and lo_min <= v[0] <= v[1] <= hi_max):
            raise bad(f"{key}={v!r}", f"must be two integers (min, max) with {lo_min} <= min <= max <= {hi_max}",
                      f"e.g. {key}=[{lo_min},{max(lo_min, min(4, hi_max))}]")

    def float_range(key: str, lo_min: float, hi_max: float) -> None:
        sub, leaf = key.split(".")
        v = cfg[sub][leaf]
        if not (isinstance(v, list) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v)
                and lo_min <= v[0] <= v[1] <= hi_max):
            raise bad(f"{key}={v!r}", f"must be two numbers (min, max) with {lo_min} <= min <= max <= {hi_max}",
                      "see the default in presets/synth/small.yaml")

    def unit(key: str, lo: float = 0.0, hi: float = 1.0) -> None:
        sub, leaf = key.split(".")
        v = cfg[sub][leaf]
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not lo <= v <= hi:
            raise bad(f"{key}={v!r}", f"must be a number between {lo} and {hi}", "see the default in presets/synth/small.yaml")

    unseen = cfg["refavs"]["unseen"]
    if not isinstance(unseen, list) or any(u not in BY_NAME for u in unseen) or len(set(unseen)) != len(unseen):
        raise bad(f"refavs.unseen={unseen!r}", f"must list distinct classes among {sorted(BY_NAME)}",
                  "e.g. refavs.unseen=[whistle,engine,rattle]")
    if cfg["refavs"]["clips"]["test_u"] and not unseen:
        raise bad("refavs.unseen=[]", "test_u clips need at least one unseen class", "list one, or set refavs.clips.test_u=0")
    seen = len(BY_NAME) - len(unseen)
    int_range("ms3.objects", 2, 6)
    int_range("refavs.objects", 1, min(6, seen))
    int_range("refavs.expressions", 1, 8)
    int_range("avss.objects", 2, 6)
    for key in ("s4.radius", "ms3.radius", "refavs.radius", "avss.radius"):
        float_range(key, 8.0, 80.0)
    float_range("motion.speed", 0.0, 200.0)
    style = cfg["refavs"]["sound_style"]
    if style not in SOUND_STYLES:
        raise bad(f"refavs.sound_style={style!r}", f"must be one of {', '.join(SOUND_STYLES)}",
                  "e.g. refavs.sound_style=relational (sound expressions as real Ref-AVS words them)")
    unit("ms3.twin_prob")
    unit("refavs.twin_prob")
    unit("refavs.silent_prob", 0.0, 0.9)
    unit("avss.twin_prob")
    unit("avss.silent_prob", 0.0, 0.9)
    unit("audio.object_rms", 0.001, 0.2)
    unit("audio.noise_rms", 0.0, 0.05)
    unit("audio.pitch_jitter", 0.0, 0.1)


def clip_rng(seed: int, subset: str, split: str, index: int) -> np.random.Generator:
    """The RNG of one clip (or null row): depends only on (seed, subset, split, index)."""
    words = [int(seed) & 0xFFFFFFFF, zlib.crc32(subset.encode()), zlib.crc32(split.encode()), int(index)]
    return np.random.default_rng(np.random.SeedSequence(words))


# -------------------------------------------------------------------------------------- writing


def _png(img: np.ndarray) -> bytes:
    """PNG bytes: RGB ``[H,W,3]`` -> 24-bit colour, ``[H,W]`` -> 8-bit grey."""
    import cv2

    data = cv2.cvtColor(img, cv2.COLOR_RGB2BGR) if img.ndim == 3 else img
    # zlib level 1 + RLE strategy: as fast as any setting and the smallest files for these images
    ok, buf = cv2.imencode(".png", data, [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, 3])
    assert ok
    return buf.tobytes()


def _jpg(img: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buf.tobytes()


_EMPTY_MASK: list[bytes] = []


def _mask_png(mask: np.ndarray) -> bytes:
    """8-bit grey PNG with values 0/255 (what both official loaders read exactly)."""
    if not mask.any():  # common for Ref-AVS tracks: encode the all-black frame once
        if not _EMPTY_MASK:
            _EMPTY_MASK.append(_png(np.zeros(mask.shape, np.uint8)))
        return _EMPTY_MASK[0]
    return _png(mask.astype(np.uint8) * np.uint8(255))


class _Tree:
    """Writes files under a private temporary root that is later renamed into place as a whole
    (so a per-file atomic rename would add nothing); remembers the folders it made."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._made: set[Path] = set()

    def put(self, rel: str, data: bytes) -> None:
        path = self.root / rel
        if path.parent not in self._made:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._made.add(path.parent)
        with open(path, "wb") as f:
            f.write(data)


def _csv(rows: Iterable[Sequence[Any]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


def _render_clip(scene, rng: np.random.Generator, cfg: dict[str, Any]):
    """Frames, per-track visible silhouettes and stereo PCM of a scene (one frame per second,
    drawn at mid-second; frame k shows second k)."""
    from avsbench_kit.data.synth_world import background, mix_audio, render

    bg = background(rng)
    frames, parts = [], []
    for s in range(scene.seconds):
        frame, vis = render(scene.tracks, list(scene.visible[:, s]), s + 0.5, bg)
        frames.append(frame)
        parts.append(vis)
    a = cfg["audio"]
    pcm = mix_audio(scene.tracks, scene.sounding, scene.seconds, rng, float(a["object_rms"]),
                    float(a["noise_rms"]), float(a["pitch_jitter"]))
    return frames, parts, pcm


def _sounding_mask(scene, parts: list[np.ndarray], s: int) -> np.ndarray:
    """GT of an AVSBench frame: the union of the visible parts of the objects sounding in second s."""
    out = np.zeros_like(parts[0])
    for i in np.flatnonzero(scene.sounding[:, s]):
        out |= parts[i]
    return out


def _write_s4(tree: _Tree, scene, rng, cfg) -> None:
    from avsbench_kit.data.synth_world import wav_bytes

    frames, parts, pcm = _render_clip(scene, rng, cfg)
    cat, name, split = scene.tracks[0].cls, scene.name, scene.split
    base = "Single-source/s4_data"
    for s, frame in enumerate(frames):
        k = s + 1
        tree.put(f"{base}/visual_frames/{split}/{cat}/{name}/{name}_{k}.png", _png(frame))
        if split != "train" or k == 1:  # official S4 train annotates the first frame only
            tree.put(f"{base}/gt_masks/{split}/{cat}/{name}/{name}_{k}.png", _mask_png(_sounding_mask(scene, parts[s], s)))
    tree.put(f"{base}/audio_wav/{split}/{cat}/{name}.wav", wav_bytes(pcm))


def _write_ms3(tree: _Tree, scene, rng, cfg) -> None:
    from avsbench_kit.data.synth_world import wav_bytes

    frames, parts, pcm = _render_clip(scene, rng, cfg)
    name, split = scene.name, scene.split
    base = "Multi-sources/ms3_data"
    for s, frame in enumerate(frames):
        k = s + 1
        tree.put(f"{base}/visual_frames/{name}/{name}.mp4_{k}.png", _png(frame))
        tree.put(f"{base}/gt_masks/{split}/{name}/{name}_{k}.png", _mask_png(_sounding_mask(scene, parts[s], s)))
    tree.put(f"{base}/audio_wav/{split}/{name}.wav", wav_bytes(pcm))


def _write_refavs(tree: _Tree, scene, rng, cfg, null_folders: list[str]) -> None:
    """Media + one mask track per object (fid = track index); null folders get a copy of the
    media and an all-black fid_0 track."""
    from avsbench_kit.data.synth_world import wav_bytes

    frames, parts, pcm = _render_clip(scene, rng, cfg)
    media = [(f"frames/{s}.jpg", _jpg(f)) for s, f in enumerate(frames)] + [("audio.wav", wav_bytes(pcm))]
    for folder in [scene.name, *null_folders]:
        for rel, data in media:
            tree.put(f"REFAVS/media/{folder}/{rel}", data)
    for fid in range(len(scene.tracks)):
        for s in range(scene.seconds):
            tree.put(f"REFAVS/gt_mask/{scene.name}/fid_{fid}/0000{s}.png", _mask_png(parts[s][fid]))
    black = _mask_png(np.zeros_like(parts[0][0]))
    for folder in null_folders:
        for s in range(scene.seconds):
            tree.put(f"REFAVS/gt_mask/{folder}/fid_0/0000{s}.png", black)


def _write_avss(tree: _Tree, subset: str, scene, rng, cfg) -> None:
    """Frames, audio and the label maps the official GT flags call for (v1s train: frame 0 only)."""
    from avsbench_kit.data.avss import annotated_frames
    from avsbench_kit.data.synth_avss import ROOT, label_map, to_rgb, uid
    from avsbench_kit.data.synth_world import wav_bytes

    frames, parts, pcm = _render_clip(scene, rng, cfg)
    base = f"{ROOT}/{subset}/{uid(scene)}"
    for s, (frame, annotated) in enumerate(zip(frames, annotated_frames(subset, scene.split))):
        tree.put(f"{base}/frames/{s}.jpg", _jpg(frame))
        if annotated:
            tree.put(f"{base}/labels_rgb/{s}.png", _png(to_rgb(label_map(scene, parts[s], s))))
    tree.put(f"{base}/audio.wav", wav_bytes(pcm))


# ------------------------------------------------------------------------------------- sampling


def _sample_all(seed: int, cfg: dict[str, Any]) -> dict[str, Any]:
    """Every scene and Ref-AVS row, before any pixel is drawn (cheap; fixes all names and counts)."""
    from avsbench_kit.data.synth_scenes import ms3_scene, null_expression, refavs_scene, s4_scene
    from avsbench_kit.data.synth_world import CLASSES

    s4, ms3 = [], []
    for split in ("train", "val", "test"):
        for i in range(cfg["s4"]["clips"][split]):
            rng = clip_rng(seed, "s4", split, i)
            s4.append((s4_scene(rng, cfg, f"synth-s4-{split}-{i:04d}", split, i), rng))
        for i in range(cfg["ms3"]["clips"][split]):
            rng = clip_rng(seed, "ms3", split, i)
            ms3.append((ms3_scene(rng, cfg, f"synth-ms3-{split}-{i:04d}", split), rng))

    unseen = list(cfg["refavs"]["unseen"])
    everything = [c.name for c in CLASSES]
    seen = [c for c in everything if c not in unseen]
    ref: dict[str, list] = {}
    for split in REFAVS_SPLITS:
        pool, refer = (everything, unseen) if split == "test_u" else (seen, None)
        ref[split] = []
        for i in range(cfg["refavs"]["clips"][split]):
            rng = clip_rng(seed, "refavs", split, i)
            name = f"synth-ref-{split.replace('_', '-')}-{i:04d}"
            ref[split].append((refavs_scene(rng, cfg, name, split, pool, refer), rng))

    nulls: dict[str, list] = {}  # split -> [(host scene, Expression)]
    for split in NULL_SPLITS:
        hosts = ref["test_s" if split == "test_n" else split]
        nulls[split] = []
        for j in range(cfg["refavs"]["nulls"][split]):
            rng = clip_rng(seed, "refavs-null", split, j)
            host = hosts[int(rng.integers(len(hosts)))][0]
            nulls[split].append((host, null_expression(rng, host, seen, str(cfg["refavs"]["sound_style"]))))
    _align_batches(ref, nulls, int(cfg["refavs"]["expressions"][0]))
    return {"s4": s4, "ms3": ms3, "refavs": ref, "nulls": nulls, "avss": _sample_avss(seed, cfg)}


def _sample_avss(seed: int, cfg: dict[str, Any]) -> list[tuple[str, Any, np.random.Generator]]:
    """``[(subset, scene, rng)]`` in metadata order: subsets v1s, v1m, v2; splits train, val, test."""
    from avsbench_kit.data.synth_avss import SPLITS, SUBSETS, clip_name
    from avsbench_kit.data.synth_scenes import avss_scene

    out = []
    for subset in SUBSETS:
        for split in SPLITS:
            for i in range(cfg["avss"]["clips"][subset][split]):
                rng = clip_rng(seed, f"avss-{subset}", split, i)
                out.append((subset, avss_scene(rng, cfg, subset, clip_name(subset, split, i), split, i), rng))
    return out


def _align_batches(ref: dict[str, list], nulls: dict[str, list], e_min: int, batch: int = 4) -> None:
    """Drop trailing expressions (from clips above the minimum, last clips first) so every
    evaluation split holds a multiple of ``batch`` rows when possible: official Ref-AVS metrics
    average per batch of 4, so a ragged last batch would be over-weighted."""
    for split in ("val", "test_s", "test_u"):
        scenes = [sc for sc, _ in ref[split]]
        extra = (sum(len(sc.expressions) for sc in scenes) + len(nulls.get(split, []))) % batch
        for sc in reversed(scenes):
            while extra and len(sc.expressions) > e_min:
                sc.expressions.pop()
                extra -= 1


def _refavs_rows(ref: dict[str, list], nulls: dict[str, list]) -> tuple[list[list[Any]], dict[str, list[str]]]:
    """metadata.csv rows (vid, uid, split, fid, exp) and, per host clip, its null media folders."""
    rows: list[list[Any]] = []
    folders: dict[str, list[str]] = {}
    null_rows: dict[str, list[list[Any]]] = {}  # host clip -> its train/val null rows
    counters: dict[tuple[str, str], int] = {}

    def uid(folder: str, token: str) -> str:
        counters[(folder, token)] = counters.get((folder, token), 0) + 1
        return f"{folder}_{token}_{counters[(folder, token)]}"

    def null_row(split: str, host, expr) -> list[Any]:
        folder = f"{expr.kind}-{host.name}"
        if folder not in folders.setdefault(host.name, []):
            folders[host.name].append(folder)
        return [host.name, uid(folder, "null"), split, 0, expr.text]

    for split in ("train", "val"):
        for host, expr in nulls[split]:
            null_rows.setdefault(host.name, []).append(null_row(split, host, expr))
    test_n = [null_row("test_n", host, expr) for host, expr in nulls["test_n"]]
    for split in REFAVS_SPLITS:
        for sc, _ in ref[split]:
            for e in sc.expressions:
                rows.append([sc.name, uid(sc.name, e.category), split, e.fid, e.text])
            rows.extend(sorted(null_rows.get(sc.name, []), key=lambda r: r[1]))
    rows.extend(test_n)
    for host in folders:
        folders[host].sort()
    return rows, folders


# ------------------------------------------------------------------------------------ generation


#: keys added after generator v2, hashed only when set away from their default: a benchmark prepared
#: before a key existed keeps its identity (its bytes are unchanged too)
_LATER_KEYS = {("refavs", "sound_style"): "named"}


def _identity_hash(cfg: dict[str, Any]) -> str:
    import copy

    hashed = copy.deepcopy(cfg)
    for (section, key), default in _LATER_KEYS.items():
        if hashed[section].get(key) == default:
            del hashed[section][key]
    return config_hash(hashed)


def _identity(info: dict[str, Any]) -> tuple[Any, ...]:
    return (info.get("generator_version"), info.get("seed"), info.get("config_hash"))


_MARKERS = ("Single-source/s4_meta_data.csv", "Multi-sources/ms3_meta_data.csv", "REFAVS/metadata.csv",
            "avs_released/metadata.csv", "avs_released/label2idx.json")


def _existing(out: Path, ours: dict[str, Any]) -> str | None:
    """Summary if ``out`` already holds this exact benchmark; None if ``out`` is absent/empty."""
    if not out.exists():
        return None
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
        return None
    meta = out / "synth.json"
    hint = f"pass --out with another directory, or delete {out} to regenerate it"
    if not meta.is_file():
        raise DataError(f"{out} exists and is not a SynthAVS benchmark (no synth.json)", hint=hint)
    try:
        info = json.loads(meta.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{meta} is unreadable ({exc})", hint=hint) from None
    if _identity(info) != _identity(ours):
        raise DataError(
            f"{out} holds a SynthAVS benchmark with another config (seed {info.get('seed')}, size "
            f"{info.get('size')}, config {str(info.get('config_hash'))[:12]}, generator v{info.get('generator_version')}) "
            f"than requested (seed {ours['seed']}, size {ours['size']}, config {ours['config_hash'][:12]})",
            hint=hint,
        )
    missing = [m for m in _MARKERS if not (out / m).is_file()]
    if missing:
        raise DataError(f"{out} is an incomplete SynthAVS benchmark (missing {missing[0]})", hint=hint)
    return f"already generated, not regenerated ({_counts_text(info['counts'])})"


def _counts_text(c: dict[str, Any]) -> str:
    avss = c["avss_clips"]
    return (f"S4 {c['s4_clips']} clips, MS3 {c['ms3_clips']} clips, Ref-AVS {c['refavs_clips']} clips / "
            f"{c['refavs_expressions']} expressions ({c['refavs_null']} null), AVSS {sum(avss.values())} clips "
            f"({', '.join(f'{k} {v}' for k, v in avss.items())})")


def _clean_stale(out: Path) -> None:
    """Remove temporary trees left by killed generations of ``out`` (their process is gone)."""
    for tmp in out.parent.glob(f".{out.name}.partial-*"):
        try:
            pid = int(tmp.name.rsplit("-", 1)[1])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except (ValueError, PermissionError, OSError):
            continue


def generate(
    out: Path,
    *,
    seed: int = 0,
    size: str = "small",
    overrides: list[str] | tuple = (),
    progress: bool | None = None,
) -> str:
    """Write SynthAVS (S4, MS3, Ref-AVS and AVSS in their official layouts) to ``out``; return a summary.

    Atomic: everything is written into a temporary sibling directory renamed to ``out`` at the
    end. Idempotent: an ``out`` holding the same (seed, config) is kept; another config is a
    DataError. ``progress`` None = show a bar when stderr is a terminal.
    """
    from avsbench_kit.data import synth_avss
    from avsbench_kit.data.synth_world import world_json
    from avsbench_kit.progress import track

    started = time.perf_counter()
    out = Path(out).expanduser().resolve()
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"synth seed {seed!r} must be a non-negative integer", hint="e.g. --seed 0")
    overrides = list(overrides)
    cfg = resolve_config(size, overrides)
    info: dict[str, Any] = {
        "format": "SynthAVS",
        "generator_version": GENERATOR_VERSION,
        "toolkit_version": __version__,
        "seed": seed,
        "size": size,
        "overrides": overrides,
        "config": cfg,
        "config_hash": _identity_hash(cfg),
    }
    done = _existing(out, info)
    if done is not None:
        return done

    plan = _sample_all(seed, cfg)
    rows, null_folders = _refavs_rows(plan["refavs"], plan["nulls"])
    ref_scenes = [p for split in REFAVS_SPLITS for p in plan["refavs"][split]]
    info["counts"] = {
        "s4_clips": len(plan["s4"]),
        "ms3_clips": len(plan["ms3"]),
        "refavs_clips": len(ref_scenes),
        "refavs_expressions": len(rows),
        "refavs_null": sum(1 for r in rows if str(r[1]).startswith("null_")),
        "refavs_rows_per_split": {s: sum(1 for r in rows if r[2] == s) for s in (*REFAVS_SPLITS, "test_n")},
        "avss_clips": {sub: sum(1 for s, _, _ in plan["avss"] if s == sub) for sub in ("v1s", "v1m", "v2")},
    }
    unseen = list(cfg["refavs"]["unseen"])
    info["world"] = {**world_json(), "refavs_unseen": unseen,
                     "refavs_seen": [c["name"] for c in world_json()["classes"] if c["name"] not in unseen],
                     "avss_label2idx": synth_avss.class_ids()}

    out.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale(out)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    show = sys.stderr.isatty() if progress is None else progress
    try:
        tree = _Tree(tmp)
        tree.put("Single-source/s4_meta_data.csv",
             _csv([("name", "start", "category", "split")] + [(sc.name, 0, sc.tracks[0].cls, sc.split) for sc, _ in plan["s4"]]))
        tree.put("Multi-sources/ms3_meta_data.csv",
             _csv([("video_id", "split")] + [(sc.name, sc.split) for sc, _ in plan["ms3"]]))
        tree.put("REFAVS/metadata.csv", _csv([("vid", "uid", "split", "fid", "exp")] + rows))
        tree.put(f"{synth_avss.ROOT}/metadata.csv", _csv(synth_avss.metadata_rows(plan["avss"])))
        tree.put(f"{synth_avss.ROOT}/label2idx.json", synth_avss.label2idx_json())
        jobs = ([("s4", p) for p in plan["s4"]] + [("ms3", p) for p in plan["ms3"]]
                + [("refavs", p) for p in ref_scenes] + [(sub, (sc, rng)) for sub, sc, rng in plan["avss"]])
        for kind, (scene, rng) in track(jobs, "SynthAVS clips", unit="clips", enabled=show):
            if kind == "s4":
                _write_s4(tree, scene, rng, cfg)
            elif kind == "ms3":
                _write_ms3(tree, scene, rng, cfg)
            elif kind == "refavs":
                _write_refavs(tree, scene, rng, cfg, null_folders.get(scene.name, []))
            else:
                _write_avss(tree, kind, scene, rng, cfg)
        scenes_doc = {
            "s4": [sc.to_json() for sc, _ in plan["s4"]],
            "ms3": [sc.to_json() for sc, _ in plan["ms3"]],
            "refavs": [sc.to_json() for sc, _ in ref_scenes],
            "refavs_null": [{"split": s, "host": h.name, **e.to_json()} for s in NULL_SPLITS for h, e in plan["nulls"][s]],
            "avss": [{"subset": sub, "uid": synth_avss.uid(sc), **sc.to_json()} for sub, sc, _ in plan["avss"]],
        }
        tree.put("synth_scenes.json", (json.dumps(scenes_doc, indent=1, sort_keys=True) + "\n").encode())
        tree.put("synth.json", (json.dumps(info, indent=2, sort_keys=True) + "\n").encode())
        if out.exists():  # someone else finished the same target meanwhile
            done = _existing(out, info)
            if done is not None:
                shutil.rmtree(tmp)
                return done
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    secs = time.perf_counter() - started
    return f"{_counts_text(info['counts'])} in {secs:.1f} s"
