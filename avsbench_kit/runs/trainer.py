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
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast; fp16 adds a grad scaler; CUDA only)
    sync_every: int = 0  # steps between host reads of the loss (NaN check, progress); 0 = 1 on CPU, 25 on GPUs

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
            (self.sync_every >= 0, "train.sync_every must be >= 0"),
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


def init_distributed(device_type: str = "cpu") -> Dist:
    """Join the process group ``torchrun`` describes: NCCL when the run is on CUDA (each rank on
    GPU ``LOCAL_RANK``), gloo on CPU; a single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        if device_type == "cuda":
            import torch

            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size())


def _comm_device():
    """Collectives run on the GPU under NCCL and on the CPU under gloo."""
    import torch
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _all_true(flag: bool, d: Dist) -> bool:
    """True on every rank only if it is True on every rank (keeps ranks in lock-step)."""
    if not d.active:
        return flag
    import torch
    import torch.distributed as dist

    t = torch.tensor([1 if flag else 0], dtype=torch.int64, device=_comm_device())
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
    has_grad = torch.tensor([float(p.grad is not None) for p in params], device=grads[0].device)
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

    t = torch.tensor([value], dtype=torch.float64, device=_comm_device())
    dist.broadcast(t, src=0)
    return float(t.item())


# -- checkpoints -------------------------------------------------------------------------------
def trainable_state(model: Any, params: list) -> dict[str, Any]:
    """State of the trainable parameters and the buffers (the frozen parts rebuild from the config)."""
    ids = {id(p) for p in params}
    state = {f"param:{n}": p.detach().cpu().clone() for n, p in model.named_parameters() if id(p) in ids}
    state.update({f"buffer:{n}": b.detach().cpu().clone() for n, b in model.named_buffers()})
    return state


def load_trainable_state(model: Any, state: dict[str, Any], *, source: str = "the checkpoint") -> int:
    """Copy a checkpoint's entries into ``model`` (every entry must fit); returns how many.
    Model parameters the checkpoint lacks keep their values (a warm start into a larger model)."""
    import torch

    named_p = dict(model.named_parameters())
    named_b = dict(model.named_buffers())
    with torch.no_grad():
        for key, value in state.items():
            kind, _, name = key.partition(":")
            target = (named_p if kind == "param" else named_b).get(name)
            if target is None or target.shape != value.shape:
                raise AvsKitError(f"{source}: entry {name!r} does not fit this model",
                                  hint="the checkpoint comes from another config; start a new run")
            target.copy_(value)
    return len(state)


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    import torch

    from avsbench_kit.atomic import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        sink = _WriteErrors(f)
        try:
            torch.save(payload, sink)
        except RuntimeError:
            if sink.error is not None:  # torch reports a full disk as "unexpected pos": say ENOSPC
                raise sink.error from None
            raise


class _WriteErrors:
    """A file wrapper that remembers the OSError of a failed write: torch's zip writer turns it
    into a RuntimeError without the errno, so a full disk would look like a bug."""

    def __init__(self, f: Any) -> None:
        self.f = f
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self.f.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.f.flush()


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
    #: per epoch: the mean of every loss component the baseline returns (``total`` included)
    loss_components: list[dict[str, float]] = field(default_factory=list)
    param_groups: list[dict[str, Any]] = field(default_factory=list)
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
    """Fit ``model`` with AdamW on its parameter groups; checkpoints go to ``ckpt_dir``.

    ``seed`` restarts every RNG when training starts (rank r uses seed + 1000003 r for dropout etc.).
    ``validate(model) -> float`` (higher is better) runs on rank 0 every ``val_every`` epochs;
    the best value's weights are saved to ``best.pt``. ``identity`` (the config hash) is stored in
    every checkpoint and a checkpoint of another config is never resumed. ``transform(batch, epoch,
    index)`` edits a training batch after it reached the device (frame augmentation).

    The model's ``forward`` returns a :class:`~baselines.base.BaselineOutput` (or a bare tensor) and
    its ``loss`` a dict with a ``total`` (or a scalar). On a GPU the loss is read on the host only
    every ``sync_every`` steps: no hidden synchronisation in the step.
    """

    def __init__(self, model: Any, cfg: TrainConfig, *, batches: BatchFactory, num_train_samples: int,
                 ckpt_dir: str | Path, seed: int = 0, validate: Callable[[Any], float] | None = None,
                 identity: str = "",
                 progress: bool = True, dist: Dist | None = None,
                 on_epoch: Callable[[dict[str, Any]], None] | None = None,
                 transform: Callable[[dict, int, int], dict] | None = None, device: Any = "cpu") -> None:
        from avsbench_kit.device import check_precision, resolve_device

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
        self.transform = transform
        self.device = resolve_device(str(device))
        self.precision = check_precision(self.device, cfg.precision)
        self.sync_every = cfg.sync_every or (1 if self.device.type == "cpu" else 25)
        self.groups = _param_groups(model)
        self.params = [p for g in self.groups for p in g.params]
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

    def group_summary(self) -> list[dict[str, Any]]:
        """What the run record shows of the optimiser's parameter groups."""
        return [{"name": g.name, "tensors": len(g.params), "parameters": sum(p.numel() for p in g.params),
                 "lr_mult": g.lr_mult,
                 "weight_decay": self.cfg.weight_decay if g.weight_decay is None else g.weight_decay}
                for g in self.groups]

    def _optimizer(self):
        import torch

        groups = [{"params": g.params, "lr_mult": float(g.lr_mult), "name": g.name,
                   "weight_decay": self.cfg.weight_decay if g.weight_decay is None else float(g.weight_decay),
                   "lr": self.cfg.lr * float(g.lr_mult)} for g in self.groups]
        return torch.optim.AdamW(groups, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)

    def _scaler(self):
        import torch

        if self.precision != "fp16":
            return None
        return torch.amp.GradScaler(self.device.type)

    def _payload(self, opt, scaler, state: dict[str, Any], result: FitResult) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "identity": self.identity,
            "model": trainable_state(self.model, self.params),
            "optimizer": opt.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": rng_state(),
            "state": dict(state),
            "result": result.summary(),
        }

    def _forward_loss(self, batch: dict) -> dict[str, Any]:
        from avsbench_kit.device import autocast_context

        with autocast_context(self.device, self.precision):
            out = self.model(batch)
            losses = self.model.loss(out, batch)
        if not isinstance(losses, dict):
            losses = {"total": losses}
        if "total" not in losses:
            raise AvsKitError(f"{type(self.model).__name__}.loss returned {sorted(losses)} without 'total'",
                              hint="return {'total': <the loss to minimise>, '<component>': ...}")
        return losses

    def fit(self, resume: bool = True) -> FitResult:
        """Train (resuming from ``last.pt`` when present) and return what happened."""
        from avsbench_kit.device import to_device

        cfg, d = self.cfg, self.dist
        self.model.to(self.device)
        opt = self._optimizer()
        scaler = self._scaler()
        state = {"epoch": 0, "batch": 0, "step": 0}  # next epoch / batch-in-epoch / optimiser step
        result = FitResult(param_groups=self.group_summary())
        # the training stream starts from the seed, whatever ran since the model was built
        seed_everything(self.seed + 1_000_003 * d.rank)
        if resume and self.last_path.is_file():
            ckpt = load_checkpoint(self.last_path)
            if ckpt.get("identity") != self.identity:
                raise AvsKitError(f"{self.last_path} belongs to another config",
                                  hint="start a new run, or delete that checkpoint")
            load_trainable_state(self.model, ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            if scaler is not None and ckpt.get("scaler"):
                scaler.load_state_dict(ckpt["scaler"])
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
                # a mid-epoch resume keeps the losses (host floats) of the batches already trained
                done: list[dict[str, float]] = [v if isinstance(v, dict) else {"total": v}
                                                for v in state.pop("losses", [])]
                pending_losses: list[dict[str, Any]] = []  # device tensors not yet read on the host
                pending = 0
                bar.start_epoch(epoch, state["batch"])
                batch_iter = _rank_batches(self.batches(epoch), d, state["batch"])
                n_batch = state["batch"]

                def sync() -> None:
                    """Read the pending losses on the host: NaN check, progress."""
                    if not pending_losses:
                        return
                    values = _to_host(pending_losses)
                    pending_losses.clear()
                    for value in values:
                        if not _all_true(math.isfinite(value["total"]), d):
                            raise TrainingDiverged(
                                f"loss became {value['total']} at epoch {epoch + 1}, optimiser step "
                                f"{state['step'] + 1} (lr {lr_at(state['step'], self.total_steps, cfg):.3g})",
                                hint="lower train.lr or check the inputs; the last good checkpoint is "
                                     f"{self.last_path}",
                            )
                        done.append(value)
                    rate = (result.samples_seen - seen_before) / max(1e-9, time.perf_counter() - started)
                    bar.advance(done[-1]["total"], rate, len(values))

                while n_batch < self.batches_per_epoch:
                    batch = next(batch_iter, None)
                    if not _all_true(batch is not None, d):
                        break
                    batch = to_device(batch, self.device)
                    if self.transform is not None:
                        batch = self.transform(batch, epoch, n_batch)
                    losses = self._forward_loss(batch)
                    total = losses["total"]
                    scaled = total / cfg.grad_accum
                    (scaler.scale(scaled) if scaler is not None else scaled).backward()
                    pending_losses.append({k: v.detach() for k, v in losses.items()})
                    pending += 1
                    n_batch += 1
                    result.samples_seen += _batch_size(batch) * d.world
                    if len(pending_losses) >= self.sync_every or n_batch == self.batches_per_epoch:
                        sync()
                    if pending == cfg.grad_accum or n_batch == self.batches_per_epoch:
                        if self.sync_every == 1:
                            sync()  # a CPU step never uses a loss not yet checked (free on the CPU)
                        self._step(opt, scaler, state["step"])
                        pending = 0
                        state["step"] += 1
                        state["batch"] = n_batch
                        if state["step"] >= self.total_steps:
                            result.stopped_early = f"max_steps={cfg.max_steps}" if cfg.max_steps else ""
                            break
                        if cfg.checkpoint_every and state["step"] % cfg.checkpoint_every == 0 and n_batch < self.batches_per_epoch:
                            sync()  # a checkpoint is written only after its losses were checked
                            result.train_time_s = time_before + time.perf_counter() - started
                            self._save_last(opt, scaler, {**state, "losses": done}, result)
                sync()
                if pending:  # a short last batch group still updates (scaled as a full group)
                    self._step(opt, scaler, state["step"])
                    state["step"] += 1
                means = _component_means(done)
                result.epoch_losses.append(means.get("total", float("nan")))
                result.loss_components.append(means)
                result.last_loss = done[-1]["total"] if done else result.last_loss
                state["epoch"], state["batch"] = epoch + 1, 0
                result.epochs = state["epoch"]
                result.steps = state["step"]
                last = state["epoch"] >= cfg.epochs or state["step"] >= self.total_steps
                if self.validate is not None and (state["epoch"] % cfg.val_every == 0 or last):
                    self._validate_and_keep_best(epoch + 1, result)
                result.train_time_s = time_before + time.perf_counter() - started
                result.samples_per_s = result.samples_seen / max(1e-9, result.train_time_s)
                self._save_last(opt, scaler, state, result)
                bar.end_epoch(epoch, means, result.val_history[-1]["value"] if result.val_history
                              and result.val_history[-1]["epoch"] == epoch + 1 else None)
                if self.on_epoch is not None and d.main:
                    self.on_epoch(result.summary())
        finally:
            bar.close()
        if self.validate is None and d.main:  # no selection split: the last weights are the best
            save_checkpoint(self.best_path, {"format": CHECKPOINT_FORMAT, "identity": self.identity,
                                             "model": trainable_state(self.model, self.params),
                                             "epoch": result.epochs})
        return result

    def _step(self, opt, scaler, step: int) -> None:
        import torch

        _average_grads(self.params, self.dist)
        if scaler is not None:
            scaler.unscale_(opt)
        if self.cfg.clip_grad:
            torch.nn.utils.clip_grad_norm_(self.params, self.cfg.clip_grad)
        lr = lr_at(step, self.total_steps, self.cfg)
        for group in opt.param_groups:
            group["lr"] = lr * group.get("lr_mult", 1.0)  # the schedule scales every group's multiplier
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
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

    def _save_last(self, opt, scaler, state: dict[str, Any], result: FitResult) -> None:
        if self.dist.main:
            save_checkpoint(self.last_path, self._payload(opt, scaler, state, result))
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


def _param_groups(model: Any) -> list:
    """The model's :class:`~baselines.base.ParamGroup` list (one group of its trainable parameters
    for models without ``param_groups``); a parameter in two groups is a bug in the baseline."""
    from baselines.base import ParamGroup

    if hasattr(model, "param_groups"):
        groups = [g for g in model.param_groups() if g.params]
    else:
        groups = [ParamGroup("all", list(model.trainable_parameters()))]
    seen: set[int] = set()
    for g in groups:
        for p in g.params:
            if id(p) in seen:
                raise AvsKitError(f"{type(model).__name__}: a parameter is in two groups (second: {g.name!r})",
                                  hint="param_groups() must partition the trainable parameters")
            if not p.requires_grad:
                raise AvsKitError(f"{type(model).__name__}: group {g.name!r} holds a frozen parameter",
                                  hint="only parameters with requires_grad belong in param_groups()")
            seen.add(id(p))
    return groups


def _to_host(pending: list[dict[str, Any]]) -> list[dict[str, float]]:
    """Device loss tensors -> host floats, in one transfer per sync."""
    import torch

    names = [sorted(p) for p in pending]
    flat = torch.stack([p[n].detach().float().reshape(()) for p, ns in zip(pending, names) for n in ns]).cpu().tolist()
    out, i = [], 0
    for ns in names:
        out.append(dict(zip(ns, flat[i:i + len(ns)])))
        i += len(ns)
    return out


def _component_means(values: list[dict[str, float]]) -> dict[str, float]:
    if not values:
        return {}
    names = sorted({k for v in values for k in v})
    return {n: sum(v[n] for v in values if n in v) / sum(1 for v in values if n in v) for n in names}


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

    def advance(self, loss: float, rate: float, n: int = 1) -> None:
        if self._p is not None and self._task is not None:
            self._p.update(self._task, advance=n, rate=f"loss {loss:.4f}  {rate:,.1f} samples/s")

    def end_epoch(self, epoch: int, losses: dict[str, float], val: float | None) -> None:
        """One summary line per epoch under the bar: every loss component and the validation value."""
        if self._p is None:
            return
        parts = [f"{k} {v:.4f}" for k, v in losses.items()]
        tail = f" | val {val:.4f}" if val is not None else ""
        self._p.console.print(f"epoch {epoch + 1}/{self.epochs}: " + "  ".join(parts) + tail)

    def close(self) -> None:
        if self._p is not None:
            self._p.stop()
            self._p = None
