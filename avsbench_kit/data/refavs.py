"""Ref-AVS official layout -> manifest rows (official_protocols.md §4).

One sample per metadata ROW (an expression), not per clip. The sample key is the 0-based row
index of ``metadata.csv`` zero-padded to at least 5 digits (``00042``): uids are not unique (11
duplicates in the release), row indexes are, and they sort in file order. The media folder
comes from the uid (``uid.rsplit('_', 2)[0]``), not from ``vid``: null expressions live in
their own ``null_c-<vid>`` / ``null_m-<vid>`` folders. Rows with split ``TODO`` are never read
by the official code and are skipped with a note.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from avsbench_kit.data.avsbench import bad_component
from avsbench_kit.data.datasets import DatasetSpec
from avsbench_kit.data.layout import CsvRow, MediaChecker, read_csv
from avsbench_kit.data.manifest import Exclusion, ManifestBuild
from avsbench_kit.progress import track

METADATA = "metadata.csv"
COLUMNS = ("vid", "uid", "split", "fid", "exp")
NUM_FRAMES = 10
SKIPPED_SPLITS = ("TODO",)
KEY_DIGITS = 5


@dataclass(frozen=True)
class Expression:
    rec: CsvRow
    key: str
    split: str
    folder: str
    category: str
    fid: int
    text: str


def frame_paths(folder: str) -> list[str]:
    return [f"media/{folder}/frames/{k}.jpg" for k in range(NUM_FRAMES)]


def mask_paths(folder: str, fid: int) -> list[str]:
    # the official name is "0000" + str(k): exactly 10 frames, k = 0..9
    return [f"gt_mask/{folder}/fid_{fid}/0000{k}.png" for k in range(NUM_FRAMES)]


def audio_path(folder: str) -> str:
    return f"media/{folder}/audio.wav"


def row_key(index: int, total: int) -> str:
    """The sample key of metadata row ``index``: zero-padded so keys sort in file order."""
    return str(index).zfill(max(KEY_DIGITS, len(str(max(total - 1, 0)))))


def parse_expression(fields: list[str], cols: dict[str, int], splits: tuple[str, ...]) -> tuple[str, str, str, int] | str:
    """(split, folder, category, fid) of a well-formed row, else the reason it is not."""
    uid, split, fid_text = fields[cols["uid"]], fields[cols["split"]], fields[cols["fid"]]
    if split not in splits:
        return f"unknown split {split!r} (expected {', '.join(splits)}, or TODO)"
    parts = uid.rsplit("_", 2)
    if len(parts) != 3 or not all(parts):
        return f"uid {uid!r} is not <folder>_<category>_<n>"
    folder, category = parts[0], parts[1]
    if bad_component(folder):
        return f"uid {uid!r} gives folder {folder!r}, which is not a folder name"
    try:
        fid = int(fid_text)
    except ValueError:
        return f"fid {fid_text!r} is not an integer"
    if fid < 0:
        return f"fid {fid} is negative"
    return split, folder, category, fid


def _folder_problems(checker: MediaChecker, folder: str) -> list[tuple[str, str]]:
    """(path, reason) of the clip-level media shared by every expression of ``folder``."""
    if not checker.listing.is_dir(f"media/{folder}"):
        return [(f"media/{folder}", "media folder missing")]
    out: list[tuple[str, str]] = []
    if not checker.listing.is_dir(f"media/{folder}/frames"):
        out.append((f"media/{folder}/frames", "frames folder missing"))
    else:
        out += [(p, r) for p in frame_paths(folder) if (r := checker.image(p))]
    if reason := checker.wav(audio_path(folder)):
        out.append((audio_path(folder), reason))
    return out


def _track_problems(checker: MediaChecker, folder: str, fid: int) -> list[tuple[str, str]]:
    track_dir = f"gt_mask/{folder}/fid_{fid}"
    if not checker.listing.is_dir(track_dir):
        return [(track_dir, "mask track folder missing")]
    return [(p, r) for p in mask_paths(folder, fid) if (r := checker.image(p))]


def build_refavs(root: Path, spec: DatasetSpec) -> ManifestBuild:
    """``metadata.csv`` + ``media/`` + ``gt_mask/`` -> one row per expression, all 10 frames annotated."""
    root = Path(root)
    table = read_csv(root / METADATA, required=COLUMNS)
    cols = {c: table.col(c) for c in COLUMNS}
    total = len(table.rows)
    problems: list[Exclusion] = []
    expressions: list[Expression] = []
    skipped: Counter[str] = Counter()
    for rec in table.rows:
        key = row_key(rec.index, total)
        why = table.malformed(rec)
        if why:
            problems.append(Exclusion(key, METADATA, why))
            continue
        if rec.fields[cols["split"]] in SKIPPED_SPLITS:
            skipped[rec.fields[cols["split"]]] += 1
            continue
        parsed = parse_expression(rec.fields, cols, spec.splits)
        if isinstance(parsed, str):
            problems.append(Exclusion(key, METADATA, f"line {rec.line}: {parsed}"))
            continue
        split, folder, category, fid = parsed
        expressions.append(Expression(rec, key, split, folder, category, fid, rec.fields[cols["exp"]]))

    checker = MediaChecker(root)
    by_folder: dict[str, set[int]] = {}
    for e in expressions:
        by_folder.setdefault(e.folder, set()).add(e.fid)
    clip_issues: dict[str, list[tuple[str, str]]] = {}
    track_issues: dict[tuple[str, int], list[tuple[str, str]]] = {}
    for folder in track(list(by_folder), f"{spec.name}: checking clips", unit="clips"):
        clip_issues[folder] = _folder_problems(checker, folder)
        for fid in sorted(by_folder[folder]):
            track_issues[folder, fid] = _track_problems(checker, folder, fid)
        # done with this clip: drop its listings so memory stays flat over thousands of folders
        for rel in (f"media/{folder}", f"media/{folder}/frames", f"gt_mask/{folder}",
                    *(f"gt_mask/{folder}/fid_{fid}" for fid in by_folder[folder])):
            checker.listing.forget(rel)

    rows: list[dict] = []
    for e in expressions:
        for path, reason in clip_issues[e.folder] + track_issues[e.folder, e.fid]:
            problems.append(Exclusion(e.key, path, reason))
        rows.append({
            "sample_key": e.key,
            "split": e.split,
            "clip": e.folder,
            "category": e.category,
            "text": e.text,
            "is_null": e.category == "null",
            "fid": e.fid,
            "row": e.rec.index,
            "num_frames": NUM_FRAMES,
            "frames": frame_paths(e.folder),
            "masks": mask_paths(e.folder, e.fid),
            "annotated": [True] * NUM_FRAMES,
            "audio": audio_path(e.folder),
        })

    notes = [f"sample keys = metadata row index zero-padded to {len(row_key(0, total))} digits (Ref-AVS uids are not unique)"]
    for split, n in sorted(skipped.items()):
        notes.append(f"skipped {n} rows with split {split!r} (the official loader never reads them)")
    uids = Counter(e.rec.fields[cols["uid"]] for e in expressions)
    dupes = sum(1 for n in uids.values() if n > 1)
    if dupes:
        notes.append(f"{dupes} uid(s) occur on more than one row; each row is its own expression")
    return ManifestBuild(rows=rows, problems=problems, notes=notes, media_dirs=["media", "gt_mask"],
                         metadata_files=[METADATA])
