"""SynthAVS in the AVSBench-semantic layout (official_protocols.md §3), so the real AVSS builder,
loader and palette decoding run on generated data.

``avs_released/`` holds ``metadata.csv`` (the official columns), ``label2idx.json`` and
``v1s|v1m|v2/<uid>/{frames/<k>.jpg, audio.wav, labels_rgb/<k>.png}``. The label set is the ten
SynthAVS classes plus background: class 0 = background, 1..10 = ``synth_world.CLASSES`` in order.
Label maps are RGB PNGs in the official palette (its first 11 colours, as the official code sizes
the palette by ``len(label2idx)``); a pixel carries the class of the object *sounding* in that
second, silent objects are background. Which label files exist follows the official GT flags
(``avss.annotated_frames``): v1s train has ``0.png`` only.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

ROOT = "avs_released"
SUBSETS = ("v1s", "v1m", "v2")
SPLITS = ("train", "val", "test")
COLUMNS = ("vid", "uid", "s_min", "s_sec", "a_obj", "split", "label")


def class_ids() -> dict[str, int]:
    """``label2idx.json``: background 0, then the SynthAVS classes from 1."""
    from avsbench_kit.data.synth_world import CLASSES

    return {"background": 0, **{c.name: i + 1 for i, c in enumerate(CLASSES)}}


def label2idx_json() -> bytes:
    return (json.dumps(class_ids(), indent=1) + "\n").encode()


def clip_name(subset: str, split: str, index: int) -> str:
    """The ``vid`` column: the generated video's name."""
    return f"synth-avss-{subset}-{split}-{index:04d}"


def uid(scene) -> str:
    """The clip folder: ``<vid>_<start ms>_<end ms>`` like most official uids (every clip starts at 0)."""
    return f"{scene.name}_0_{scene.seconds * 1000}"


def sounding_text(scene) -> str:
    """The ``a_obj`` column: sounding classes joined by ``_`` in drawing order (official style)."""
    names: list[str] = []
    for i in np.flatnonzero(scene.sounding.any(axis=1)):
        if scene.tracks[i].cls not in names:
            names.append(scene.tracks[i].cls)
    return "_".join(names)


def metadata_rows(plan: list[tuple[str, Any, Any]]) -> list[tuple[Any, ...]]:
    """``metadata.csv`` (header first) for ``[(subset, scene, rng), ...]``."""
    rows: list[tuple[Any, ...]] = [COLUMNS]
    for subset, scene, _ in plan:
        rows.append((scene.name, uid(scene), 0, 0, sounding_text(scene), scene.split, subset))
    return rows


def label_map(scene, parts: list[np.ndarray], s: int) -> np.ndarray:
    """uint8 ``[H, W]`` class ids of second ``s``: each sounding object's visible part gets its class.

    ``parts`` are the visible silhouettes after occlusion (disjoint), so the order of painting is moot.
    """
    ids = class_ids()
    out = np.zeros(parts[0].shape, np.uint8)
    for i in np.flatnonzero(scene.sounding[:, s]):
        out[parts[i]] = ids[scene.tracks[i].cls]
    return out


def to_rgb(labels: np.ndarray) -> np.ndarray:
    """Class ids -> RGB in the official AVSS palette (``protocol_constants.npz``)."""
    from avsbench_kit.data.masks import avss_palette

    return avss_palette()[labels]
