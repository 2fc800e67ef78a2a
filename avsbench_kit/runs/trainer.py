"""The one training loop every baseline shares.

What it guarantees: a fixed seed gives bit-identical weights on CPU; a killed run resumes from its
last checkpoint and ends exactly where an uninterrupted run ends (the epoch's data order is a
function of (seed, epoch), RNG states travel in the checkpoint, mid-epoch resumes skip the batches
already consumed); a NaN loss stops the run with a message instead of training on garbage; under
``torchrun`` (gloo on CPU) every rank takes every W-th batch and gradients are averaged, which is
the same update as one process with a W-times larger batch.

The trainer knows nothing about datasets or metrics: it gets a batch factory and a validation
callback (the orchestration in :mod:`avsbench_kit.runs.run` wires those to the feature reader and
to the metric protocols).
"""

from __future__ import annotations

import math
import os
import random
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from avsbench_kit.errors import AvsKitError, ConfigError

CHECKPOINT_FORMAT = 1
SCHEDULES = ("cosine", "poly", "constant")


class TrainingDiverged(AvsKitError):
    """The loss became NaN/inf: stop, keep the last good checkpoint, say what to change."""

    exit_code = 5


@dataclass
class TrainConfig:
    """The ``train.*`` block of a resolved config (keys a baseline preset omits get these defaults)."""

    epochs: int = 10
    batch_size: int = 4
    lr: float = 2e-4
    min_lr: float = 1e-7
    schedule: str = "cosine"  # cosine | poly | constant (per optimiser step, after warmup)
    poly_power: float = 0.9
    warmup_steps: int = 0
    weight_decay: float = 0.01
    grad_accum: int = 1
    clip_grad: float = 0.0  # max grad norm; 0 = off
    val_every: int = 1  # epochs; the last epoch is always validated
    checkpoint_every: int = 0  # optimiser steps between mid-epoch checkpoints; 0 = end of epoch only
    max_steps: int = 0  # stop after this many optimiser steps (0 = no limit); for smoke runs
    eval_batch_size: int = 4

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "TrainConfig":
        data = dict(data or {})
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            from avsbench_kit.registry import did_you_mean

            raise ConfigError(f"unknown train key(s) {unknown}", hint=did_you_mean(unknown[0], sorted(names)))
        cfg = cls(**data)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        checks = [
            (self.epochs >= 1, "train.epochs must be >= 1"),
            (self.batch_size >= 1, "train.batch_size must be >= 1"),
            (self.grad_accum >= 1, "train.grad_accum must be >= 1"),
            (self.val_every >= 1, "train.val_every must be >= 1"),
            (self.lr > 0 and self.min_lr >= 0, "train.lr must be > 0 and train.min_lr >= 0"),
            (self.schedule in SCHEDULES, f"train.schedule must be one of {SCHEDULES}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message, hint="fix the value with a key=value override")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def defaults() -> dict[str, Any]:
    return TrainConfig().as_dict()


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Learning rate for optimiser step ``step`` (0-based) of ``total``: linear warmup, then the schedule."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    span = max(1, total - cfg.warmup_steps)
    progress = min(1.0, max(0.0, (step - cfg.warmup_steps) / span))
    if cfg.schedule == "cosine":
        return cfg.min_lr + (cfg.lr - cfg.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return cfg.min_lr + (cfg.lr - cfg.min_lr) * (1.0 - progress) ** cfg.poly_power


def seed_everything(seed: int) -> None:
    """One seed drives python, numpy and torch (CPU runs are then bit-reproducible)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    import numpy as np
    import torch

    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


# -- distributed -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Dist:
    """Where this process sits in a ``torchrun`` job (rank 0 of 1 without one)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def init_distributed() -> Dist:
    """Join the process group ``torchrun`` describes (gloo: works on CPU); single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return Dist(dist.get_rank(), dist.get_world_size())


def _all_true(flag: bool, d: Dist) -> bool:
    """True on every rank only if it is True on every rank (keeps ranks in lock-step)."""
    if not d.active:
        return flag
    import torch
    import torch.distributed as dist

    t = torch.tensor([1 if flag else 0], dtype=torch.int64)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def _average_grads(params: list, d: Dist) -> None:
    """All-reduce mean of the gradients; a parameter that got no gradient on any rank keeps
    ``grad=None`` (as in one process, so AdamW skips it instead of decaying it)."""
    if not d.active:
        return
    import torch
    import torch.distributed as dist

    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    has_grad = torch.tensor([float(p.grad is not None) for p in params])
    flat = torch.cat([g.reshape(-1) for g in grads] + [has_grad.to(grads[0].dtype)])
    dist.all_reduce(flat)
    ranks_with_grad = flat[-len(params):]
    flat = flat[:-len(params)] / d.world
    offset = 0
    for p, g, seen in zip(params, grads, ranks_with_grad.tolist()):
        n = g.numel()
        p.grad = flat[offset:offset + n].view_as(p).clone() if seen > 0 else None
        offset += n


def _broadcast_float(value: float, d: Dist) -> float:
    if not d.active:
        return value
    import torch
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64)
    dist.broadcast(t, src=0)
    return float(t.item())


# -- checkpoints -------------------------------------------------------------------------------
def trainable_state(model: Any, params: list) -> dict[str, Any]:
    """State of the trainable parameters and the buffers (the frozen parts rebuild from the config)."""
    ids = {id(p) for p in params}
    state = {f"param:{n}": p.detach().clone() for n, p in model.named_parameters() if id(p) in ids}
    state.update({f"buffer:{n}": b.detach().clone() for n, b in model.named_buffers()})
    return state


def load_trainable_state(model: Any, state: dict[str, Any]) -> None:
    import torch

    named_p = dict(model.named_parameters())
    named_b = dict(model.named_buffers())
    with torch.no_grad():
        for key, value in state.items():
            kind, _, name = key.partition(":")
            target = (named_p if kind == "param" else named_b).get(name)
            if target is None or target.shape != value.shape:
                raise AvsKitError(f"checkpoint entry {name!r} does not fit this model",
                                  hint="the checkpoint comes from another config; start a new run")
            target.copy_(value)


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    import torch

    from avsbench_kit.atomic import atomic_path

    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: Path) -> dict[str, Any]:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a truncated file cannot happen (atomic), a foreign one can
        raise AvsKitError(f"{path}: unreadable checkpoint ({exc})",
                          hint="delete it to restart that run from scratch") from None


# -- the loop ----------------------------------------------------------------------------------
@dataclass
class FitResult:
    epochs: int = 0
    steps: int = 0
    samples_seen: int = 0
    train_time_s: float = 0.0
    samples_per_s: float = 0.0
    best_value: float | None = None
    best_epoch: int | None = None
    last_loss: float | None = None
    resumed_from: dict[str, int] | None = None
    epoch_losses: list[float] = field(default_factory=list)
    val_history: list[dict[str, float]] = field(default_factory=list)
    stopped_early: str = ""

    def summary(self) -> dict[str, Any]:
        return asdict(self)


BatchFactory = Callable[[int], Iterable[dict]]  # epoch -> batches in this epoch's (seeded) order


def _batch_size(batch: dict) -> int:
    keys = batch.get("key")
    if keys is not None:
        return len(keys)
    masks = batch.get("masks")
    return int(masks.shape[0]) if masks is not None else 1


def _rank_batches(batches: Iterable[dict], d: Dist, skip: int) -> Iterator[dict]:
    """This rank's share (every W-th batch), minus the first ``skip`` already trained on."""
    mine = (b for i, b in enumerate(batches) if i % d.world == d.rank)
    for i, b in enumerate(mine):
        if i >= skip:
            yield b


class Trainer:
    """Fit ``model`` with AdamW on its trainable parameters; checkpoints go to ``ckpt_dir``.

    ``seed`` restarts every RNG when training starts (rank r uses seed + 1000003 r for dropout etc.).
    ``validate(model) -> float`` (higher is better) runs on rank 0 every ``val_every`` epochs;
    the best value's weights are saved to ``best.pt``. ``identity`` (the config hash) is stored in
    every checkpoint and a checkpoint of another config is never resumed.
    """

    def __init__(self, model: Any, cfg: TrainConfig, *, batches: BatchFactory, num_train_samples: int,
                 ckpt_dir: str | Path, seed: int = 0, validate: Callable[[Any], float] | None = None,
                 identity: str = "",
                 progress: bool = True, dist: Dist | None = None,
                 on_epoch: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.model = model
        self.cfg = cfg
        self.batches = batches
        self.validate = validate
        self.identity = identity
        self.seed = seed
        self.ckpt_dir = Path(ckpt_dir)
        self.progress = progress
        self.dist = dist or Dist()
        self.on_epoch = on_epoch
        self.params = list(model.trainable_parameters())
        if not self.params:
            raise ConfigError(f"{type(model).__name__} has no trainable parameters",
                              hint="mode=eval evaluates a model without training it")
        per_rank = math.ceil(num_train_samples / cfg.batch_size) // self.dist.world
        if per_rank < 1:
            raise ConfigError(f"{num_train_samples} training samples make no batch of {cfg.batch_size} "
                              f"per process ({self.dist.world} processes)", hint="lower train.batch_size")
        self.batches_per_epoch = per_rank
        self.steps_per_epoch = math.ceil(per_rank / cfg.grad_accum)
        self.total_steps = self.steps_per_epoch * cfg.epochs
        if cfg.max_steps:
            self.total_steps = min(self.total_steps, cfg.max_steps)

    @property
    def last_path(self) -> Path:
        return self.ckpt_dir / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.ckpt_dir / "best.pt"

    def _optimizer(self):
        import torch

        groups = getattr(self.model, "param_groups", None)  # interim (auralsam2) until Contract v2
        if callable(groups):
            return torch.optim.AdamW([{"params": g.params, "weight_decay": self.cfg.weight_decay
                                       if g.weight_decay is None else g.weight_decay} for g in groups()],
                                     lr=self.cfg.lr)
        return torch.optim.AdamW(self.params, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)

    def _payload(self, opt, state: dict[str, Any], result: FitResult) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "identity": self.identity,
            "model": trainable_state(self.model, self.params),
            "optimizer": opt.state_dict(),
            "rng": rng_state(),
            "state": dict(state),
            "result": result.summary(),
        }

    def fit(self, resume: bool = True) -> FitResult:
        """Train (resuming from ``last.pt`` when present) and return what happened."""
        import torch

        cfg, d = self.cfg, self.dist
        opt = self._optimizer()
        state = {"epoch": 0, "batch": 0, "step": 0}  # next epoch / batch-in-epoch / optimiser step
        result = FitResult()
        # the training stream starts from the seed, whatever ran since the model was built
        seed_everything(self.seed + 1_000_003 * d.rank)
        if resume and self.last_path.is_file():
            ckpt = load_checkpoint(self.last_path)
            if ckpt.get("identity") != self.identity:
                raise AvsKitError(f"{self.last_path} belongs to another config",
                                  hint="start a new run, or delete that checkpoint")
            load_trainable_state(self.model, ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            set_rng_state(ckpt["rng"])
            state = dict(ckpt["state"])
            result = FitResult(**ckpt["result"])
            result.resumed_from = {"epoch": state["epoch"], "batch": state["batch"], "step": state["step"]}
        started = time.perf_counter()
        seen_before = result.samples_seen
        time_before = result.train_time_s
        bar = _Progress(self.progress and d.main, cfg.epochs, self.batches_per_epoch)
        try:
            while state["epoch"] < cfg.epochs and state["step"] < self.total_steps:
                epoch = state["epoch"]
                self.model.train()
                losses: list[float] = list(state.pop("losses", []))  # a mid-epoch resume keeps them
                pending = 0
                bar.start_epoch(epoch, state["batch"])
                batch_iter = _rank_batches(self.batches(epoch), d, state["batch"])
                n_batch = state["batch"]
                while n_batch < self.batches_per_epoch:
                    batch = next(batch_iter, None)
                    if not _all_true(batch is not None, d):
                        break
                    logits = self.model(batch)
                    loss = self.model.loss(logits, batch)
                    loss = loss["total"] if isinstance(loss, dict) else loss  # interim until Contract v2
                    value = float(loss.detach())
                    if not _all_true(math.isfinite(value), d):
                        raise TrainingDiverged(
                            f"loss became {value} at epoch {epoch + 1}, optimiser step {state['step'] + 1} "
                            f"(lr {lr_at(state['step'], self.total_steps, cfg):.3g})",
                            hint=f"lower train.lr or check the inputs; the last good checkpoint is {self.last_path}",
                        )
                    (loss / cfg.grad_accum).backward()
                    pending += 1
                    n_batch += 1
                    losses.append(value)
                    result.samples_seen += _batch_size(batch) * d.world
                    if pending == cfg.grad_accum or n_batch == self.batches_per_epoch:
                        self._step(opt, state["step"])
                        pending = 0
                        state["step"] += 1
                        state["batch"] = n_batch
                        if state["step"] >= self.total_steps:
                            result.stopped_early = f"max_steps={cfg.max_steps}" if cfg.max_steps else ""
                            break
                        if cfg.checkpoint_every and state["step"] % cfg.checkpoint_every == 0 and n_batch < self.batches_per_epoch:
                            result.train_time_s = time_before + time.perf_counter() - started
                            self._save_last(opt, {**state, "losses": losses}, result)
                    rate = (result.samples_seen - seen_before) / max(1e-9, time.perf_counter() - started)
                    bar.advance(value, rate)
                if pending:  # a short last batch group still updates (scaled as a full group)
                    self._step(opt, state["step"])
                    state["step"] += 1
                result.epoch_losses.append(sum(losses) / len(losses) if losses else float("nan"))
                result.last_loss = losses[-1] if losses else result.last_loss
                state["epoch"], state["batch"] = epoch + 1, 0
                result.epochs = state["epoch"]
                result.steps = state["step"]
                last = state["epoch"] >= cfg.epochs or state["step"] >= self.total_steps
                if self.validate is not None and (state["epoch"] % cfg.val_every == 0 or last):
                    self._validate_and_keep_best(epoch + 1, result)
                result.train_time_s = time_before + time.perf_counter() - started
                result.samples_per_s = result.samples_seen / max(1e-9, result.train_time_s)
                self._save_last(opt, state, result)
                if self.on_epoch is not None and d.main:
                    self.on_epoch(result.summary())
        finally:
            bar.close()
        if self.validate is None and d.main:  # no selection split: the last weights are the best
            save_checkpoint(self.best_path, {"format": CHECKPOINT_FORMAT, "identity": self.identity,
                                             "model": trainable_state(self.model, self.params),
                                             "epoch": result.epochs})
        return result

    def _step(self, opt, step: int) -> None:
        import torch

        _average_grads(self.params, self.dist)
        if self.cfg.clip_grad:
            torch.nn.utils.clip_grad_norm_(self.params, self.cfg.clip_grad)
        lr = lr_at(step, self.total_steps, self.cfg)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.step()
        opt.zero_grad(set_to_none=True)

    def _validate_and_keep_best(self, epoch: int, result: FitResult) -> None:
        import torch

        value = float("nan")
        if self.dist.main:
            rng = rng_state()  # validation must not shift the training RNG stream
            self.model.eval()
            with torch.no_grad():
                value = float(self.validate(self.model))
            self.model.train()
            set_rng_state(rng)
        value = _broadcast_float(value, self.dist)
        result.val_history.append({"epoch": epoch, "value": value})
        if math.isfinite(value) and (result.best_value is None or value > result.best_value):
            result.best_value, result.best_epoch = value, epoch
            if self.dist.main:
                save_checkpoint(self.best_path, {"format": CHECKPOINT_FORMAT, "identity": self.identity,
                                                 "model": trainable_state(self.model, self.params),
                                                 "epoch": epoch, "value": value})

    def _save_last(self, opt, state: dict[str, Any], result: FitResult) -> None:
        if self.dist.main:
            save_checkpoint(self.last_path, self._payload(opt, state, result))
        if self.dist.active:
            import torch.distributed as dist

            dist.barrier()

    def load_best(self) -> dict[str, Any]:
        """Put the best checkpoint's weights into the model (what gets evaluated on test)."""
        ckpt = load_checkpoint(self.best_path)
        if ckpt.get("identity") != self.identity:
            raise AvsKitError(f"{self.best_path} belongs to another config", hint="start a new run")
        load_trainable_state(self.model, ckpt["model"])
        return {k: v for k, v in ckpt.items() if k not in ("model",)}


class _Progress:
    """Rich bar per epoch with loss and samples/s (stderr); a no-op when disabled."""

    def __init__(self, enabled: bool, epochs: int, per_epoch: int) -> None:
        self.enabled, self.epochs, self.per_epoch = enabled, epochs, per_epoch
        self._p = None
        self._task = None

    def start_epoch(self, epoch: int, done: int) -> None:
        if not self.enabled:
            return
        if self._p is None:
            from avsbench_kit.progress import make_progress

            self._p = make_progress("batches")
            self._p.start()
        self._task = self._p.add_task(f"epoch {epoch + 1}/{self.epochs}", total=self.per_epoch, completed=done, rate="")

    def advance(self, loss: float, rate: float) -> None:
        if self._p is not None and self._task is not None:
            self._p.update(self._task, advance=1, rate=f"loss {loss:.4f}  {rate:,.1f} samples/s")

    def close(self) -> None:
        if self._p is not None:
            self._p.stop()
            self._p = None
