"""Leaderboard: published.csv faithful to the spec table; tables never mix protocols; seeds -> mean ± std."""

from __future__ import annotations

import csv
import io
import json
import statistics

import pytest

from avsbench_kit.metrics.protocols import PROTOCOLS

from avsbench_kit.cli.main import main
from avsbench_kit.leaderboard.build import REPORTED, build_tables
from avsbench_kit.leaderboard.published import (
    COLUMNS, DATASET_MAP, METRIC_MAP, SPLIT_MAP, convert_spec, default_published_path, load_published,
)
from avsbench_kit.leaderboard.render import render
from avsbench_kit.runs.store import RunStore
from test_runs_fakes import make_record
from shared_data import shared_file



def _spec_rows() -> list[dict]:
    with shared_file("spec/published_results.csv").open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


#: rows after the converted spec: numbers a seed paper states in its text, not in the spec table
EXTRA_ROWS = 1


def test_published_csv_is_the_converted_spec():
    text = default_published_path().read_text("utf-8")
    converted = convert_spec(shared_file("spec/published_results.csv"))
    assert text.startswith(converted)
    extra = list(csv.DictReader(io.StringIO(text.splitlines(keepends=True)[0] + text[len(converted):])))
    assert len(extra) == EXTRA_ROWS
    assert all(r["source"] and "reported" in r["note"] for r in extra)  # sourced, labelled as reported


def test_every_spec_row_is_kept_with_its_source_text():
    spec = _spec_rows()
    with default_published_path().open(newline="", encoding="utf-8") as f:
        ours = list(csv.DictReader(f))
    assert len(ours) == len(spec) + EXTRA_ROWS
    assert tuple(ours[0]) == COLUMNS
    for s, o in zip(spec, ours):
        assert (o["method"], o["backbone"], o["source"], o["note"]) == (s["method"], s["backbone"], s["source"], s["note"])
        assert (o["source_dataset"], o["source_split"], o["source_metric"], o["source_value"]) == (
            s["dataset"], s["split"], s["metric"], s["value"])
        assert (o["dataset"], o["split"], o["metric"]) == (DATASET_MAP[s["dataset"]], SPLIT_MAP[s["split"]],
                                                          METRIC_MAP[s["metric"]])
        # units: the toolkit stores fractions; papers print J/mIoU (and Ref-AVS F) in percent
        raw, value = float(s["value"]), float(o["value"])
        assert value == pytest.approx(raw) or value == pytest.approx(raw / 100)
        if o["metric"] in ("mIoU", "J", "J&F"):
            assert value == pytest.approx(raw / 100)
        if o["metric"] in ("mIoU", "J", "F", "J&F", "S"):
            assert 0 <= value <= 1, (o["method"], o["metric"], value)
        # a paper's own evaluation, or one the toolkit registers as a protocol (avsbench-auralsam2-v1)
        assert o["protocol"].startswith(("paper", "user reproduction")) or o["protocol"] in PROTOCOLS


def test_av2t_f_carries_its_quirk():
    rows = [r for r in load_published() if r.method.startswith("AV2T-SAM")]
    assert rows and all("raw logits" in r.protocol for r in rows)


def _store_with_runs(tmp_path) -> tuple[RunStore, list]:
    store = RunStore(home=tmp_path)
    recs = []
    for seed, (m, f) in enumerate([(0.50, 0.61), (0.54, 0.65), (0.58, 0.60)]):
        recs.append(make_record(store, seed=seed, minutes=seed, metrics={
            "val": {"avsbench-v1": {"mIoU": 0.9}},
            "test": {"avsbench-v1": {"mIoU": m, "F": f}, "avsbench-clip-v1": {"mIoU": m + 0.01}},
        }))
    # another experiment: same baseline, another config; one seed only, no F
    recs.append(make_record(store, seed=0, minutes=9, extra_cfg={"prompt_feature": "clip"},
                            metrics={"test": {"avsbench-v1": {"mIoU": 0.3}}}))
    make_record(store, seed=5, minutes=11, status="failed", metrics={})
    return store, recs


