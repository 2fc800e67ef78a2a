"""Ref-AVS builder: small trees for the rules, the real 20,459-row metadata for the counts."""

from __future__ import annotations

import csv
import time
from collections import Counter

import pytest
from fake_trees import REAL_REFAVS_METADATA, corrupt, make_refavs_tree, refavs_folder, small_refavs_rows

from avsbench_kit.cli.main import main
from avsbench_kit.data.datasets import DATASETS
from avsbench_kit.data.prepare import load_manifest
from avsbench_kit.data.refavs import build_refavs
from shared_data import shared_file

SPEC = DATASETS.get("refavs")
OFFICIAL_COUNTS = {"train": 14_113, "val": 1_349, "test_s": 2_288, "test_u": 1_656, "test_n": 1_028}



def test_one_sample_per_expression(tmp_path):
    meta = small_refavs_rows()
    root = make_refavs_tree(tmp_path / "REFAVS", meta)
    build = build_refavs(root, SPEC)
    assert build.problems == []
    used = [(i, r) for i, r in enumerate(meta) if r["split"] != "TODO"]
    assert [r["row"] for r in build.rows] == [i for i, _ in used]
    for row, (i, m) in zip(build.rows, used):
        folder = m["uid"].rsplit("_", 2)[0]
        token = m["uid"].rsplit("_", 2)[1]
        assert row["sample_key"] == f"{i:05d}"
        assert (row["clip"], row["split"], row["fid"], row["text"]) == (folder, m["split"], int(m["fid"]), m["exp"])
        assert row["category"] == token and row["is_null"] == (token == "null")
        assert row["frames"] == [f"media/{folder}/frames/{k}.jpg" for k in range(10)]
        assert row["masks"] == [f"gt_mask/{folder}/fid_{m['fid']}/0000{k}.png" for k in range(10)]
        assert row["annotated"] == [True] * 10 and row["num_frames"] == 10
        assert row["audio"] == f"media/{folder}/audio.wav" and row.get("log_mel", "") == ""
    # the null expression reads its own folder, not the vid's
    null = [r for r in build.rows if r["is_null"]]
    assert [r["clip"] for r in null] == ["null_c-ccc_0_10000"]
    assert "skipped 1 rows with split 'TODO' (the official loader never reads them)" in build.notes
    assert any("1 uid(s) occur on more than one row" in n for n in build.notes)
    assert build.media_dirs == ["media", "gt_mask"] and build.metadata_files == ["metadata.csv"]


def test_bad_rows_and_media_are_problems(tmp_path):
    meta = small_refavs_rows()
    meta.append({"vid": "x", "uid": "x_cat_1", "split": "test_x", "fid": "0", "exp": "unknown split"})
    meta.append({"vid": "y", "uid": "y_dog_1", "split": "val", "fid": "one", "exp": "bad fid"})
    meta.append({"vid": "z", "uid": "nounderscore", "split": "val", "fid": "0", "exp": "bad uid"})
    root = make_refavs_tree(
        tmp_path,
        meta,
        drop=["media/bbb_0_10000/frames/3.jpg", "gt_mask/ccc_0_10000/fid_1"],
    )
    corrupt(root, "media/aaa_0_10000/audio.wav")
    build = build_refavs(root, SPEC)
    got = sorted((p.sample_key, p.path, p.reason.split(" (")[0]) for p in build.problems)
    n = len(meta)
    assert got == sorted([
        ("00002", "media/bbb_0_10000/frames/3.jpg", "missing"),
        ("00003", "media/bbb_0_10000/frames/3.jpg", "missing"),
        ("00000", "media/aaa_0_10000/audio.wav", "not a WAV file"),
        ("00001", "media/aaa_0_10000/audio.wav", "not a WAV file"),
        ("00005", "gt_mask/ccc_0_10000/fid_1", "mask track folder missing"),
        (f"{n - 3:05d}", "metadata.csv", f"line {n - 1}: unknown split 'test_x'"),
        (f"{n - 2:05d}", "metadata.csv", f"line {n}: fid 'one' is not an integer"),
        (f"{n - 1:05d}", "metadata.csv", f"line {n + 1}: uid 'nounderscore' is not <folder>_<category>_<n>"),
    ])


def test_malformed_row_keeps_later_keys(tmp_path):
    root = make_refavs_tree(tmp_path)
    lines = (root / "metadata.csv").read_text().splitlines()
    lines.insert(3, "only,three,fields")
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    build = build_refavs(root, SPEC)
    assert [(p.sample_key, p.reason) for p in build.problems] == [("00002", "line 4: 3 field(s), the header has 5")]
    assert [r["sample_key"] for r in build.rows][:3] == ["00000", "00001", "00003"]


# ---- the real metadata -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_tree(tmp_path_factory):
    shared_file("data/refavs/metadata.csv")
    base = tmp_path_factory.mktemp("refavs_real")
    start = time.perf_counter()
    root = make_refavs_tree(base / "REFAVS", REAL_REFAVS_METADATA)
    print(f"fake Ref-AVS tree from the real metadata: {time.perf_counter() - start:.1f} s")
    return base


@pytest.mark.slow
def test_real_metadata_counts_through_the_cli(real_tree, tmp_path, capsys):
    home = tmp_path / "home"
    assert main(["prepare", "refavs", "--root", str(real_tree), "--home", str(home)]) == 0
    out = capsys.readouterr().out
    manifest = load_manifest("refavs", home=home)

    with open(REAL_REFAVS_METADATA, newline="", encoding="utf-8") as f:
        meta = list(csv.DictReader(f))
    expected = Counter(r["split"] for r in meta if r["split"] != "TODO")
    assert manifest.split_counts() == dict(expected) == OFFICIAL_COUNTS
    for split, n in OFFICIAL_COUNTS.items():
        assert f"{n:,}" in out, split
    todo = sum(r["split"] == "TODO" for r in meta)
    assert todo == 25
    assert f"skipped {todo} rows with split 'TODO' (the official loader never reads them)" in manifest.meta["notes"]
    assert f"note: skipped {todo} rows" in out

    df = manifest.df
    assert df["sample_key"].is_unique and len(df) == len(meta) - todo
    used = [(i, r) for i, r in enumerate(meta) if r["split"] != "TODO"]
    assert list(df["row"]) == [i for i, _ in used]
    assert list(df["sample_key"]) == [f"{i:05d}" for i, _ in used]
    assert list(df["clip"]) == [refavs_folder(r["uid"]) for _, r in used]
    nulls = Counter(r["split"] for _, r in used if r["uid"].rsplit("_", 2)[1] == "null")
    assert df[df["is_null"]]["split"].value_counts().to_dict() == dict(nulls)
    assert (df[df["split"] == "test_n"]["is_null"]).all()
    assert df["clip"].nunique() == len({refavs_folder(r["uid"]) for _, r in used})
