"""Run records and the run store: ids, atomic append-only writes, prefix lookup, `avskit runs`."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from avsbench_kit.cli.main import main
from avsbench_kit.errors import AvsKitError, DataError
from avsbench_kit.runs.record import SCHEMA_VERSION, RunRecord, new_run_id, seedless_hash
from avsbench_kit.runs.store import RunNotFoundError, RunStore
from test_runs_fakes import T0, make_record

M = {"test": {"avsbench-v1": {"mIoU": 0.5, "F": 0.6}}, "val": {"avsbench-v1": {"mIoU": 0.4}}}


def test_run_ids_sort_by_time_and_name_config_and_seed():
    a = new_run_id("ab" * 32, 3, T0)
    b = new_run_id("00" * 32, 0, T0 + dt.timedelta(seconds=1))
    assert a < b and a.endswith("-abababab-s3") and a.startswith("20250102T030405Z")


def test_seedless_hash_ignores_only_the_seed():
    assert seedless_hash({"seed": 1, "lr": 1}) == seedless_hash({"seed": 2, "lr": 1})
    assert seedless_hash({"seed": 1, "lr": 1}) != seedless_hash({"seed": 1, "lr": 2})


def test_record_roundtrip_and_flat_metrics(tmp_path):
    store = RunStore(root=tmp_path)
    rec = make_record(store, metrics=M)
    back = store.load(rec.run_id)
    assert back.to_dict() == rec.to_dict()
    assert back.flat_metrics() == {"test/avsbench-v1/mIoU": 0.5, "test/avsbench-v1/F": 0.6,
                                   "val/avsbench-v1/mIoU": 0.4}
    on_disk = json.loads((tmp_path / rec.run_id / "record.json").read_text())
    assert on_disk["schema_version"] == SCHEMA_VERSION == 2 and on_disk["status"] == "complete"


def test_newer_schema_is_refused(tmp_path):
    store = RunStore(root=tmp_path)
    rec = make_record(store, metrics=M)
    path = tmp_path / rec.run_id / "record.json"
    data = json.loads(path.read_text())
    data["schema_version"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(DataError) as err:
        store.load(rec.run_id)
    assert str(path) in err.value.message


def test_create_never_reuses_a_directory(tmp_path):
    store = RunStore(root=tmp_path)
    a = make_record(store, metrics=M)
    b = make_record(store, metrics=M)  # same config, seed and second
    assert a.run_id != b.run_id and b.run_id == a.run_id + "-2"
    assert len(store.records()) == 2


def test_complete_record_is_never_rewritten(tmp_path):
    store = RunStore(root=tmp_path)
    rec = make_record(store, metrics=M)
    before = (tmp_path / rec.run_id / "record.json").read_bytes()
    rec.metrics["test"]["avsbench-v1"]["mIoU"] = 0.99
    with pytest.raises(AvsKitError):
        store.save(rec)
    assert (tmp_path / rec.run_id / "record.json").read_bytes() == before


def test_resolve_prefix_unique_ambiguous_unknown(tmp_path):
    store = RunStore(root=tmp_path)
    a = make_record(store, metrics=M, seed=0)
    b = make_record(store, metrics=M, seed=1, minutes=10)
    assert store.resolve(a.run_id) == a.run_id
    assert store.resolve(b.run_id[:15]) == b.run_id  # 20250102T0314.. is unique
    with pytest.raises(RunNotFoundError) as err:
        store.resolve("2025")
    assert "ambiguous" in err.value.message and a.run_id in err.value.message
    with pytest.raises(RunNotFoundError) as err:
        store.resolve("1999")
    assert "runs ls" in err.value.hint


def test_latest_and_failed_runs(tmp_path):
    store = RunStore(root=tmp_path)
    make_record(store, metrics=M, seed=0)
    newer = make_record(store, metrics=M, seed=1, minutes=5)
    make_record(store, metrics={}, seed=2, minutes=9, status="failed")
    assert store.latest().run_id == newer.run_id
    assert store.latest(status="failed").seed == 2


def test_corrupt_record_is_listed_not_hidden(tmp_path, capsys):
    store = RunStore(home=tmp_path)
    good = make_record(store, metrics=M)
    bad = store.root / "20250101T000000Z-deadbeef-s0"
    bad.mkdir()
    (bad / "record.json").write_text("{not json")
    records, problems = store.scan()
    assert [r.run_id for r in records] == [good.run_id]
    assert problems and problems[0].run_id == bad.name
    assert main(["runs", "ls", "--home", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "unreadable" in out and bad.name in out and good.run_id in out
    assert main(["runs", "show", bad.name, "--home", str(tmp_path)]) == 3  # DataError naming the file
    assert "record.json" in capsys.readouterr().err


def test_cli_runs_ls_and_show(tmp_path, capsys):
    store = RunStore(home=tmp_path)
    a = make_record(store, metrics=M, seed=0)
    make_record(store, metrics=M, seed=1, minutes=3)
    assert main(["runs", "ls", "--home", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert a.run_id in out and "complete" in out and "0.5000" in out
    assert main(["runs", "show", a.run_id[:17], "--home", str(tmp_path)]) == 0  # unique prefix (minute 04)
    out = capsys.readouterr().out
    assert a.run_id in out and "avsbench-v1" in out and "0.6000" in out
    assert main(["runs", "show", a.run_id, "--json", "--home", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["run_id"] == a.run_id
    assert main(["runs", "show", "2025", "--home", str(tmp_path)]) == 2
    assert "ambiguous" in capsys.readouterr().err
    assert main(["runs", "show", "nope", "--home", str(tmp_path)]) == 2


def test_record_rejects_unknown_status():
    with pytest.raises(ValueError):
        RunRecord(run_id="x", baseline="b", dataset="d", seed=0, config={}, config_hash="h", status="done")
