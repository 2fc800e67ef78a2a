"""Tiny but valid media trees in the official layouts, built from metadata (importable by any test).

Every file of a kind is a hard link to one small source file (frames, masks, WAVs), so a full
Ref-AVS tree from the real 20,459-row metadata takes seconds. Because linked files share their
bytes, never edit a tree file in place: use :func:`replace_file` / :func:`corrupt` (they unlink
first), or every linked copy would change with it.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import shutil
import wave
from pathlib import Path
from typing import Iterable, Sequence

from shared_data import SHARED

REAL_REFAVS_METADATA = SHARED / "data" / "refavs" / "metadata.csv"
REAL_AVSS_METADATA = SHARED / "data" / "avss" / "metadata.csv"

S4_HEADER = ("name", "start", "category", "split")
MS3_HEADER = ("video_id", "split")
SOURCES = ".fake_sources"  # inside the tree root but outside every media folder


# ---- tiny payloads -----------------------------------------------------------------------------


def png_bytes(size: tuple[int, int] = (224, 224), mode: str = "RGB", spot: tuple[int, int] | None = None) -> bytes:
    """A PNG of ``size``; masks (mode "L") get a white square, or one white pixel at ``spot``."""
    from PIL import Image

    img = Image.new(mode, size, 0 if mode == "L" else (40, 90, 140))
    if mode == "L":
        if spot is None:
            w, h = size
            img.paste(255, (w // 4, h // 4, w // 2, h // 2))
        else:
            img.putpixel(spot, 255)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def jpeg_bytes(size: tuple[int, int] = (64, 48)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, (120, 60, 30)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def wav_bytes(seconds: float = 0.05, rate: int = 16000, channels: int = 2) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x00\x00" * channels * int(seconds * rate))
    return buf.getvalue()


def label_png_bytes(size: tuple[int, int] = (64, 48)) -> bytes:
    """An AVSS colour label: background black, one region in class 1's colour (128, 0, 0)."""
    from PIL import Image

    img = Image.new("RGB", size, (0, 0, 0))
    img.paste((128, 0, 0), (0, 0, size[0] // 2, size[1] // 2))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


# ---- hard-link placement -----------------------------------------------------------------------


class Linker:
    """Places one source file per kind at many paths: hard links, falling back to copies.

    ext4 allows 65,000 links per inode, so a fresh source copy is made when that runs out.
    """

    def __init__(self, root: Path, payloads: dict[str, bytes]) -> None:
        self.src_dir = Path(root) / SOURCES
        self.src_dir.mkdir(parents=True, exist_ok=True)
        self.payloads = payloads
        self._src: dict[str, Path] = {}
        self._made: set[Path] = set()
        self.copy = False
        self.placed = 0

    def _new_source(self, kind: str) -> Path:
        n = sum(1 for p in self.src_dir.iterdir() if p.name.startswith(kind + "."))
        path = self.src_dir / f"{kind}.{n}"
        path.write_bytes(self.payloads[kind])
        self._src[kind] = path
        return path

    def place(self, kind: str, dest: Path) -> None:
        parent = dest.parent
        if parent not in self._made:
            parent.mkdir(parents=True, exist_ok=True)
            self._made.add(parent)
        self.placed += 1
        if self.copy:
            dest.write_bytes(self.payloads[kind])
            return
        src = self._src.get(kind) or self._new_source(kind)
        try:
            os.link(src, dest)
        except OSError as exc:
            if exc.errno == errno.EMLINK:
                os.link(self._new_source(kind), dest)
            elif exc.errno == errno.EEXIST:
                return
            else:  # no hard links here (another device, a filesystem without them): copy
                self.copy = True
                dest.write_bytes(self.payloads[kind])


# ---- editing a tree safely ---------------------------------------------------------------------


def replace_file(path: Path, data: bytes) -> None:
    """Give ``path`` new bytes without touching the other hard links of its old inode."""
    path = Path(path)
    if path.exists():
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def corrupt(root: Path, rel: str, how: str = "garbage") -> None:
    """Damage one file: ``garbage`` (not an image/WAV), ``truncate`` (first half), ``empty``."""
    path = Path(root) / rel
    data = path.read_bytes()
    new = {"garbage": b"this is not media " * 8, "truncate": data[: len(data) // 2], "empty": b""}[how]
    replace_file(path, new)


def remove(root: Path, rel: str) -> None:
    """Delete a file or a whole folder of the tree."""
    path = Path(root) / rel
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()


def _apply(root: Path, drop: Iterable[str], damage: Iterable[str]) -> None:
    for rel in drop:
        remove(root, rel)
    for rel in damage:
        corrupt(root, rel)


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_metadata(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# ---- AVSBench S4 / MS3 -------------------------------------------------------------------------


def default_s4_clips(per_split: dict[str, int] | None = None) -> list[tuple[str, str, str]]:
    """(name, category, split) rows; names mimic YouTube ids and one contains a dot."""
    per_split = per_split or {"train": 3, "val": 2, "test": 2}
    cats = ("dog_barking", "lawn_mowing")
    clips = []
    for split, n in per_split.items():
        for i in range(n):
            clips.append((f"yt{split}{i:03d}-Ab_{i}", cats[i % 2], split))
    if clips:
        name, cat, split = clips[0]
        clips[0] = (name + ".v2", cat, split)  # a dot: the sample key must map it to '_'
    return clips


def make_s4_tree(
    root: Path,
    clips: Sequence[tuple[str, str, str]] | None = None,
    *,
    log_mel: bool = False,
    frame_size: tuple[int, int] = (224, 224),
    drop: Iterable[str] = (),
    corrupt_files: Iterable[str] = (),
) -> Path:
    """``root`` = the ``Single-source`` folder: CSV (name,start,category,split) + s4_data tree.

    Train clips get only ``<name>_1.png`` masks, val/test all 5, like the release.
    """
    root = Path(root)
    clips = default_s4_clips() if clips is None else clips
    write_csv(root / "s4_meta_data.csv", S4_HEADER, [(n, 0, c, s) for n, c, s in clips])
    link = Linker(root, {"frame": png_bytes(frame_size), "mask": png_bytes(frame_size, "L"),
                         "wav": wav_bytes(), "pkl": b"not a real pickle"})
    d = root / "s4_data"
    for name, cat, split in clips:
        for k in range(1, 6):
            link.place("frame", d / "visual_frames" / split / cat / name / f"{name}_{k}.png")
            if k == 1 or split != "train":
                link.place("mask", d / "gt_masks" / split / cat / name / f"{name}_{k}.png")
        link.place("wav", d / "audio_wav" / split / cat / f"{name}.wav")
        if log_mel:
            link.place("pkl", d / "audio_log_mel" / split / cat / f"{name}.pkl")
    _apply(root, drop, corrupt_files)
    return root


def default_ms3_clips(per_split: dict[str, int] | None = None) -> list[tuple[str, str]]:
    per_split = per_split or {"train": 3, "val": 2, "test": 2}
    return [(f"ms3{split}{i:02d}_x-Y", split) for split, n in per_split.items() for i in range(n)]


def make_ms3_tree(
    root: Path,
    clips: Sequence[tuple[str, str]] | None = None,
    *,
    log_mel: bool = False,
    frame_size: tuple[int, int] = (224, 224),
    drop: Iterable[str] = (),
    corrupt_files: Iterable[str] = (),
) -> Path:
    """``root`` = the ``Multi-sources`` folder: CSV (video_id,split) + ms3_data tree.

    Frames have no split level and keep ``.mp4`` in their names; masks exist for all 5 frames.
    """
    root = Path(root)
    clips = default_ms3_clips() if clips is None else clips
    write_csv(root / "ms3_meta_data.csv", MS3_HEADER, clips)
    link = Linker(root, {"frame": png_bytes(frame_size), "mask": png_bytes(frame_size, "L"),
                         "wav": wav_bytes(), "pkl": b"not a real pickle"})
    d = root / "ms3_data"
    for vid, split in clips:
        for k in range(1, 6):
            link.place("frame", d / "visual_frames" / vid / f"{vid}.mp4_{k}.png")
            link.place("mask", d / "gt_masks" / split / vid / f"{vid}_{k}.png")
        link.place("wav", d / "audio_wav" / split / f"{vid}.wav")
        if log_mel:
            link.place("pkl", d / "audio_log_mel" / split / f"{vid}.pkl")
    _apply(root, drop, corrupt_files)
    return root


# ---- Ref-AVS -----------------------------------------------------------------------------------

REFAVS_HEADER = ("vid", "uid", "split", "fid", "exp")


def refavs_folder(uid: str) -> str:
    return uid.rsplit("_", 2)[0]


def small_refavs_rows() -> list[dict[str, str]]:
    """A few expressions covering every split, a null row and a duplicated uid."""
    rows = []
    for split, vid in (("train", "aaa_0_10000"), ("val", "bbb_0_10000"), ("test_s", "ccc_0_10000"),
                       ("test_u", "ddd_0_10000")):
        rows.append({"vid": vid, "uid": f"{vid}_cat_1", "split": split, "fid": "0", "exp": "the cat, meowing"})
        rows.append({"vid": vid, "uid": f"{vid}_emergency-car_2", "split": split, "fid": "1", "exp": "the siren"})
    rows.append({"vid": "ccc_0_10000", "uid": "null_c-ccc_0_10000_null_1", "split": "test_n", "fid": "0",
                 "exp": "the piano"})
    rows.append({"vid": "ddd_0_10000", "uid": "ddd_0_10000_cat_1", "split": "test_u", "fid": "1",
                 "exp": "same uid, another track"})
    rows.append({"vid": "eee_0_10000", "uid": "eee_0_10000_dog_1", "split": "TODO", "fid": "0", "exp": "todo"})
    return rows


def make_refavs_tree(
    root: Path,
    metadata: Path | Sequence[dict[str, str]] | None = None,
    *,
    drop: Iterable[str] = (),
    corrupt_files: Iterable[str] = (),
) -> Path:
    """``root`` = the ``REFAVS`` folder: metadata.csv + media/<folder>/{frames,audio.wav} + gt_mask.

    ``metadata`` is a CSV path (copied byte for byte) or a list of row dicts.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if metadata is None:
        metadata = small_refavs_rows()
    if isinstance(metadata, (str, Path)):
        shutil.copyfile(metadata, root / "metadata.csv")
        rows = read_metadata(Path(metadata))
    else:
        rows = list(metadata)
        write_csv(root / "metadata.csv", REFAVS_HEADER, [[r[c] for c in REFAVS_HEADER] for r in rows])
    link = Linker(root, {"frame": jpeg_bytes(), "mask": png_bytes((64, 48), "L"), "wav": wav_bytes()})
    tracks: dict[str, set[str]] = {}
    for r in rows:
        tracks.setdefault(refavs_folder(r["uid"]), set()).add(r["fid"])
    for folder, fids in tracks.items():
        media = root / "media" / folder
        for k in range(10):
            link.place("frame", media / "frames" / f"{k}.jpg")
        link.place("wav", media / "audio.wav")
        for fid in fids:
            for k in range(10):
                link.place("mask", root / "gt_mask" / folder / f"fid_{fid}" / f"0000{k}.png")
    _apply(root, drop, corrupt_files)
    return root


# ---- AVSBench-semantic -------------------------------------------------------------------------

AVSS_HEADER = ("vid", "uid", "s_min", "s_sec", "a_obj", "split", "label")


def small_avss_rows() -> list[dict[str, str]]:
    rows = []
    for label in ("v1s", "v1m", "v2"):
        for split in ("train", "val", "test"):
            for i in range(2):
                vid = f"{label}{split}{i}"
                rows.append({"vid": vid, "uid": f"{vid}_{i}000_{i + 5}000", "s_min": "0", "s_sec": str(i),
                             "a_obj": "dog" if i else "male", "split": split, "label": label})
    return rows


def make_avss_tree(
    root: Path,
    metadata: Path | Sequence[dict[str, str]] | None = None,
    *,
    drop: Iterable[str] = (),
    corrupt_files: Iterable[str] = (),
) -> Path:
    """``root`` = ``avs_released``: metadata.csv, label2idx.json (71 entries) and
    ``<label>/<uid>/{frames/<k>.jpg, audio.wav, labels_rgb/<k>.png}``; v1s train clips get only
    ``labels_rgb/0.png``, every other clip one label per frame."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if metadata is None:
        metadata = small_avss_rows()
    if isinstance(metadata, (str, Path)):
        shutil.copyfile(metadata, root / "metadata.csv")
        rows = read_metadata(Path(metadata))
    else:
        rows = list(metadata)
        write_csv(root / "metadata.csv", AVSS_HEADER, [[r[c] for c in AVSS_HEADER] for r in rows])
    classes = ["background"] + [f"class{i:02d}" for i in range(1, 71)]
    (root / "label2idx.json").write_text(json.dumps({c: i for i, c in enumerate(classes)}))
    link = Linker(root, {"frame": jpeg_bytes(), "label": label_png_bytes(), "wav": wav_bytes()})
    for r in rows:
        n = 10 if r["label"] == "v2" else 5
        clip = root / r["label"] / r["uid"]
        for k in range(n):
            link.place("frame", clip / "frames" / f"{k}.jpg")
            if k == 0 or not (r["label"] == "v1s" and r["split"] == "train"):
                link.place("label", clip / "labels_rgb" / f"{k}.png")
        link.place("wav", clip / "audio.wav")
    _apply(root, drop, corrupt_files)
    return root
