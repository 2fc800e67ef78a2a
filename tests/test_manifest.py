"""Manifest fingerprints and the bad-input contract of `prepare`, on small fake trees."""

from __future__ import annotations

import copy
import io
import shutil
from pathlib import Path

import pandas as pd
import pytest
from fake_trees import corrupt, make_refavs_tree, make_s4_tree, png_bytes, remove, replace_file

from avsbench_kit.cli.main import main
from avsbench_kit.data.prepare import load_manifest, prepare
from avsbench_kit.errors import DataError

CLIPS = [("c0", "dog_barking", "train"), ("c1", "dog_barking", "val"), ("c2", "lawn_mowing", "test"),
         ("c3", "lawn_mowing", "test")]


@pytest.fixture
def s4(tmp_path) -> Path:
    """A data folder holding ``Single-source/`` (what --root points at)."""
    make_s4_tree(tmp_path / "data" / "Single-source", CLIPS, log_mel=True)
    return tmp_path / "data"


def fp(root: Path, home: Path, **kw) -> str:
    return prepare("avsbench-s4", root, home=home, **kw).fingerprint


# ---- fingerprints ------------------------------------------------------------------------------


def test_same_data_same_fingerprint_anywhere(s4, tmp_path):
    first = prepare("avsbench-s4", s4, home=tmp_path / "h1")
    assert fp(s4, tmp_path / "h2") == first.fingerprint
    copy = tmp_path / "elsewhere" / "deeper"
    shutil.copytree(s4, copy)
    moved = prepare("avsbench-s4", copy, home=tmp_path / "h3")
    assert moved.fingerprint == first.fingerprint
    assert moved.meta["root"] != first.meta["root"]
    assert load_manifest("avsbench-s4", home=tmp_path / "h3").fingerprint == first.fingerprint


def test_adding_or_removing_media_changes_the_fingerprint(s4, tmp_path):
    home = tmp_path / "home"
    base = prepare("avsbench-s4", s4, home=home)
    # an extra file the rows never reference (train reads only mask 1) still enters the listing
    extra = "Single-source/s4_data/gt_masks/train/dog_barking/c0/c0_2.png"
    (s4 / extra).write_bytes(png_bytes((224, 224), "L"))
    added = prepare("avsbench-s4", s4, home=home)
    assert added.rows() == base.rows() and added.fingerprint != base.fingerprint
    (s4 / extra).unlink()
    assert fp(s4, home) == base.fingerprint
    remove(s4, "Single-source/s4_data/audio_log_mel/test/lawn_mowing/c3.pkl")  # optional file
    assert fp(s4, home) != base.fingerprint


def test_editing_metadata_changes_the_fingerprint(s4, tmp_path):
    home = tmp_path / "home"
    base = prepare("avsbench-s4", s4, home=home)
    csv_path = s4 / "Single-source" / "s4_meta_data.csv"
    csv_path.write_text(csv_path.read_text().replace("c2,0,", "c2,3,"))  # col 1 (start) is never read
    edited = prepare("avsbench-s4", s4, home=home)
    assert edited.rows() == base.rows() and edited.fingerprint != base.fingerprint


def _stored_png(value: int) -> bytes:
    """An uncompressed 224x224 mask: the file size does not depend on the pixels."""
    from PIL import Image

    img = Image.new("L", (224, 224), 0)
    img.putpixel((value, value), 255)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=0)
    return buf.getvalue()


def test_checksum_sees_pixel_edits_of_the_same_size(s4, tmp_path):
    home = tmp_path / "home"
    mask = s4 / "Single-source/s4_data/gt_masks/val/dog_barking/c1/c1_3.png"
    replace_file(mask, _stored_png(10))
    plain, summed = fp(s4, home), fp(s4, home, checksum=True)
    assert plain != summed
    before = mask.read_bytes()
    replace_file(mask, _stored_png(20))
    assert len(mask.read_bytes()) == len(before) and mask.read_bytes() != before
    assert fp(s4, home) == plain
    assert fp(s4, home, checksum=True) != summed
    # checksums are per referenced file, frames then masks then audio then log-mel
    row = load_manifest("avsbench-s4", home=home).rows("val")[0]
    assert len(row["checksums"]) == 5 + 5 + 2


def test_other_editing_of_linked_files_does_not_leak(s4):
    """replace_file breaks the hard link: the other masks keep their bytes."""
    a = s4 / "Single-source/s4_data/gt_masks/val/dog_barking/c1/c1_3.png"
    b = s4 / "Single-source/s4_data/gt_masks/val/dog_barking/c1/c1_4.png"
    original = b.read_bytes()
    replace_file(a, _stored_png(5))
    assert b.read_bytes() == original != a.read_bytes()


# ---- bad input ---------------------------------------------------------------------------------

