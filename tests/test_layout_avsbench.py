"""AVSBench S4/MS3 builders on small synthetic trees, plus the shared layout helpers."""

from __future__ import annotations

import io

import pytest
from fake_trees import (
    default_ms3_clips,
    default_s4_clips,
    make_ms3_tree,
    make_s4_tree,
    png_bytes,
    replace_file,
    wav_bytes,
    write_csv,
)

from avsbench_kit.data.datasets import DATASETS
from avsbench_kit.data.avsbench import build_ms3, build_s4
from avsbench_kit.data.layout import HeaderError, KeyMaker, MediaChecker, image_size, read_csv
from avsbench_kit.data.prepare import load_manifest, prepare
from avsbench_kit.errors import DataError

S4 = DATASETS.get("avsbench-s4")
MS3 = DATASETS.get("avsbench-ms3")


def _reasons(build) -> list[str]:
    return [f"{p.path}: {p.reason}" for p in build.problems]


# ---- S4 ----------------------------------------------------------------------------------------


def test_s4_rows_follow_the_official_loader(tmp_path):
    clips = default_s4_clips({"train": 3, "val": 2, "test": 2})
    root = make_s4_tree(tmp_path / "Single-source", clips, log_mel=True)
    manifest = prepare("avsbench-s4", tmp_path, home=tmp_path / "home")
    rows = manifest.rows()
    assert [r["clip"] for r in rows] == [c[0] for c in clips]  # file order
    assert [r["row"] for r in rows] == list(range(len(clips)))
    for r, (name, cat, split) in zip(rows, clips):
        assert r["split"] == split and r["category"] == cat and r["num_frames"] == 5
        assert r["sample_key"] == name.replace(".", "_") and "." not in r["sample_key"]
        base = f"s4_data/visual_frames/{split}/{cat}/{name}/{name}_"
        assert r["frames"] == [f"{base}{k}.png" for k in range(1, 6)]
        # which masks the official loader reads: train mask_num = 1, val/test 5
        expected = [
            f"s4_data/gt_masks/{split}/{cat}/{name}/{name}_{k}.png" if (split != "train" or k == 1) else ""
            for k in range(1, 6)
        ]
        assert r["masks"] == expected
        assert r["annotated"] == [bool(m) for m in expected]
        assert r["audio"] == f"s4_data/audio_wav/{split}/{cat}/{name}.wav"
        assert r["log_mel"] == f"s4_data/audio_log_mel/{split}/{cat}/{name}.pkl"
        for rel in r["frames"] + [m for m in r["masks"] if m] + [r["audio"], r["log_mel"]]:
            assert (root / rel).is_file(), rel
    assert manifest.meta["notes"] == []
    assert load_manifest("avsbench-s4", home=tmp_path / "home").fingerprint == manifest.fingerprint


def test_s4_reads_columns_by_position_and_split_by_name(tmp_path):
    """Header names of cols 0-2 do not matter; the split column is found by its name."""
    root = make_s4_tree(tmp_path, [("clipA", "dog_barking", "val"), ("clipB", "helicopter", "test")])
    write_csv(root / "s4_meta_data.csv", ("vid", "t0", "label", "note", "split"),
              [("clipA", 3, "dog_barking", "x", "val"), ("clipB", 0, "helicopter", "y", "test")])
    build = build_s4(root, S4)
    assert build.problems == []
    assert [(r["clip"], r["category"], r["split"]) for r in build.rows] == [
        ("clipA", "dog_barking", "val"), ("clipB", "helicopter", "test")]


def test_s4_without_log_mel_notes_it(tmp_path):
    root = make_s4_tree(tmp_path)
    build = build_s4(root, S4)
    assert all(r["log_mel"] == "" for r in build.rows)
    assert any("audio_log_mel" in n and f"0 of {len(build.rows)}" in n for n in build.notes)


def test_s4_wrong_frame_size_is_a_problem(tmp_path):
    root = make_s4_tree(tmp_path, [("c1", "dog_barking", "test")])
    bad = "s4_data/visual_frames/test/dog_barking/c1/c1_3.png"
    replace_file(root / bad, png_bytes((256, 256)))
    build = build_s4(root, S4)
    assert [p.path for p in build.problems] == [bad]
    assert "256x256" in build.problems[0].reason and "224x224" in build.problems[0].reason


def test_s4_train_clip_needs_only_its_first_mask(tmp_path):
    root = make_s4_tree(tmp_path, [("c1", "dog_barking", "train"), ("c2", "dog_barking", "val")])
    assert not (root / "s4_data/gt_masks/train/dog_barking/c1/c1_2.png").exists()
    assert build_s4(root, S4).problems == []
    (root / "s4_data/gt_masks/train/dog_barking/c1/c1_1.png").unlink()
    (root / "s4_data/gt_masks/val/dog_barking/c2/c2_4.png").unlink()
    assert sorted((p.sample_key, p.reason) for p in build_s4(root, S4).problems) == [
        ("c1", "missing"), ("c2", "missing")]


