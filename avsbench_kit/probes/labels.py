"""Which classes are in a clip and which are heard: what `audio-offscreen` needs to pick a donor.

Sources, in order: SynthAVS's ``synth_scenes.json`` (every object's class, visibility and sounding
seconds: exact), else the manifest's ``category`` (AVSBench S4 / AVSS: the clip's sounding class,
taken as both present and heard). AVSBench MS3 has neither, so the probe cannot run there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from avsbench_kit.errors import DataError

SCENES_FILE = "synth_scenes.json"


def clip_classes(manifest: Any) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """``(present, sounding)``: clip -> classes visible in it, clip -> classes sounding in it."""
    scenes = _synth_scenes(manifest)
    if scenes is not None:
        return scenes
    present: dict[str, set[str]] = {}
    for r in manifest.df.to_dict("records"):
        category = str(r.get("category") or "")
        if not category:
            raise DataError(f"audio-offscreen needs each clip's sounding class; {manifest.dataset} clip "
                            f"{r['clip']} has no category (and no {SCENES_FILE})",
                            hint="use a dataset with per-clip classes (S4, AVSS, SynthAVS), or drop this probe")
        present.setdefault(r["clip"], set()).add(category)
    return present, {c: set(v) for c, v in present.items()}


def _synth_scenes(manifest: Any) -> tuple[dict[str, set[str]], dict[str, set[str]]] | None:
    root = Path(str(manifest.root))
    for folder in (root, root.parent):
        path = folder / SCENES_FILE
        if path.is_file():
            break
    else:
        return None
    try:
        doc = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is unreadable ({exc})", hint="regenerate SynthAVS (avskit prepare synth)") from None
    present: dict[str, set[str]] = {}
    sounding: dict[str, set[str]] = {}
    clips = set(manifest.df["clip"])
    for group in doc.values():
        for scene in group if isinstance(group, list) else []:
            name = scene.get("name") if isinstance(scene, dict) else None
            if name not in clips:
                continue
            objects = scene.get("objects") or []
            present[name] = {o["class"] for o in objects if o.get("visible")}
            sounding[name] = {o["class"] for o in objects if o.get("sounding")}
    missing = clips - set(present)
    if missing:
        raise DataError(f"{path} does not describe {len(missing)} clip(s) of {manifest.dataset} "
                        f"(e.g. {sorted(missing)[0]})", hint="the manifest and the SynthAVS folder disagree: re-prepare")
    return present, sounding
