"""AVSBench-semantic builder: small trees for the rules, the real 11,356-row metadata for the counts."""

from __future__ import annotations

import csv
import json
from collections import Counter

import pytest
from fake_trees import REAL_AVSS_METADATA, make_avss_tree, small_avss_rows

from avsbench_kit.data.avss import build_avss
from avsbench_kit.data.datasets import DATASETS
from avsbench_kit.data.prepare import prepare
from avsbench_kit.errors import DataError
from shared_data import shared_file

SPEC = DATASETS.get("avss")
PAPER_COUNTS = {  # official_protocols.md §7 (= the metadata's own counts, checked below)
    ("v1s", "train"): 3452, ("v1s", "val"): 740, ("v1s", "test"): 740,
    ("v1m", "train"): 296, ("v1m", "val"): 64, ("v1m", "test"): 64,
    ("v2", "train"): 4750, ("v2", "val"): 500, ("v2", "test"): 750,
}


def test_rows_follow_the_official_flags(tmp_path):
    meta = small_avss_rows()
    root = make_avss_tree(tmp_path / "avs_released", meta)
    manifest = prepare("avss", tmp_path, home=tmp_path / "home")
    rows = manifest.rows()
    assert [r["sample_key"] for r in rows] == [m["uid"] for m in meta]
    for r, m in zip(rows, meta):
        n = 10 if m["label"] == "v2" else 5
        base = f"{m['label']}/{m['uid']}"
        assert (r["subset"], r["split"], r["clip"], r["category"]) == (m["label"], m["split"], m["uid"], m["a_obj"])
        assert r["num_frames"] == n  # real count, no padding to T = 10
        assert r["frames"] == [f"{base}/frames/{k}.jpg" for k in range(n)]
        v1s_train = m["label"] == "v1s" and m["split"] == "train"
        assert r["annotated"] == [k == 0 or not v1s_train for k in range(n)]
        # masks: a path wherever a label file exists (the official loader reads every one present)
        assert r["masks"] == [f"{base}/labels_rgb/{k}.png" if (root / base / "labels_rgb" / f"{k}.png").exists()
                              else "" for k in range(n)]
        assert r["audio"] == f"{base}/audio.wav"
    assert manifest.meta["notes"] == []


def test_v1s_train_extra_labels_are_listed_not_annotated(tmp_path):
    meta = [m for m in small_avss_rows() if m["label"] == "v1s" and m["split"] == "train"][:1]
    root = make_avss_tree(tmp_path, meta)
    src = root / "v1s" / meta[0]["uid"] / "labels_rgb"
    (src / "3.png").write_bytes((src / "0.png").read_bytes())
    build = build_avss(root, SPEC)
    (row,) = build.rows
    assert row["annotated"] == [True, False, False, False, False]
    assert [bool(m) for m in row["masks"]] == [True, False, False, True, False]
    assert any("1 label file(s) on un-annotated v1s train frames" in n for n in build.notes)


def test_missing_and_bad_inputs(tmp_path):
    meta = [m for m in small_avss_rows() if m["split"] != "train"]
    v2_val = next(m for m in meta if m["label"] == "v2" and m["split"] == "val")["uid"]
    v1m_test = next(m for m in meta if m["label"] == "v1m" and m["split"] == "test")["uid"]
    meta.append({**meta[0], "uid": "newclip", "label": "v3"})
    meta.append({**meta[0], "uid": "other", "split": "dev"})
    meta.append(dict(meta[0]))  # the same uid twice
    root = make_avss_tree(tmp_path, meta, drop=[f"v2/{v2_val}/labels_rgb/9.png", f"v1m/{v1m_test}"])
    build = build_avss(root, SPEC)
    got = [(p.sample_key, p.path, p.reason.split(" (")[0]) for p in build.problems]
    n = len(meta)
    assert sorted(got) == sorted([
        (v2_val, f"v2/{v2_val}/labels_rgb/9.png", "missing"),
        (v1m_test, f"v1m/{v1m_test}", "clip folder missing"),
        (f"line{n - 1}", "metadata.csv", f"line {n - 1}: unknown label"),
        (f"line{n}", "metadata.csv", f"line {n}: unknown split 'dev' for uid 'other'"),
        (f"line{n + 1}", "metadata.csv",
         f"line {n + 1}: sample key {meta[0]['uid']!r} already used on line 2"),
    ])


def test_label2idx_must_have_71_entries(tmp_path):
    root = make_avss_tree(tmp_path, small_avss_rows()[:1])
    (root / "label2idx.json").write_text(json.dumps({"background": 0, "dog": 1}))
    with pytest.raises(DataError, match="has 2 entries; avss has 71 .70 classes"):
        build_avss(root, SPEC)
    (root / "label2idx.json").write_text("{not json")
    with pytest.raises(DataError, match="label2idx.json is not readable JSON"):
        build_avss(root, SPEC)


@pytest.mark.slow
def test_real_metadata_counts(tmp_path):
    shared_file("data/avss/metadata.csv")
    make_avss_tree(tmp_path / "data" / "avs_released", REAL_AVSS_METADATA)
    manifest = prepare("avss", tmp_path / "data", home=tmp_path / "home")
    with open(REAL_AVSS_METADATA, newline="", encoding="utf-8") as f:
        meta = list(csv.DictReader(f))
    expected = Counter((m["label"], m["split"]) for m in meta)
    got = manifest.df.groupby(["subset", "split"]).size().to_dict()
    assert got == dict(expected) == PAPER_COUNTS
    df = manifest.df
    assert list(df["sample_key"]) == [m["uid"] for m in meta] and list(df["row"]) == list(range(len(meta)))
    frames = df["num_frames"].groupby(df["subset"]).unique().map(list).to_dict()
    assert frames == {"v1s": [5], "v1m": [5], "v2": [10]}
    annotated = df.apply(lambda r: sum(r["annotated"]), axis=1)
    one = (df["subset"] == "v1s") & (df["split"] == "train")
    assert (annotated[one] == 1).all() and (annotated[~one] == df["num_frames"][~one]).all()
    assert manifest.meta["exclusions"] == [] and manifest.meta["notes"] == []