def test_s4_key_collision_after_dot_mapping(tmp_path):
    root = make_s4_tree(tmp_path, [("a.b", "dog_barking", "test"), ("a_b", "dog_barking", "test")])
    build = build_s4(root, S4)
    assert [r["sample_key"] for r in build.rows] == ["a_b"]
    assert len(build.problems) == 1 and "already used on line 2" in build.problems[0].reason
    assert build.problems[0].sample_key == "line3"  # only the later row is excluded


def test_s4_metadata_problems_name_the_line(tmp_path):
    root = make_s4_tree(tmp_path, [("c1", "dog_barking", "test"), ("c2", "dog_barking", "val")])
    text = (root / "s4_meta_data.csv").read_text()
    text += "c3,0,dog_barking\n" + "c4,0,dog_barking,tset\n" + "c5,0,,val\n"
    (root / "s4_meta_data.csv").write_text(text)
    build = build_s4(root, S4)
    assert [r["clip"] for r in build.rows] == ["c1", "c2"]
    reasons = _reasons(build)
    assert len(reasons) == 3 and all(r.startswith("s4_meta_data.csv: line ") for r in reasons)
    assert "line 4: 3 field(s), the header has 4" in reasons[0]
    assert "line 5: unknown split 'tset'" in reasons[1]
    assert "line 6: category ''" in reasons[2]


def test_s4_metadata_without_split_column_is_an_error(tmp_path):
    root = make_s4_tree(tmp_path)
    write_csv(root / "s4_meta_data.csv", ("name", "start", "category"), [("x", 0, "dog_barking")])
    with pytest.raises(DataError) as err:
        build_s4(root, S4)
    assert "s4_meta_data.csv" in err.value.message and "split" in err.value.message


# ---- MS3 ---------------------------------------------------------------------------------------


def test_ms3_layout_and_annotation(tmp_path):
    clips = default_ms3_clips({"train": 2, "val": 1, "test": 1})
    root = make_ms3_tree(tmp_path / "Multi-sources", clips)
    manifest = prepare("avsbench-ms3", tmp_path, home=tmp_path / "home")
    rows = manifest.rows()
    assert [(r["clip"], r["split"]) for r in rows] == clips
    for r, (vid, split) in zip(rows, clips):
        assert r["frames"] == [f"ms3_data/visual_frames/{vid}/{vid}.mp4_{k}.png" for k in range(1, 6)]
        assert r["masks"] == [f"ms3_data/gt_masks/{split}/{vid}/{vid}_{k}.png" for k in range(1, 6)]
        assert r["annotated"] == [True] * 5  # mask_num = 5 in every split, train included
        assert r["audio"] == f"ms3_data/audio_wav/{split}/{vid}.wav"
        assert all((root / p).is_file() for p in r["frames"] + r["masks"] + [r["audio"]])


def test_ms3_split_column_by_name_and_log_mel(tmp_path):
    root = make_ms3_tree(tmp_path, [("v1", "train"), ("v2", "test")], log_mel=True)
    write_csv(root / "ms3_meta_data.csv", ("video_id", "start", "split"), [("v1", 0, "train"), ("v2", 1, "test")])
    build = build_ms3(root, MS3)
    assert build.problems == []
    assert [r["log_mel"] for r in build.rows] == [
        "ms3_data/audio_log_mel/train/v1.pkl", "ms3_data/audio_log_mel/test/v2.pkl"]


def test_ms3_missing_frames_folder_is_one_problem(tmp_path):
    root = make_ms3_tree(tmp_path, [("v1", "val"), ("v2", "val")], drop=["ms3_data/visual_frames/v2"])
    build = build_ms3(root, MS3)
    assert [(p.sample_key, p.path, p.reason) for p in build.problems] == [
        ("v2", "ms3_data/visual_frames/v2", "frames folder missing")]


# ---- layout helpers ----------------------------------------------------------------------------


def test_read_csv_quotes_blank_lines_bom_and_line_numbers(tmp_path):
    path = tmp_path / "m.csv"
    path.write_bytes('\ufeffa,b,c\n1,"x, y",3\n\n"multi\nline",2,3\n4,5\n'.encode("utf-8"))
    table = read_csv(path, required=("a", "c"))
    assert table.header == ["a", "b", "c"]
    assert [(r.index, r.line, r.fields) for r in table.rows] == [
        (0, 2, ["1", "x, y", "3"]), (1, 4, ["multi\nline", "2", "3"]), (2, 6, ["4", "5"])]
    assert [table.malformed(r) for r in table.rows] == [None, None, "line 6: 2 field(s), the header has 3"]
    import pandas as pd  # the official loaders index rows the pandas way

    assert list(pd.read_csv(path).index) == [r.index for r in table.rows]


