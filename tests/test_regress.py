"""The regression gate: identical passes, worse fails, better asks for --update, other data refused."""

from __future__ import annotations

import json

from avsbench_kit.cli.main import main
from avsbench_kit.runs.regress import compare, golden_from_record, load_golden, save_golden
from avsbench_kit.runs.store import RunStore
from test_runs_fakes import make_record

METRICS = {"test": {"avsbench-v1": {"mIoU": 0.60, "F": 0.70}}, "test_n": {"refavs-v1": {"S": 0.20}}}


def _setup(tmp_path):
    store = RunStore(home=tmp_path)
    rec = make_record(store, metrics=METRICS)
    golden = tmp_path / "golden.json"
    assert main(["regress", "--golden", str(golden), rec.run_id, "--update", "--home", str(tmp_path)]) == 0
    return store, rec, golden


def _perturb(golden, key, delta):
    data = json.loads(golden.read_text())
    data["metrics"][key]["value"] += delta
    golden.write_text(json.dumps(data))


def test_golden_records_how_it_was_made(tmp_path):
    _, rec, golden = _setup(tmp_path)
    data = load_golden(golden)
    made = data["produced_by"]
    assert made["run_id"] == rec.run_id and made["config_hash"] == rec.config_hash
    assert made["dataset_fingerprint"] == rec.dataset_fingerprint and made["git_sha"] == rec.git_sha
    assert made["toolkit_version"] == rec.toolkit_version and data["updated_utc"]
    assert {k: v["value"] for k, v in data["metrics"].items()} == rec.flat_metrics()
    assert data["metrics"]["test_n/refavs-v1/S"]["direction"] == "lower"
    assert data["metrics"]["test/avsbench-v1/mIoU"]["direction"] == "higher"


def test_identical_run_passes(tmp_path, capsys):
    _, rec, golden = _setup(tmp_path)
    assert main(["regress", "--golden", str(golden), rec.run_id, "--home", str(tmp_path)]) == 0
    assert "PASS" in capsys.readouterr().out
    assert main(["regress", "--golden", str(golden), "--latest", "--home", str(tmp_path)]) == 0


def test_perturbed_golden_makes_regress_fail(tmp_path, capsys):
    _, rec, golden = _setup(tmp_path)
    tol = load_golden(golden)["metrics"]["test/avsbench-v1/mIoU"]["tolerance"]
    _perturb(golden, "test/avsbench-v1/mIoU", +2 * tol)  # golden better than the run = run regressed
    assert main(["regress", "--golden", str(golden), rec.run_id, "--home", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "regressed" in captured.out and "test/avsbench-v1/mIoU" in captured.err


def test_within_tolerance_passes(tmp_path):
    _, rec, golden = _setup(tmp_path)
    tol = load_golden(golden)["metrics"]["test/avsbench-v1/mIoU"]["tolerance"]
    _perturb(golden, "test/avsbench-v1/mIoU", +0.5 * tol)
    assert main(["regress", "--golden", str(golden), rec.run_id, "--home", str(tmp_path)]) == 0


def test_lower_is_better_direction(tmp_path):
    _, rec, golden = _setup(tmp_path)
    _perturb(golden, "test_n/refavs-v1/S", -0.1)  # golden S lower (better) than the run's
    assert main(["regress", "--golden", str(golden), rec.run_id, "--home", str(tmp_path)]) == 1
    _perturb(golden, "test_n/refavs-v1/S", +0.2)  # now the run's S is lower: improved
    res = compare(load_golden(golden), rec)
    assert [d.status for d in res.diffs if d.key.endswith("/S")] == ["improved"] and res.passed


def test_better_beyond_tolerance_asks_for_update(tmp_path, capsys):
    _, rec, golden = _setup(tmp_path)
    _perturb(golden, "test/avsbench-v1/F", -0.2)
    assert main(["regress", "--golden", str(golden), rec.run_id, "--home", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "improved" in out and "--update" in out
    assert main(["regress", "--golden", str(golden), rec.run_id, "--update", "--home", str(tmp_path)]) == 0
    assert load_golden(golden)["metrics"]["test/avsbench-v1/F"]["value"] == rec.flat_metrics()["test/avsbench-v1/F"]


def test_missing_metric_fails_and_tolerances_survive_update(tmp_path):
    store, rec, golden = _setup(tmp_path)
    data = json.loads(golden.read_text())
    data["metrics"]["test/avsbench-v1/mIoU"]["tolerance"] = 0.123
    data["metrics"]["test/avsbench-v1/J"] = {"value": 0.5, "tolerance": 0.01, "direction": "higher"}
    golden.write_text(json.dumps(data))
    assert main(["regress", "--golden", str(golden), rec.run_id, "--home", str(tmp_path)]) == 1
    save_golden(golden, golden_from_record(rec, load_golden(golden)))
    assert load_golden(golden)["metrics"]["test/avsbench-v1/mIoU"]["tolerance"] == 0.123


def test_other_dataset_fingerprint_is_refused(tmp_path, capsys):
    store, rec, golden = _setup(tmp_path)
    other = make_record(store, metrics=METRICS, minutes=5, fingerprint="0" * 64)
    assert main(["regress", "--golden", str(golden), other.run_id, "--home", str(tmp_path)]) == 1
    assert "dataset_fingerprint" in capsys.readouterr().err
    assert main(["regress", "--golden", str(golden), other.run_id, "--ignore-provenance",
                 "--home", str(tmp_path)]) == 0


def test_bad_golden_and_bad_arguments(tmp_path, capsys):
    _, rec, golden = _setup(tmp_path)
    golden.write_text("{}")
    assert main(["regress", "--golden", str(golden), rec.run_id, "--home", str(tmp_path)]) == 3
    assert "not a golden file" in capsys.readouterr().err
    assert main(["regress", "--golden", str(tmp_path / "none.json"), rec.run_id, "--home", str(tmp_path)]) == 3
    assert main(["regress", "--golden", str(golden), "--home", str(tmp_path)]) == 2  # neither id nor --latest


def test_strict_fails_in_either_direction(tmp_path, capsys):
    _, rec, golden = _setup(tmp_path)
    tol = load_golden(golden)["metrics"]["test/avsbench-v1/mIoU"]["tolerance"]
    args = ["regress", "--golden", str(golden), rec.run_id, "--home", str(tmp_path)]
    assert main(args + ["--strict"]) == 0  # identical
    for delta in (+2 * tol, -2 * tol):  # golden above the run (run worse), then below (run inflated)
        _perturb(golden, "test/avsbench-v1/mIoU", delta)
        assert main(args + ["--strict"]) == 1
        err = capsys.readouterr().err
        assert "differ from golden" in err and "test/avsbench-v1/mIoU" in err
        _perturb(golden, "test/avsbench-v1/mIoU", -delta)
    _perturb(golden, "test/avsbench-v1/mIoU", -2 * tol)
    assert main(args) == 0  # without --strict an improvement passes (users' default)
    _perturb(golden, "test/avsbench-v1/mIoU", +1.5 * tol)  # within tolerance: strict passes
    assert main(args + ["--strict"]) == 0
    # lower-is-better metrics too: a lower S than the golden fails under --strict
    _perturb(golden, "test_n/refavs-v1/S", +2 * tol)
    assert main(args) == 0 and main(args + ["--strict"]) == 1