S = "Single-source/"
BAD_CASES = {
    "missing-frame": (lambda d: remove(d, S + "s4_data/visual_frames/val/dog_barking/c1/c1_2.png"),
                      "s4_data/visual_frames/val/dog_barking/c1/c1_2.png: missing", ["c1"]),
    "missing-mask": (lambda d: remove(d, S + "s4_data/gt_masks/test/lawn_mowing/c2/c2_5.png"),
                     "s4_data/gt_masks/test/lawn_mowing/c2/c2_5.png: missing", ["c2"]),
    "missing-audio": (lambda d: remove(d, S + "s4_data/audio_wav/train/dog_barking/c0.wav"),
                      "s4_data/audio_wav/train/dog_barking/c0.wav: missing", ["c0"]),
    "unreadable-png": (lambda d: corrupt(d, S + "s4_data/gt_masks/val/dog_barking/c1/c1_1.png"),
                       "s4_data/gt_masks/val/dog_barking/c1/c1_1.png: not an image", ["c1"]),
    "truncated-png": (lambda d: corrupt(d, S + "s4_data/visual_frames/test/lawn_mowing/c3/c3_4.png", "truncate"),
                      "s4_data/visual_frames/test/lawn_mowing/c3/c3_4.png: truncated PNG", ["c3"]),
    "wrong-size": (lambda d: replace_file(d / S / "s4_data/visual_frames/test/lawn_mowing/c2/c2_1.png",
                                          png_bytes((320, 240))),
                   "s4_data/visual_frames/test/lawn_mowing/c2/c2_1.png: image is 320x240", ["c2"]),
    "malformed-row": (lambda d: _append(d, "c9,0,dog_barking\n"),
                      "s4_meta_data.csv: line 6: 3 field(s), the header has 4", ["line6"]),
    "unknown-split": (lambda d: _append(d, "c9,0,dog_barking,tset\n"),
                      "s4_meta_data.csv: line 6: unknown split 'tset'", ["line6"]),
}


def _append(data: Path, text: str) -> None:
    path = data / S / "s4_meta_data.csv"
    path.write_text(path.read_text() + text)


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_stops_names_the_file_and_keeps_the_old_manifest(s4, tmp_path, capsys, case):
    damage, expected, bad_keys = BAD_CASES[case]
    home = tmp_path / "home"
    good = prepare("avsbench-s4", s4, home=home)
    prepared = home / "prepared" / "avsbench-s4"
    before = _snapshot(prepared)
    damage(s4)

    with pytest.raises(DataError) as err:
        prepare("avsbench-s4", s4, home=home)
    assert "1 problem(s)" in err.value.message and expected in err.value.message
    assert "--skip-bad" in err.value.hint
    assert _snapshot(prepared) == before

    capsys.readouterr()
    assert main(["prepare", "avsbench-s4", "--root", str(s4), "--home", str(home)]) == 3
    captured = capsys.readouterr()
    assert expected.split(": ")[0] in " ".join((captured.err + captured.out).split())
    assert _snapshot(prepared) == before

    kept = prepare("avsbench-s4", s4, home=home, skip_bad=True)
    good_keys = [r["sample_key"] for r in good.rows()]
    assert [r["sample_key"] for r in kept.rows()] == [k for k in good_keys if k not in bad_keys]
    excl = pd.read_parquet(prepared / "exclusions.parquet")
    assert list(excl["sample_key"]) == bad_keys
    assert [f"{p}: {r}" for p, r in zip(excl["path"], excl["reason"])][0].startswith(expected)
    assert load_manifest("avsbench-s4", home=home).fingerprint == kept.fingerprint


def test_error_counts_every_problem_and_names_the_first(s4, tmp_path):
    for rel in ("c1/c1_1.png", "c1/c1_2.png", "c1/c1_3.png"):
        remove(s4, S + "s4_data/visual_frames/val/dog_barking/" + rel)
    remove(s4, S + "s4_data/audio_wav/test/lawn_mowing/c3.wav")
    with pytest.raises(DataError) as err:
        prepare("avsbench-s4", s4, home=tmp_path / "home")
    message = err.value.message
    assert message.startswith("4 problem(s)")
    assert "visual_frames/val/dog_barking/c1/c1_1.png: missing" in message
    kept = prepare("avsbench-s4", s4, home=tmp_path / "home", skip_bad=True)
    assert sorted(r["sample_key"] for r in kept.rows()) == ["c0", "c2"]
    excl = pd.read_parquet(tmp_path / "home/prepared/avsbench-s4/exclusions.parquet")
    assert len(excl) == 4 and set(excl["sample_key"]) == {"c1", "c3"}


def test_refavs_skip_bad_through_the_cli(tmp_path, capsys):
    root = make_refavs_tree(tmp_path / "REFAVS", drop=["gt_mask/aaa_0_10000/fid_0/00007.png"])
    home = tmp_path / "home"
    assert main(["prepare", "refavs", "--root", str(tmp_path), "--home", str(home)]) == 3
    assert "gt_mask/aaa_0_10000/fid_0/00007.png" in " ".join(capsys.readouterr().err.split())
    assert not (home / "prepared" / "refavs").exists()
    assert main(["prepare", "refavs", "--root", str(root), "--home", str(home), "--skip-bad"]) == 0
    out = capsys.readouterr().out
    assert "1 sample(s) excluded" in out
    manifest = load_manifest("refavs", home=home)
    assert "00000" not in set(manifest.df["sample_key"]) and "00001" in set(manifest.df["sample_key"])
    excl = pd.read_parquet(home / "prepared" / "refavs" / "exclusions.parquet")
    assert excl.to_dict("records") == [
        {"sample_key": "00000", "path": "gt_mask/aaa_0_10000/fid_0/00007.png", "reason": "missing"}]


