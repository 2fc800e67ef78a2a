"""AVSBench-semantic (AVSS) official layout -> manifest rows (official_protocols.md §3).

One sample per clip; ``subset`` = the ``label`` column (v1s / v1m / v2), the clip folder is
``<label>/<uid>/``. Frames are numbered from 0 (5 for v1s/v1m, 10 for v2) and ``num_frames`` is
that real count: padding every clip to T = 10 is an evaluation-protocol matter, not a data one.
Annotated frames follow the official GT flags: v1s train = frame 0 only, v1m all 5, v2 all 10,
and every frame in val/test (whose official loader asserts 5 or 10 label files).

Sample key = uid (unique in the release); a repeated uid is reported as a metadata problem on
its later row, and the first row is kept, because two rows naming one folder would make the
official loader evaluate the same clip twice.
"""

from __future__ import annotations

import json
from pathlib import Path

from avsbench_kit.data.avsbench import bad_component
from avsbench_kit.data.datasets import DatasetSpec
from avsbench_kit.data.layout import KeyMaker, MediaChecker, read_csv
from avsbench_kit.data.manifest import Exclusion, ManifestBuild
from avsbench_kit.errors import DataError
from avsbench_kit.progress import track

METADATA = "metadata.csv"
LABEL2IDX = "label2idx.json"
REQUIRED = ("uid", "split", "label")
FRAMES_PER_SUBSET = {"v1s": 5, "v1m": 5, "v2": 10}
NUM_CLASSES = 71  # 70 classes + background; the official code asserts palette size == len(label2idx)


def annotated_frames(subset: str, split: str) -> list[bool]:
    """The frames whose GT the official code uses (its ``gt_temporal_mask_flag``, unpadded)."""
    n = FRAMES_PER_SUBSET[subset]
    if subset == "v1s" and split == "train":
        return [True] + [False] * (n - 1)
    return [True] * n


def check_label2idx(root: Path, spec: DatasetSpec) -> None:
    """The class table must be a JSON object/list of ``spec.num_classes`` entries (71 for AVSS):
    the official code sizes its palette by it and asserts the two agree."""
    path = root / LABEL2IDX
    expected = spec.num_classes or NUM_CLASSES
    hint = "restore it from the official AVSS release" if not spec.synthetic else "regenerate it: `avskit prepare synth`"
    try:
        table = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path} is not readable JSON ({exc})", hint=hint) from None
    if not isinstance(table, (dict, list)) or len(table) != expected:
        size = len(table) if isinstance(table, (dict, list)) else type(table).__name__
        raise DataError(
            f"{path} has {size} entries; {spec.name} has {expected} ({expected - 1} classes + background)",
            hint=hint,
        )


def check_clip(checker: MediaChecker, key: str, base: str, n: int, needed: list[bool]) -> list[Exclusion]:
    """Problems of one clip folder: frames 0..n-1, the needed label files, audio.wav."""
    if not checker.listing.is_dir(base):
        return [Exclusion(key, base, "clip folder missing")]
    out: list[Exclusion] = []
    for sub, names in (
        ("frames", [f"{k}.jpg" for k in range(n)]),
        ("labels_rgb", [f"{k}.png" for k in range(n) if needed[k]]),
    ):
        if not checker.listing.is_dir(f"{base}/{sub}"):
            out.append(Exclusion(key, f"{base}/{sub}", f"{sub} folder missing"))
            continue
        for name in names:
            rel = f"{base}/{sub}/{name}"
            if reason := checker.image(rel):
                out.append(Exclusion(key, rel, reason))
    if reason := checker.wav(f"{base}/audio.wav"):
        out.append(Exclusion(key, f"{base}/audio.wav", reason))
    return out


def build_avss(root: Path, spec: DatasetSpec) -> ManifestBuild:
    """``metadata.csv`` + ``label2idx.json`` + ``v1s|v1m|v2/<uid>/`` -> one row per clip."""
    root = Path(root)
    table = read_csv(root / METADATA, required=REQUIRED)
    check_label2idx(root, spec)
    cols = {c: table.col(c) for c in REQUIRED}
    obj_col = table.header.index("a_obj") if "a_obj" in table.header else None
    checker = MediaChecker(root)
    keys = KeyMaker()
    rows: list[dict] = []
    problems: list[Exclusion] = []
    extra_labels = 0
    for rec in track(table.rows, f"{spec.name}: checking clips", unit="clips"):
        meta_key = f"line{rec.line}"
        why = table.malformed(rec)
        if why:
            problems.append(Exclusion(meta_key, METADATA, why))
            continue
        uid, split, subset = (rec.fields[cols[c]] for c in REQUIRED)
        if subset not in FRAMES_PER_SUBSET:
            why = f"unknown label (subset) {subset!r} for uid {uid!r} (expected v1s, v1m or v2)"
        elif split not in spec.splits:
            why = f"unknown split {split!r} for uid {uid!r} (expected {', '.join(spec.splits)})"
        elif bad_component(uid):
            why = f"uid {uid!r} is not a folder name"
        if why:
            problems.append(Exclusion(meta_key, METADATA, f"line {rec.line}: {why}"))
            continue
        key, dup = keys.make(uid, rec.line)
        if dup:
            problems.append(Exclusion(meta_key, METADATA, dup))
            continue
        n = FRAMES_PER_SUBSET[subset]
        annotated = annotated_frames(subset, split)
        base = f"{subset}/{uid}"
        problems += check_clip(checker, key, base, n, annotated)
        masks = []
        for k, ann in enumerate(annotated):
            rel = f"{base}/labels_rgb/{k}.png"
            # the official loader reads every label file present; un-annotated ones only if they exist
            present = ann or checker.listing.is_file(rel)
            extra_labels += present and not ann
            masks.append(rel if present else "")
        rows.append({
            "sample_key": key,
            "split": split,
            "clip": uid,
            "subset": subset,
            "category": rec.fields[obj_col] if obj_col is not None else "",
            "row": rec.index,
            "num_frames": n,
            "frames": [f"{base}/frames/{k}.jpg" for k in range(n)],
            "masks": masks,
            "annotated": annotated,
            "audio": f"{base}/audio.wav",
        })
        for sub in ("", "/frames", "/labels_rgb"):
            checker.listing.forget(base + sub)
    notes = []
    if extra_labels:
        notes.append(
            f"{extra_labels} label file(s) on un-annotated v1s train frames are listed but not annotated "
            "(the official loss uses frame 0 only)"
        )
    return ManifestBuild(
        rows=rows,
        problems=problems,
        notes=notes,
        media_dirs=list(FRAMES_PER_SUBSET),
        metadata_files=[METADATA, LABEL2IDX],
    )
