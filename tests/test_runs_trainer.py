"""The shared trainer on a tiny in-memory baseline: reproducibility, resume, NaN exit, schedules,
gradient accumulation, best-on-val selection, and 2-process DDP (torchrun + gloo).

Run as a script under torchrun it is the DDP worker used by ``test_ddp_two_processes_match_one``.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from avsbench_kit.runs.trainer import (TrainConfig, Trainer, TrainingDiverged, init_distributed, lr_at,
                                       seed_everything)

N, T, D, H = 24, 2, 8, 4


class TinyBaseline(nn.Module):
    """Contract-shaped fake: features["x"] [B,T,D] -> logits [B,T,H,W]; a frozen layer, dropout and
    a trainable parameter the forward never uses (it gets no gradient: AdamW must leave it alone,
    also under DDP)."""

    def __init__(self, dropout: float = 0.2) -> None:
        super().__init__()
        self.frozen = nn.Linear(D, D)
        self.frozen.requires_grad_(False)
        self.unused = nn.Parameter(torch.ones(3))
        self.head = nn.Linear(D, H * H)
        self.drop = nn.Dropout(dropout)

    def forward(self, batch):
        x = batch["features"]["x"]
        return self.head(self.drop(torch.tanh(self.frozen(x)))).view(x.shape[0], T, H, H)

    def loss(self, logits, batch):
        ann = batch["annotated"][..., None, None].float()
        bce = nn.functional.binary_cross_entropy_with_logits(logits, batch["masks"], reduction="none")
        return (bce * ann).sum() / (ann.sum() * H * H)

    def trainable_parameters(self):
        return [p for p in self.parameters() if p.requires_grad]


def dataset(seed: int = 123):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, T, D, generator=g)
    w = torch.randn(D, H * H, generator=g)
    masks = ((x @ w).view(N, T, H, H) > 0).float()
    return x, masks


def batch_factory(batch_size: int, seed: int, nan_at: tuple[int, int] | None = None, stop_at=None):
    x, masks = dataset()

    def batches(epoch: int):
        order = torch.randperm(N, generator=torch.Generator().manual_seed(seed * 1000 + epoch))
        for i in range(0, N, batch_size):
            if stop_at is not None and (epoch, i // batch_size) == stop_at:
                raise KeyboardInterrupt("killed")
            idx = order[i:i + batch_size]
            feats = x[idx].clone()
            if nan_at == (epoch, i // batch_size):
                feats[:] = float("nan")
            yield {"key": [f"s{int(j)}" for j in idx], "features": {"x": feats}, "masks": masks[idx],
                   "annotated": torch.ones(len(idx), T, dtype=torch.bool)}

    return batches


def make(tmp: Path, seed: int = 0, dropout: float = 0.2, validate=None, stop_at=None, nan_at=None,
         **train) -> Trainer:
    seed_everything(seed)
    model = TinyBaseline(dropout)
    cfg = TrainConfig(**{"epochs": 4, "batch_size": 4, "lr": 0.05, "min_lr": 1e-4, **train})
    return Trainer(model, cfg, batches=batch_factory(cfg.batch_size, seed, nan_at, stop_at), num_train_samples=N,
                   ckpt_dir=tmp, seed=seed, validate=validate, identity="cfg-a", progress=False)


def params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_fixed_seed_is_bit_reproducible(tmp_path):
    a, b, c = make(tmp_path / "a"), make(tmp_path / "b"), make(tmp_path / "c", seed=1)
    ra, rb = a.fit(), b.fit()
    c.fit()
    assert same(params(a.model), params(b.model))
    assert not same(params(a.model), params(c.model))
    assert ra.epoch_losses == rb.epoch_losses and ra.steps == 4 * math.ceil(N / 4)
    assert ra.epoch_losses[-1] < ra.epoch_losses[0]  # it learns
    assert torch.equal(a.model.frozen.weight, make(tmp_path / "d").model.frozen.weight)  # frozen untouched


def _killed_then_resumed(tmp_path, stop_at, **train):
    ref = make(tmp_path / "ref", **train)
    ref_result = ref.fit()
    killed = make(tmp_path / "run", stop_at=stop_at, **train)
    with pytest.raises(KeyboardInterrupt):
        killed.fit()
    assert (tmp_path / "run" / "last.pt").is_file()
    again = make(tmp_path / "run", **train)  # a fresh process: new model, same config and seed
    result = again.fit()
    assert result.resumed_from is not None
    assert same(params(ref.model), params(again.model))
    assert result.epoch_losses == ref_result.epoch_losses and result.steps == ref_result.steps
    return result


def test_resume_after_kill_between_epochs_matches_uninterrupted(tmp_path):
    result = _killed_then_resumed(tmp_path, stop_at=(2, 1))
    assert result.resumed_from["epoch"] == 2 and result.resumed_from["batch"] == 0


def test_resume_mid_epoch_matches_uninterrupted(tmp_path):
    result = _killed_then_resumed(tmp_path, stop_at=(1, 4), checkpoint_every=1)
    assert result.resumed_from == {"epoch": 1, "batch": 4, "step": 6 + 4}


def test_checkpoint_of_another_config_is_not_resumed(tmp_path):
    make(tmp_path, epochs=1).fit()
    other = make(tmp_path)
    other.identity = "cfg-b"
    with pytest.raises(Exception) as err:
        other.fit()
    assert "another config" in str(err.value)


def test_nan_loss_stops_with_a_clear_message(tmp_path):
    trainer = make(tmp_path, nan_at=(1, 2))
    with pytest.raises(TrainingDiverged) as err:
        trainer.fit()
    assert "epoch 2" in err.value.message and "train.lr" in err.value.hint
    assert err.value.exit_code != 0
    from avsbench_kit.runs.trainer import load_checkpoint

    assert load_checkpoint(tmp_path / "last.pt")["state"]["epoch"] == 1  # the last good epoch


def test_deferred_loss_reads_train_identically_and_still_stop_on_nan(tmp_path):
    """The GPU path reads losses on the host every sync_every steps; on the CPU it must give the
    same weights as reading every step, and a NaN is still caught (at the next read)."""
    every, deferred = make(tmp_path / "a"), make(tmp_path / "b", sync_every=5)
    ra, rb = every.fit(), deferred.fit()
    assert same(params(every.model), params(deferred.model)) and ra.epoch_losses == rb.epoch_losses
    with pytest.raises(TrainingDiverged, match="epoch 2"):
        make(tmp_path / "c", nan_at=(1, 2), sync_every=5).fit()


def test_grad_accumulation_equals_a_larger_batch(tmp_path):
    big = make(tmp_path / "big", dropout=0.0, batch_size=4, grad_accum=1)
    small = make(tmp_path / "small", dropout=0.0, batch_size=2, grad_accum=2)
    # the same samples in the same order: batch factories shuffle with the same per-epoch seed
    big.fit(), small.fit()
    pa, pb = params(big.model), params(small.model)
    assert all(torch.allclose(pa[k], pb[k], atol=1e-6) for k in pa)
    assert small.steps_per_epoch == big.steps_per_epoch


def test_schedules_match_torch_closed_forms():
    cfg = TrainConfig(lr=0.1, min_lr=0.001, schedule="cosine")
    total = 50
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total, eta_min=0.001)
    for step in range(total):
        assert lr_at(step, total, cfg) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9)
        opt.step(), sched.step()
    poly = TrainConfig(lr=0.1, min_lr=0.0, schedule="poly", poly_power=0.9)
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = torch.optim.lr_scheduler.PolynomialLR(opt, total_iters=total, power=0.9)
    for step in range(total):
        assert lr_at(step, total, poly) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-6)
        opt.step(), sched.step()
    warm = TrainConfig(lr=0.1, warmup_steps=4, schedule="constant")
    assert [lr_at(s, total, warm) for s in range(5)] == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1])


def test_best_checkpoint_is_the_best_validation_epoch(tmp_path):
    scores = iter([0.2, 0.7, 0.4, 0.5])
    snapshots = []

    def validate(model):
        snapshots.append(params(model))
        return next(scores)

    trainer = make(tmp_path, validate=validate)
    result = trainer.fit()
    assert result.best_epoch == 2 and result.best_value == 0.7
    assert [v["value"] for v in result.val_history] == [0.2, 0.7, 0.4, 0.5]
    trainer.load_best()
    assert same(params(trainer.model), snapshots[1])


def test_validation_does_not_change_the_training_stream(tmp_path):
    plain = make(tmp_path / "a")
    plain.fit()

    def validate(model):
        torch.rand(100)  # a validation that draws random numbers
        return 0.0

    checked = make(tmp_path / "b", validate=validate)
    checked.fit()
    assert same(params(plain.model), params(checked.model))


def test_bad_train_config_is_a_config_error():
    from avsbench_kit.errors import ConfigError

    with pytest.raises(ConfigError):
        TrainConfig.from_dict({"epochs": 0})
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_dict({"epoch": 3})
    assert "epochs" in err.value.hint


# -- DDP ---------------------------------------------------------------------------------------
def _ddp_worker(out: Path) -> None:
    d = init_distributed()
    seed_everything(0)
    model = TinyBaseline(dropout=0.0)
    cfg = TrainConfig(epochs=2, batch_size=3, lr=0.05, min_lr=1e-4)
    trainer = Trainer(model, cfg, batches=batch_factory(3, 0), num_train_samples=N, ckpt_dir=out / "ckpt",
                      identity="ddp", progress=False, dist=d)
    result = trainer.fit()
    torch.save(params(model), out / f"rank{d.rank}.pt")
    if d.main:
        (out / "result.json").write_text(json.dumps({"steps": result.steps, "world": d.world}))


@pytest.mark.slow
def test_ddp_two_processes_match_one(tmp_path):
    """Two gloo ranks with batch 3 each = one process whose batches are the ranks' batches joined."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           __file__, str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert same(r0, r1)  # ranks stay in sync
    assert json.loads((tmp_path / "result.json").read_text()) == {"steps": 2 * (N // 3 // 2), "world": 2}

    # one process, each step on the union of the two ranks' batches (i, i+1) -> the same update
    seed_everything(0)
    model = TinyBaseline(dropout=0.0)
    base = batch_factory(3, 0)

    def joined(epoch):
        it = iter(base(epoch))
        for a in it:
            b = next(it)
            yield {k: (a[k] + b[k] if k == "key" else
                       {n: torch.cat([a[k][n], b[k][n]]) for n in a[k]} if k == "features" else
                       torch.cat([a[k], b[k]])) for k in a}

    single = Trainer(model, TrainConfig(epochs=2, batch_size=6, lr=0.05, min_lr=1e-4), batches=joined,
                     num_train_samples=N, ckpt_dir=tmp_path / "single", identity="ddp", progress=False)
    single.fit()
    ps = params(model)
    assert all(torch.allclose(ps[k], r0[k], atol=1e-6) for k in ps)
    assert torch.equal(r0["unused"], torch.ones(3))  # no gradient anywhere -> no weight decay either


if __name__ == "__main__":  # torchrun entry for the DDP test
    _ddp_worker(Path(sys.argv[1]))