def _reencode(path: Path, level: int) -> None:
    """The same pixels through another zlib setting: other bytes, another size."""
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        buf = io.BytesIO()
        img.save(buf, format="PNG", compress_level=level)
    replace_file(path, buf.getvalue())


def test_reencoding_identical_pixels_keeps_the_fingerprint(s4, tmp_path):
    """A codec upgrade that re-encodes the same pixels must not invalidate goldens; only
    --checksum (byte-exact archiving) sees the new bytes."""
    import numpy as np
    from PIL import Image

    home = tmp_path / "home"
    plain, summed = fp(s4, home), fp(s4, home, checksum=True)
    frames = sorted((s4 / "Single-source/s4_data/visual_frames").rglob("*.png"))[:3]
    mask = s4 / "Single-source/s4_data/gt_masks/val/dog_barking/c1/c1_3.png"
    for path in [*frames, mask]:
        before, pixels = path.read_bytes(), np.asarray(Image.open(path))
        _reencode(path, 0)
        assert len(path.read_bytes()) != len(before)
        np.testing.assert_array_equal(np.asarray(Image.open(path)), pixels)
    assert fp(s4, home) == plain
    assert fp(s4, home, checksum=True) != summed


def _move_clip(s4: Path, name: str, old: str, new: str) -> None:
    """Move clip ``name``'s media from ``split/category`` folder ``old`` to ``new``."""
    tree = s4 / "Single-source/s4_data"
    for kind, ext in (("visual_frames", ""), ("gt_masks", ""), ("audio_wav", ".wav"), ("audio_log_mel", ".pkl")):
        (tree / kind / new).mkdir(parents=True, exist_ok=True)
        shutil.move(tree / kind / old / f"{name}{ext}", tree / kind / new / f"{name}{ext}")


@pytest.mark.parametrize("edit", ["category", "split", "row order"])
def test_a_changed_csv_row_or_split_changes_the_fingerprint(s4, tmp_path, edit):
    home = tmp_path / "home"
    base = fp(s4, home)
    csv_path = s4 / "Single-source" / "s4_meta_data.csv"
    lines = csv_path.read_text().splitlines(keepends=True)
    if edit == "category":  # a read column changes (the clip's media moves with it, so it still prepares)
        _move_clip(s4, "c3", "test/lawn_mowing", "test/dog_barking")
        lines = [ln.replace("c3,0,lawn_mowing", "c3,0,dog_barking") for ln in lines]
    elif edit == "split":  # a test clip becomes a val clip
        _move_clip(s4, "c3", "test/lawn_mowing", "val/lawn_mowing")
        lines = [ln.replace("c3,0,lawn_mowing,test", "c3,0,lawn_mowing,val") for ln in lines]
    else:  # the same rows in another order: the official row index changes
        lines = [lines[0], *reversed(lines[1:])]
    assert "".join(lines) != csv_path.read_text()
    csv_path.write_text("".join(lines))
    assert fp(s4, home) != base


def test_edited_parquet_is_refused_at_load(s4, tmp_path):
    home = tmp_path / "home"
    manifest = prepare("avsbench-s4", s4, home=home)
    path = home / "prepared" / "avsbench-s4" / "manifest.parquet"
    if not path.is_file():  # wherever the data home keeps it
        path = next(home.rglob("manifest.parquet"))
    df = pd.read_parquet(path)
    df.loc[0, "category"] = "edited"
    df.to_parquet(path, index=False)
    with pytest.raises(DataError, match="does not match the fingerprint in manifest.json") as err:
        load_manifest("avsbench-s4", home=home)
    assert "manifest.parquet" in err.value.message and manifest.fingerprint


def test_rows_are_converted_once_and_returned_as_fresh_copies(s4, tmp_path):
    """rows() caches the DataFrame -> records conversion per df, but a caller that edits a row
    (or a list in it) never changes what the next caller gets; a replaced df is re-read."""
    m = prepare("avsbench-s4", s4, home=tmp_path / "home")
    direct = copy.deepcopy([{k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in r.items()}
                            for r in m.df[m.df["split"] == "test"].to_dict("records")])
    first = m.rows("test")
    assert first == direct and [r["split"] for r in first] == ["test", "test"]
    first[0]["frames"].append("edited")
    first[0]["sample_key"] = "edited"
    assert m.rows("test") == direct
    assert [r["sample_key"] for r in m.rows()] == m.df["sample_key"].tolist()
    m.df = m.df[m.df["split"] != "train"].reset_index(drop=True)
    assert "train" not in {r["split"] for r in m.rows()}
    with pytest.raises(DataError, match="no split 'train'"):
        m.rows("train")
