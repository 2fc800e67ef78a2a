"""AVSBench-object (S4, MS3) official layout -> manifest rows.

Faithful to the official loaders (official_protocols.md §1-2): the CSV is read by position
(col 0 = clip name, S4 col 2 = category) with the split column addressed by name, rows kept in
file order; S4 train reads only the first mask (``mask_num = 1``), MS3 reads all 5 in every
split; frames and masks must be 224x224 because the official loader does not resize.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from avsbench_kit.data.datasets import DatasetSpec
from avsbench_kit.data.layout import CsvTable, KeyMaker, MediaChecker, read_csv
from avsbench_kit.data.manifest import Exclusion, ManifestBuild
from avsbench_kit.errors import DataError
from avsbench_kit.progress import track

NUM_FRAMES = 5
FRAME_SIZE = (224, 224)
SIZE_RULE = "AVSBench S4/MS3 frames and masks must be 224x224 (the official loader does not resize)"


@dataclass(frozen=True)
class ClipPaths:
    """Where one clip's files live, relative to the dataset root."""

    frame_dir: str
    frames: list[str]
    mask_dir: str
    masks: list[str]  # every frame's mask path, annotated or not
    audio: str
    log_mel: str


def s4_paths(name: str, category: str, split: str) -> ClipPaths:
    frame_dir = f"s4_data/visual_frames/{split}/{category}/{name}"
    mask_dir = f"s4_data/gt_masks/{split}/{category}/{name}"
    ks = range(1, NUM_FRAMES + 1)
    return ClipPaths(
        frame_dir,
        [f"{frame_dir}/{name}_{k}.png" for k in ks],
        mask_dir,
        [f"{mask_dir}/{name}_{k}.png" for k in ks],
        f"s4_data/audio_wav/{split}/{category}/{name}.wav",
        f"s4_data/audio_log_mel/{split}/{category}/{name}.pkl",
    )


def ms3_paths(vid: str, split: str) -> ClipPaths:
    frame_dir = f"ms3_data/visual_frames/{vid}"  # no split level; ".mp4" kept in the frame names
    mask_dir = f"ms3_data/gt_masks/{split}/{vid}"
    ks = range(1, NUM_FRAMES + 1)
    return ClipPaths(
        frame_dir,
        [f"{frame_dir}/{vid}.mp4_{k}.png" for k in ks],
        mask_dir,
        [f"{mask_dir}/{vid}_{k}.png" for k in ks],
        f"ms3_data/audio_wav/{split}/{vid}.wav",
        f"ms3_data/audio_log_mel/{split}/{vid}.pkl",
    )


def bad_component(value: str) -> bool:
    """A metadata value that cannot be a single folder/file name."""
    return not value or value in (".", "..") or "/" in value or "\\" in value or "\0" in value


def _row_text(fields: list[str], limit: int = 60) -> str:
    text = ",".join(fields)
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def check_clip(checker: MediaChecker, key: str, paths: ClipPaths, annotated: list[bool]) -> list[Exclusion]:
    """Every problem of one clip; a missing folder is one problem, not one per file."""
    out: list[Exclusion] = []
    for folder, files, kind in (
        (paths.frame_dir, paths.frames, "frames"),
        (paths.mask_dir, [m for m, a in zip(paths.masks, annotated) if a], "masks"),
    ):
        if not checker.listing.is_dir(folder):
            out.append(Exclusion(key, folder, f"{kind} folder missing"))
            continue
        for rel in files:
            reason = checker.image(rel, sized=True)
            if reason:
                out.append(Exclusion(key, rel, reason))
    reason = checker.wav(paths.audio)
    if reason:
        out.append(Exclusion(key, paths.audio, reason))
    return out


