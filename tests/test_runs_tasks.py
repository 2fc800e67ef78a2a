"""Contract v2 through `avskit run`: Ref-AVS (Mix, null), loss components, parameter groups,
warm starts, devices and precision — with the tiny plugin baseline on a tiny SynthAVS."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from avsbench_kit.cli.main import main
from avsbench_kit.errors import ConfigError
from avsbench_kit.runs.run import RunRequest, execute
from avsbench_kit.runs.store import RunStore
from synth_home import synth_home
from tiny_baseline import register_tiny

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    home = synth_home(tmp_path_factory.mktemp("tasks-home"), ("synth-s4", "synth-refavs"))
    register_tiny()
    return home


def run(home: Path, *args: str):
    return execute(RunRequest.parse(["baseline=tiny-seg", "config=default", *args]), home, progress=False,
                   say=lambda m: None)


def test_refavs_run_reports_seen_unseen_mix_and_null(home):
    rec = run(home, "dataset=synth-refavs", "train.epochs=2")
    assert rec.status == "complete" and rec.task == "refavs"
    for split in ("test_s", "test_u", "test_mix"):
        for protocol in ("refavs-v1", "refavs-clip-v1"):
            values = rec.metrics[split][protocol]
            assert set(values) >= {"J", "F", "J&F"} and all(math.isfinite(v) for v in values.values())
    assert set(rec.metrics["test_n"]["refavs-v1"]) == {"S"}
    assert rec.selection["metric"] == "J&F" and rec.selection["protocol"] == "refavs-v1"
    # Mix is the union of test_s and test_u: the clip-level mean is their sample-weighted mean
    store = RunStore(home)
    samples = store.read_per_sample(rec.run_id)
    n_s, n_u = (samples["split"] == "test_s").sum(), (samples["split"] == "test_u").sum()
    js, ju = rec.metrics["test_s"]["refavs-clip-v1"]["J"], rec.metrics["test_u"]["refavs-clip-v1"]["J"]
    assert rec.metrics["test_mix"]["refavs-clip-v1"]["J"] == pytest.approx((n_s * js + n_u * ju) / (n_s + n_u))
    assert rec.features["minilm"] and rec.features["clip"]  # the expression's text features were read


def test_record_keeps_loss_components_param_groups_and_describe(home):
    rec = run(home, "dataset=synth-s4", "head_lr_mult=0.5")
    comps = rec.training["loss_components"]
    assert len(comps) == 3 and all(set(c) == {"total", "bce", "mean_logit"} for c in comps)
    assert rec.training["epoch_losses"] == [c["total"] for c in comps]
    groups = {g["name"]: g for g in rec.training["param_groups"]}
    assert groups["heads"]["lr_mult"] == 0.5 and groups["heads.no_decay"]["weight_decay"] == 0.0
    assert groups["bias.no_decay"]["parameters"] == 32 * 32
    assert rec.model["modules"]["read"]["trainable"] == 32 * 32 * 33 and rec.model["modalities"] == ["image"]
    assert rec.hardware["device"] == "cpu" and rec.hardware["precision"] == "fp32"


def test_lr_multiplier_is_scaled_by_the_schedule_not_overwritten(home):
    from avsbench_kit.runs.trainer import TrainConfig, Trainer, lr_at
    from tiny_baseline import TINY_CFG, TinySeg

    model = TinySeg({**TINY_CFG, "head_lr_mult": 0.25})
    cfg = TrainConfig(epochs=2, batch_size=1, lr=0.1, schedule="cosine")
    trainer = Trainer(model, cfg, batches=lambda e: [], num_train_samples=4, ckpt_dir=home / "lr")
    opt = trainer._optimizer()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    trainer._step(opt, None, 3)
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs["bias.no_decay"] == lr_at(3, trainer.total_steps, cfg)
    assert lrs["heads"] == pytest.approx(0.25 * lr_at(3, trainer.total_steps, cfg))


def test_init_from_warm_starts_and_is_recorded(home, capsys):
    source = run(home, "dataset=synth-s4", "train.epochs=2", "seed=5")
    warm = run(home, "dataset=synth-s4", "train.epochs=1", "seed=5", f"init_from={source.run_id}")
    assert warm.init_from["run_id"] == source.run_id
    assert warm.init_from["config_hash"] == source.config_hash and len(warm.init_from["checkpoint_sha256"]) == 64
    assert warm.config["run"]["init_from"] == source.run_id  # part of the config hash
    assert main(["runs", "show", warm.run_id, "--home", str(home)]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert f"init from {source.run_id} config" in shown
    cold = run(home, "dataset=synth-s4", "train.epochs=1", "seed=5")
    assert warm.metrics != cold.metrics
    with pytest.raises(ConfigError, match="trained 'tiny-seg', not 'av2t'"):
        execute(RunRequest.parse(["baseline=av2t", "dataset=synth-s4", f"init_from={source.run_id}"]), home,
                progress=False, say=lambda m: None)


def test_bf16_autocast_trains_on_cpu(home):
    rec = run(home, "dataset=synth-s4", "train.precision=bf16", "train.epochs=1")
    assert rec.status == "complete" and rec.hardware["precision"] == "bf16"
    assert math.isfinite(rec.training["epoch_losses"][0])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_a_gpu_is_one_line_and_writes_nothing(home, capsys):
    before = sorted(p.name for p in (home / "runs").iterdir()) if (home / "runs").is_dir() else []
    code = main(["run", "baseline=tiny-seg", "config=default", "dataset=synth-s4", "device=cuda",
                 "--home", str(home)])
    err = capsys.readouterr().err
    assert code == 2 and "device=cuda" in err and "no CUDA" in err
    after = sorted(p.name for p in (home / "runs").iterdir()) if (home / "runs").is_dir() else []
    assert after == before
    with pytest.raises(ConfigError, match="fp16"):
        run(home, "dataset=synth-s4", "train.precision=fp16")


def test_avss_run_scores_semantic_and_binary_views(home):
    from avsbench_kit.data.prepare import prepare
    from avsbench_kit.home import synth_dir

    prepare("synth-avss", synth_dir("small", 0, home), home=home)
    rec = run(home, "dataset=synth-avss", "train.epochs=2", "train.batch_size=2")
    assert rec.status == "complete" and rec.config["num_classes"] == 11
    test = rec.metrics["test"]
    assert set(test) == {"avss-v1", "avsbench-v1", "avsbench-clip-v1"}  # semantic + class-agnostic view
    assert set(test["avss-v1"]) >= {"mIoU", "F"} and set(test["avsbench-v1"]) == {"mIoU", "F"}
    assert rec.selection["protocol"] == "avss-v1"
    oracle = execute(RunRequest.parse(["baseline=gt", "dataset=synth-avss"]), home, progress=False, say=lambda m: None)
    per_sample = RunStore(home).read_per_sample(oracle.run_id)
    semantic = per_sample[per_sample["mIoU_present"].notna()]
    assert len(semantic) == 6 and (semantic["mIoU_present"] == 1.0).all()  # every present class exact
    assert oracle.metrics["test"]["avsbench-clip-v1"]["mIoU"] == pytest.approx(1.0)
    full = execute(RunRequest.parse(["baseline=full", "dataset=synth-avss"]), home, progress=False, say=lambda m: None)
    assert set(full.metrics["test"]) == {"avsbench-v1", "avsbench-clip-v1"}  # binary output: that view only


def test_leaderboard_shows_refavs_and_avss_runs(home, capsys):
    for ds in ("synth-refavs", "synth-avss"):
        if not any(r.dataset == ds for r in RunStore(home).records()):
            pytest.skip("runs by the tests above are needed")  # module order: they ran first
        assert main(["leaderboard", "--dataset", ds, "--format", "md", "--home", str(home)]) == 0
    out = capsys.readouterr().out
    assert "test_mix" in out and "refavs-v1" in out and "avss-v1" in out and "avsbench-clip-v1" in out
