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
    scenes = synth_scenes(manifest)
    if scenes is not None:
        objects = {name: sc.get("objects") or [] for name, sc in scenes.items()}
        return ({name: {o["class"] for o in objs if o.get("visible")} for name, objs in objects.items()},
                {name: {o["class"] for o in objs if o.get("sounding")} for name, objs in objects.items()})
    present: dict[str, set[str]] = {}
    for r in manifest.df.to_dict("records"):
        category = str(r.get("category") or "")
        if not category:
            raise DataError(f"audio-offscreen needs each clip's sounding class; {manifest.dataset} clip "
                            f"{r['clip']} has no category (and no {SCENES_FILE})",
                            hint="use a dataset with per-clip classes (S4, AVSS, SynthAVS), or drop this probe")
        present.setdefault(r["clip"], set()).add(category)
    return present, {c: set(v) for c, v in present.items()}


def synth_scenes(manifest: Any) -> dict[str, dict[str, Any]] | None:
    """clip -> its SynthAVS scene (objects with class, fid, visible and sounding seconds;
    expressions), from the ``synth_scenes.json`` beside the dataset root; None when there is none.
    A Ref-AVS null-expression folder gets its host clip's scene (the same media)."""
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
    clips = set(manifest.df["clip"])
    scenes = {scene["name"]: scene for group in doc.values() for scene in (group if isinstance(group, list) else [])
              if isinstance(scene, dict) and scene.get("name") in clips}
    for null in doc.get("refavs_null") or []:  # Ref-AVS null expressions: media folder <kind>-<host clip>
        name = f"{null.get('kind')}-{null.get('host')}"
        if name in clips and null.get("host") in scenes:
            scenes[name] = scenes[null["host"]]
    missing = clips - set(scenes)
    if missing:
        raise DataError(f"{path} does not describe {len(missing)} clip(s) of {manifest.dataset} "
                        f"(e.g. {sorted(missing)[0]})", hint="the manifest and the SynthAVS folder disagree: re-prepare")
    return scenes