def _build(
    root: Path,
    spec: DatasetSpec,
    metadata: str,
    media_root: str,
    min_columns: int,
    paths_of: Callable[[list[str], str], tuple[str, str, ClipPaths]],
    annotated_of: Callable[[str], list[bool]],
) -> ManifestBuild:
    """The S4/MS3 loop: metadata rows in file order -> checked clips -> manifest rows."""
    root = Path(root)
    table: CsvTable = read_csv(root / metadata, required=("split",))
    if len(table.header) < min_columns:
        raise DataError(
            f"{root / metadata} has {len(table.header)} column(s); the official loader reads column "
            f"{min_columns - 1} by position",
            hint="restore the metadata file from the official AVSBench release",
        )
    split_col = table.col("split")
    checker = MediaChecker(root, FRAME_SIZE, SIZE_RULE)
    keys = KeyMaker()
    rows: list[dict] = []
    problems: list[Exclusion] = []
    log_mels = 0
    for rec in track(table.rows, f"{spec.name}: checking clips", unit="clips"):
        meta_key = f"line{rec.line}"
        why = table.malformed(rec)
        if why:
            problems.append(Exclusion(meta_key, metadata, f"{why}: {_row_text(rec.fields)}"))
            continue
        split = rec.fields[split_col]  # compared as is, like the official df['split'] == split
        try:
            name, category, paths = paths_of(rec.fields, split)
        except ValueError as exc:
            problems.append(Exclusion(meta_key, metadata, f"line {rec.line}: {exc}: {_row_text(rec.fields)}"))
            continue
        if split not in spec.splits:
            problems.append(Exclusion(
                meta_key, metadata,
                f"line {rec.line}: unknown split {split!r} for clip {name!r} (expected {', '.join(spec.splits)})",
            ))
            continue
        key, dup = keys.make(name, rec.line)
        if dup:
            problems.append(Exclusion(meta_key, metadata, dup))
            continue
        annotated = annotated_of(split)
        problems += check_clip(checker, key, paths, annotated)
        log_mel = checker.optional(paths.log_mel)
        log_mels += bool(log_mel)
        rows.append({
            "sample_key": key,
            "split": split,
            "clip": name,
            "category": category,
            "row": rec.index,
            "num_frames": NUM_FRAMES,
            "frames": paths.frames,
            "masks": [m if a else "" for m, a in zip(paths.masks, annotated)],
            "annotated": annotated,
            "audio": paths.audio,
            "log_mel": log_mel,
        })
    notes = []
    if rows and log_mels < len(rows):
        notes.append(
            f"audio_log_mel pickles found for {log_mels} of {len(rows)} clips "
            "(log_mel is empty for the others; compute log-mel from the WAVs)"
        )
    subdirs = ("visual_frames", "gt_masks", "audio_wav", "audio_log_mel")
    return ManifestBuild(
        rows=rows,
        problems=problems,
        notes=notes,
        media_dirs=[f"{media_root}/{d}" for d in subdirs],
        metadata_files=[metadata],
    )


def _name(value: str, what: str) -> str:
    if bad_component(value):
        raise ValueError(f"{what} {value!r} is not a folder name")
    return value


def build_s4(root: Path, spec: DatasetSpec) -> ManifestBuild:
    """AVSBench S4: ``s4_meta_data.csv`` + ``s4_data/`` -> one row per clip (5 frames).

    Train clips are annotated on frame 1 only (the official ``mask_num = 1``; the other
    masks are "" because the official loader reads no file there); val/test on all 5.
    """

    def paths_of(fields: list[str], split: str) -> tuple[str, str, ClipPaths]:
        name, category = _name(fields[0], "clip name"), _name(fields[2], "category")
        return name, category, s4_paths(name, category, split)

    return _build(
        root, spec, "s4_meta_data.csv", "s4_data", 3, paths_of,
        lambda split: [True] + [split != "train"] * (NUM_FRAMES - 1),
    )


def build_ms3(root: Path, spec: DatasetSpec) -> ManifestBuild:
    """AVSBench MS3: ``ms3_meta_data.csv`` + ``ms3_data/`` -> one row per clip, all 5 frames annotated.

    Frames have no split level and keep ``.mp4`` in their names (``<id>.mp4_<k>.png``).
    """

    def paths_of(fields: list[str], split: str) -> tuple[str, str, ClipPaths]:
        vid = _name(fields[0], "video id")
        return vid, "", ms3_paths(vid, split)

    return _build(root, spec, "ms3_meta_data.csv", "ms3_data", 1, paths_of, lambda split: [True] * NUM_FRAMES)
