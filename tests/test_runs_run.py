"""`avskit run` orchestration on a tiny SynthAVS with a tiny contract-shaped baseline.

The baseline is registered in memory (a third-party-style plugin with its own config loader), it
consumes a real feature cache (random-init CLIP, built by the run), and the numbers are checked
against the metric package's own evaluation of the saved predictions.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from avsbench_kit.cli.main import main
from avsbench_kit.errors import ConfigError, NotPreparedError, RegistryError
from avsbench_kit.runs.run import RunRequest, execute, resolve_config
from avsbench_kit.runs.store import RunStore
from synth_home import synth_home
from tiny_baseline import TinySeg, register_tiny

@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    home = synth_home(tmp_path_factory.mktemp("home"))
    register_tiny()
    return home


def _req(*args: str) -> RunRequest:
    return RunRequest.parse(["baseline=tiny-seg", "config=default", "dataset=synth-s4", *args])


def test_parse_separates_run_keys_from_overrides():
    req = RunRequest.parse(["baseline=av2t", "dataset=synth-ms3", "train.epochs=3", "seed=2", "resume=false"])
    assert (req.baseline, req.dataset, req.resume, req.overrides) == ("av2t", "synth-ms3", False,
                                                                     ["train.epochs=3", "seed=2"])
    assert RunRequest.parse(["baseline=empty"]).mode == "eval"
    with pytest.raises(ConfigError):
        RunRequest.parse(["mode=fit"])
    with pytest.raises(ConfigError):
        RunRequest.parse(["resume=maybe"])


def test_resolve_config_merges_trainer_defaults_and_keeps_fixed_overrides():
    cfg = resolve_config(RunRequest.parse(["baseline=av2t", "train.clip_grad=1.0", "train.epochs=3"]))
    assert cfg["train"]["clip_grad"] == 1.0 and cfg["train"]["epochs"] == 3
    assert cfg["train"]["warmup_steps"] == 0  # a trainer default the preset does not set
    with pytest.raises(ConfigError):
        resolve_config(RunRequest.parse(["baseline=av2t", "train.epoch=3"]))
    with pytest.raises(ConfigError):  # the probe is defined by prompt_feature=clip
        resolve_config(RunRequest.parse(["baseline=probe-clip-only", "prompt_feature=clap"]))
    with pytest.raises(ConfigError):
        resolve_config(RunRequest.parse(["baseline=av2t", "train.epochs=0"]))


def test_train_select_evaluate_record(home):
    from avsbench_kit.metrics.evaluator import evaluate_predictions

    record = execute(_req("save_predictions=true"), home, progress=False, say=lambda m: None)
    store = RunStore(home)
    assert record.status == "complete" and store.load(record.run_id).status == "complete"
    assert set(record.metrics) == {"test"} and set(record.metrics["test"]) == {"avsbench-v1", "avsbench-clip-v1"}
    assert record.protocols == {"avsbench-v1": "1.0", "avsbench-clip-v1": "1.0"}
    assert record.selection["split"] == "val" and record.selection["best_epoch"] in (1, 2, 3)
    assert record.training["epochs"] == 3 and len(record.training["val_history"]) == 3
    assert record.selection["best_value"] == max(v["value"] for v in record.training["val_history"])
    assert record.features.keys() == {"clip"} and record.dataset_fingerprint
    assert record.hardware["cpu_count"] and record.hardware["device"] == "cpu" and record.git_sha
    per_sample = store.read_per_sample(record.run_id)
    assert len(per_sample) == 4 and set(per_sample["split"]) == {"test"}
    # the run's numbers = the metric package scoring the saved predictions on its own
    report = evaluate_predictions("synth-s4", "test", str(store.run_dir(record.run_id) / "predictions" / "test"),
                                  home=home, progress=False)
    for name, values in record.metrics["test"].items():
        for metric, value in values.items():
            assert report["protocols"][name]["metrics"][metric] == pytest.approx(value, abs=2e-3)
    assert (store.run_dir(record.run_id) / "best.pt").is_file()


def test_same_seed_same_numbers_other_seed_other_run(home):
    a = execute(_req("resume=false", "train.epochs=1"), home, progress=False, say=lambda m: None)
    b = execute(_req("resume=false", "train.epochs=1"), home, progress=False, say=lambda m: None)
    c = execute(_req("resume=false", "train.epochs=1", "seed=1"), home, progress=False, say=lambda m: None)
    assert a.run_id != b.run_id and a.metrics == b.metrics
    assert a.group_hash == c.group_hash and a.config_hash != c.config_hash


def test_killed_run_resumes_to_the_same_metrics(home):
    full = execute(_req("resume=false", "train.epochs=3", "seed=7"), home, progress=False, say=lambda m: None)
    TinySeg.calls, TinySeg.kill_after = 0, 5  # dies during epoch 3 (2 batches per epoch)
    try:
        with pytest.raises(KeyboardInterrupt):
            execute(_req("resume=false", "train.epochs=3", "seed=7"), home, progress=False, say=lambda m: None)
    finally:
        TinySeg.kill_after = None
    killed = RunStore(home).latest(status="failed")
    resumed = execute(_req("train.epochs=3", "seed=7"), home, progress=False, say=lambda m: None)
    assert resumed.run_id == killed.run_id and resumed.training["resumed_from"]["epoch"] == 2
    assert resumed.metrics == full.metrics


def test_reference_predictors_match_avskit_eval(home):
    from avsbench_kit.metrics.evaluator import evaluate_predictions

    for name in ("empty", "full"):
        record = execute(RunRequest.parse([f"baseline={name}", "dataset=synth-s4"]), home, progress=False,
                         say=lambda m: None)
        report = evaluate_predictions("synth-s4", "test", name, home=home, progress=False)
        assert record.mode == "eval" and not record.training
        for protocol, values in record.metrics["test"].items():
            assert values == pytest.approx(report["protocols"][protocol]["metrics"])


def test_missing_caches_name_the_extract_command(home, tmp_path):
    from avsbench_kit.data.prepare import prepare
    from avsbench_kit.home import synth_dir

    other = tmp_path / "home2"
    prepare("synth-s4", synth_dir("small", 0, home), home=other)
    with pytest.raises(NotPreparedError) as err:
        execute(_req("build_caches=false"), other, progress=False, say=lambda m: None)
    assert "avskit features extract" in err.value.hint and "clip" in err.value.hint


def test_bad_requests_are_user_errors(home):
    with pytest.raises(RegistryError):
        execute(_req("dataset=synth-s5"), home, progress=False, say=lambda m: None)
    with pytest.raises(ConfigError, match="handles tasks"):  # av2t is registered for s4/ms3 only
        execute(RunRequest.parse(["baseline=av2t", "dataset=synth-refavs"]), home, progress=False,
                say=lambda m: None)
    assert main(["run", "baseline=tiny-seg", "config=nope", "--home", str(home)]) == 2
    assert main(["run", "baseline=nope", "--home", str(home)]) == 2


_KILL_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from tiny_baseline import register_tiny
from test_runs_run import _req
from avsbench_kit.runs.run import execute
register_tiny()
execute(_req("train.epochs=4", "seed=11", "train.checkpoint_every=1"), {home!r}, progress=False, say=lambda m: None)
"""