def test_read_csv_unparsable_record_and_bad_files(tmp_path):
    path = tmp_path / "m.csv"
    path.write_bytes(b"a,b\n1,2\n3," + b"x" * 200_000 + b"\n5,6\n")  # over csv's field size limit
    table = read_csv(path)
    assert [r.fields for r in table.rows if not r.error] == [["1", "2"], ["5", "6"]]
    bad = [table.malformed(r) for r in table.rows if r.error]
    assert len(bad) == 1 and bad[0].startswith("line 3: unparsable CSV")
    with pytest.raises(DataError, match="lacks column"):
        read_csv(path, required=("split",))
    (tmp_path / "latin.csv").write_bytes(b"a,b\n\xe9,1\n")
    with pytest.raises(DataError, match="not UTF-8"):
        read_csv(tmp_path / "latin.csv")
    with pytest.raises(DataError, match="does not exist"):
        read_csv(tmp_path / "nope.csv")


@pytest.mark.parametrize(
    "fmt,mode,kwargs",
    [("PNG", "RGB", {}), ("PNG", "L", {}), ("PNG", "1", {}), ("PNG", "P", {}), ("JPEG", "RGB", {}),
     ("JPEG", "RGB", {"progressive": True}), ("JPEG", "L", {}), ("JPEG", "CMYK", {}),
     ("JPEG", "RGB", {"exif": b"Exif\x00\x00" + bytes(6000)}), ("BMP", "RGB", {})],
)
def test_image_size_agrees_with_pil(tmp_path, fmt, mode, kwargs):
    from PIL import Image

    path = tmp_path / f"img.{fmt.lower()}"
    Image.new(mode, (53, 37)).save(path, format=fmt, **kwargs)
    with Image.open(path) as img:
        assert image_size(path) == img.size == (53, 37)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_image_size_rejects_damaged_files(tmp_path, fmt, damage):
    from PIL import Image

    buf = io.BytesIO()
    Image.effect_noise((64, 64), 40).convert("RGB").save(buf, format=fmt)
    data = buf.getvalue()
    blob = {"truncate": data[: len(data) // 2], "garbage": b"<html>not found</html>" * 4, "empty": b""}[damage]
    path = tmp_path / "x.img"
    path.write_bytes(blob)
    with pytest.raises(HeaderError):
        image_size(path)
    if damage != "empty":  # PIL agrees the file is unusable (header or decode)
        with pytest.raises(Exception):
            with Image.open(path) as img:
                img.load()


def test_media_checker_caches_and_reports(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.png").write_bytes(png_bytes((10, 20)))
    (tmp_path / "d" / "s.wav").write_bytes(wav_bytes())
    (tmp_path / "d" / "h.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt ")  # a 16-byte header, no audio
    (tmp_path / "d" / "n.wav").write_bytes(b"ID3\x03junkjunkjunk")
    checker = MediaChecker(tmp_path, (20, 10), "must be 20x10")
    assert checker.image("d/a.png") is None
    assert checker.image("d/a.png", sized=True) == "image is 10x20; must be 20x10"
    assert checker.image("d/missing.png") == "missing" and checker.image("e/x.png") == "missing"
    assert checker.wav("d/s.wav") is None and checker.wav("d/n.wav").startswith("not a WAV file")
    assert checker.wav("d/h.wav") == "no fmt chunk (a 16-byte header without audio)"
    checked = checker.files_checked
    checker.image("d/a.png")
    assert checker.files_checked == checked  # answered from the cache
    assert checker.optional("d/s.wav") == "d/s.wav" and checker.optional("d/x.pkl") == ""


def test_key_maker():
    keys = KeyMaker()
    assert keys.make("a.b.c", 2) == ("a_b_c", None)
    key, why = keys.make("a_b.c", 7)
    assert key == "a_b_c" and "already used on line 2" in why



def test_unlistable_folder_is_a_data_error(tmp_path, monkeypatch):
    """A permission error must not be reported as "missing" (it would send the user the wrong way)."""
    import os

    from avsbench_kit.data import layout

    root = make_s4_tree(tmp_path, [("c1", "dog_barking", "val")])
    real_scandir = os.scandir

    def scandir(path):
        if str(path).endswith("c1") and "visual_frames" in str(path):
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(layout.os, "scandir", scandir)
    with pytest.raises(DataError, match="cannot list .*visual_frames/val/dog_barking/c1: Permission denied"):
        build_s4(root, S4)