def test_seeds_collapse_to_mean_and_std(tmp_path):
    store, recs = _store_with_runs(tmp_path)
    tables = build_tables(store.records(), [])
    official = next(t for t in tables if t.dataset == "synth-s4" and t.protocol == "avsbench-v1")
    assert official.version == "1"
    assert ("val", "mIoU") not in official.columns  # selection split never on a leaderboard
    grouped = next(r for r in official.rows if r.seeds == 3)
    cell = grouped.cells[("test", "mIoU")]
    values = [r.metrics["test"]["avsbench-v1"]["mIoU"] for r in recs[:3]]
    assert cell.mean == pytest.approx(statistics.mean(values))
    assert cell.std == pytest.approx(statistics.stdev(values))
    assert sorted(grouped.run_ids) == sorted(r.run_id for r in recs[:3])
    single = next(r for r in official.rows if r.seeds == 1)
    assert ("test", "F") not in single.cells and single.cells[("test", "mIoU")].std is None  # blank F
    md = render([official], "md")
    assert "0.3000" not in md and "30.00" in md  # shown in percent
    line = next(line for line in md.splitlines() if "30.00" in line)
    assert "|  |" in line  # the missing F is a blank cell


def test_protocols_and_reported_numbers_never_share_a_table(tmp_path):
    store, _ = _store_with_runs(tmp_path)
    published = load_published()
    tables = build_tables(store.records(), published, datasets_known=["synth-s4", "avsbench-s4", "avsbench-ms3", "refavs"])
    keys = [(t.dataset, t.protocol, t.version) for t in tables]
    assert len(keys) == len(set(keys))
    for t in tables:
        kinds = {r.kind for r in t.rows}
        protocols = {r.protocol for r in t.rows}
        if t.protocol == REPORTED:
            assert kinds == {"reported"}
        else:
            assert kinds == {"reproduced"} and protocols == {f"{t.protocol}@{t.version}"}
    assert any(t.dataset == "avsbench-s4" and t.protocol == REPORTED for t in tables)
    assert not any(t.dataset == "refcoco" for t in tables)  # context numbers only on request
    assert build_tables([], published, dataset="refcoco", datasets_known=["avsbench-s4"])


def test_reported_cells_match_published_values():
    published = load_published()
    tables = build_tables([], published, dataset="avsbench-s4")
    (table,) = tables
    tpavi = next(r for r in table.rows if r.method.startswith("TPAVI"))
    expected = {(p.split, p.metric): p.value for p in published
                if p.method.startswith("TPAVI") and p.dataset == "avsbench-s4"}
    assert {k: c.mean for k, c in tpavi.cells.items()} == expected


def test_cli_leaderboard_formats(tmp_path, capsys):
    _store_with_runs(tmp_path)
    out = tmp_path / "lb.json"
    assert main(["leaderboard", "--home", str(tmp_path), "--format", "json", "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    data = json.loads(out.read_text())
    synth = [t for t in data if t["dataset"] == "synth-s4"]
    assert {t["protocol"] for t in synth} == {"avsbench-v1", "avsbench-clip-v1"}
    assert main(["leaderboard", "--home", str(tmp_path), "--dataset", "synth-s4", "--format", "csv"]) == 0
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert rows and {r["kind"] for r in rows} == {"reproduced"}
    assert main(["leaderboard", "--home", str(tmp_path), "--dataset", "synth-s4"]) == 0
    text = capsys.readouterr().out
    assert "±" in text and "reproduced" in text
    assert main(["leaderboard", "--home", str(tmp_path), "--dataset", "synth-s5"]) == 2
    assert "synth-s4" in capsys.readouterr().err
    assert main(["leaderboard", "--home", str(tmp_path), "--dataset", "synth-ms3"]) == 2  # no runs yet
    err = capsys.readouterr().err
    assert "no complete runs" in err and "avskit run baseline=NAME dataset=synth-ms3" in err
    assert main(["leaderboard", "--home", str(tmp_path), "--format", "html"]) == 2