@pytest.mark.slow
def test_sigkill_then_rerun_resumes(home):
    """A real SIGKILL mid-training: the record stays 'running', the re-run resumes it."""
    reference = execute(_req("resume=false", "train.epochs=4", "seed=11", "train.checkpoint_every=1"), home,
                        progress=False, say=lambda m: None)
    store = RunStore(home)
    before = set(store.run_ids())
    script = _KILL_SCRIPT.format(tests=str(Path(__file__).parent), home=str(home))
    proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    victim = None
    while time.time() < deadline and proc.poll() is None:
        new = set(store.run_ids()) - before
        if new:
            victim = new.pop()
            last = store.path(victim, "last.pt")
            if last.is_file():
                from avsbench_kit.runs.trainer import load_checkpoint

                try:
                    if load_checkpoint(last)["state"]["step"] >= 3:
                        break
                except Exception:
                    pass
        time.sleep(0.05)
    assert victim is not None and proc.poll() is None, "the child finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert json.loads(store.path(victim, "record.json").read_text())["status"] == "running"
    resumed = execute(_req("train.epochs=4", "seed=11", "train.checkpoint_every=1"), home, progress=False,
                      say=lambda m: None)
    assert resumed.run_id == victim and resumed.training["resumed_from"] is not None
    assert resumed.metrics == reference.metrics
