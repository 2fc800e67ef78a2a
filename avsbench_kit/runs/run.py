"""`avskit run`: prepare -> features -> train -> select on val -> predict test -> evaluate -> record.

The orchestration only wires pieces together: the dataset manifest (prepared on demand; SynthAVS
is generated when missing), the feature caches a baseline asks for (built when missing), the
shared :class:`~avsbench_kit.runs.trainer.Trainer`, the metric protocols, and the run store.
The checkpoint is selected on ``val`` with the dataset's official protocol and never looks at
test. Re-running an identical command after a crash or a kill resumes the unfinished run.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from avsbench_kit.errors import AvsKitError, ConfigError, NotPreparedError
from avsbench_kit.registry import did_you_mean

MODES = ("train+eval", "train", "eval")
#: run-level keys of `avskit run` (everything else is a config override)
RUN_KEYS = ("baseline", "dataset", "config", "mode", "resume", "from", "save_predictions", "build_caches",
            "synth_size", "synth_seed")
#: the metric (of the official protocol, on val) that selects the checkpoint, per task
SELECT_METRIC = {"s4": "mIoU", "ms3": "mIoU", "refavs": "J&F", "avss": "mIoU"}
#: Reference predictors: constant logits, no training, no features — the anchors every trained
#: baseline must beat on every protocol.
REFERENCE_PREDICTORS = {"empty": -20.0, "full": 20.0}


@dataclass
class RunRequest:
    """What `avskit run ...` asked for (run-level keys) plus the config overrides."""

    baseline: str = "av2t"
    dataset: str = "synth-s4"
    config: str = "cpu-small"
    mode: str = "train+eval"
    overrides: list[str] = field(default_factory=list)
    resume: bool = True
    checkpoint_from: str = ""  # mode=eval: a run id (prefix) whose best.pt is evaluated
    save_predictions: bool = False
    build_caches: bool = True
    synth_size: str = "small"
    synth_seed: int = 0

    @classmethod
    def parse(cls, args: Iterable[str]) -> "RunRequest":
        """``["baseline=av2t", "dataset=synth-ms3", "train.epochs=3"]`` -> a request."""
        from avsbench_kit.config import parse_override

        req, overrides = cls(), []
        for text in args:
            key, value = parse_override(text)
            if key in RUN_KEYS:
                attr = {"from": "checkpoint_from"}.get(key, key)
                default = getattr(req, attr)
                if isinstance(default, bool) and not isinstance(value, bool):
                    raise ConfigError(f"{key}={value!r} must be true or false", hint=f"e.g. {key}=false")
                setattr(req, attr, type(default)(value) if not isinstance(default, bool) else value)
            else:
                overrides.append(text)
        req.overrides = overrides
        if req.mode not in MODES:
            raise ConfigError(f"mode={req.mode!r} is not one of {MODES}", hint=did_you_mean(req.mode, MODES))
        if req.baseline in REFERENCE_PREDICTORS and req.mode != "eval":
            req.mode = "eval"  # nothing to train
        return req


# -- config ------------------------------------------------------------------------------------
def resolve_config(req: RunRequest) -> dict[str, Any]:
    """The baseline's packaged preset + trainer defaults + the user's overrides, validated."""
    from avsbench_kit.config import apply_overrides, flatten, parse_override
    from avsbench_kit.runs.trainer import TrainConfig, defaults

    if req.baseline in REFERENCE_PREDICTORS:
        cfg: dict[str, Any] = {"name": req.baseline, "seed": 0, "output_size": 224,
                               "logit": REFERENCE_PREDICTORS[req.baseline], "train": defaults()}
        return apply_overrides(cfg, req.overrides)
    load_config = config_loader(req.baseline)
    preset = load_config(req.baseline, req.config, [])
    known = set(flatten(preset))
    train_defaults = {f"train.{k}" for k in defaults()}
    own, later = [], []
    for text in req.overrides:
        key, _ = parse_override(text)
        (later if key not in known and key in train_defaults else own).append(text)
    cfg = load_config(req.baseline, req.config, own)  # enforces the baseline's fixed overrides
    cfg["train"] = {**defaults(), **(cfg.get("train") or {})}
    cfg = apply_overrides(cfg, later)
    TrainConfig.from_dict(cfg["train"])  # validate early (bad values are ConfigErrors)
    return cfg


def config_loader(baseline: str) -> Callable[[str, str, list[str]], dict[str, Any]]:
    """``(name, preset, overrides) -> config``: the registry entry's ``config_loader`` (a callable or
    ``"module:function"``, for third-party plugins) or the packaged-YAML loader of ``baselines``."""
    from avsbench_kit.plugins import BASELINES, load_plugins
    from avsbench_kit.registry import import_object

    load_plugins()
    loader = BASELINES.meta(baseline).get("config_loader")
    if loader is None:
        from baselines.configs import load_config

        return load_config
    return import_object(loader) if isinstance(loader, str) else loader


def baseline_task_ok(baseline: str, task: str) -> None:
    if baseline in REFERENCE_PREDICTORS:
        return
    from avsbench_kit.plugins import BASELINES, load_plugins

    load_plugins()
    tasks = str(BASELINES.meta(baseline).get("task", "")).split(",")
    if tasks != [""] and task not in tasks:
        raise ConfigError(f"baseline {baseline!r} handles tasks {tasks}, not {task!r}",
                          hint="pick a dataset of a supported task (`avskit ls datasets`)")


# -- data --------------------------------------------------------------------------------------
def ensure_manifest(dataset: str, home: str | Path | None, synth_size: str = "small", synth_seed: int = 0,
                    say: Callable[[str], None] = print):
    """The prepared manifest; SynthAVS subsets are generated and prepared when missing."""
    from avsbench_kit.data.datasets import DATASETS
    from avsbench_kit.data.prepare import load_manifest, prepare

    spec = DATASETS.get(dataset)
    try:
        return load_manifest(dataset, home)
    except NotPreparedError:
        if not spec.synthetic:
            raise
    from avsbench_kit.data.synth import generate
    from avsbench_kit.home import synth_dir

    root = synth_dir(synth_size, synth_seed, home)
    say(f"{dataset} is not prepared: generating SynthAVS ({synth_size}, seed {synth_seed}) at {root}")
    say(generate(root, seed=synth_seed, size=synth_size))
    return prepare(dataset, root, home=home)


def feature_fingerprints(requests: list) -> dict[str, str]:
    """``{encoder label: encoder fingerprint}``: the caches (weights, preprocessing, code) used."""
    from avsbench_kit.features.base import build_encoder

    return {r.label: build_encoder(r.encoder, r.overrides).fingerprint() for r in requests}


def ensure_features(manifest, requests: list, splits: Iterable[str], home, build: bool,
                    say: Callable[[str], None], progress: bool = True) -> None:
    """Build missing caches; with ``build_caches=false`` fail instead, naming the exact
    ``avskit features extract`` command (the reader's NotPreparedError hint)."""
    if not requests:
        return
    from avsbench_kit.features import reader

    if build:
        from avsbench_kit.features.extract import extract

        say(f"feature caches for {manifest.dataset}: {', '.join(r.label for r in requests)} (built if missing)")
        for r in requests:  # one worker: under torchrun, RANK/WORLD_SIZE must not split this job
            extract(manifest, r.encoder, r.overrides, home=home, num_workers_total=1, worker_index=0,
                    progress=progress)
        return
    for split in splits:
        if len(manifest.split(split)):
            next(iter(reader.feature_batches(manifest, split, requests, batch_size=1, shuffle=False, seed=0,
                                             home=home, with_masks=False)), None)


# -- prediction + evaluation --------------------------------------------------------------------
class ConstantPredictor:
    """`empty` / `full`: the metric package's reference predictions (as `avskit eval --pred empty`),
    computed from the GT's shape only — no parameters, no features, no training."""

    needs_frames = False

    def __init__(self, name: str, task: str) -> None:
        self.name, self.task = name, task

    def feature_requests(self) -> list:
        return []

    def eval(self):
        return self

    def __call__(self, batch: dict):
        import torch

        from avsbench_kit.metrics.predictions import reference_prediction

        masks = batch["masks"]
        return torch.from_numpy(reference_prediction(self.name, masks.numpy(), self.task)).float()


def predict(model, batch_iter: Iterable[dict]) -> Iterator[tuple[dict, Any]]:
    """(batch, logits) for every batch, in eval mode and without gradients."""
    import torch

    if hasattr(model, "eval"):
        model.eval()
    with torch.no_grad():
        for batch in batch_iter:
            out = model(batch)
            yield batch, getattr(out, "logits", out)  # interim (auralsam2) until Contract v2


def evaluate(model, manifest, split: str, protocols: list[str], batch_iter: Iterable[dict],
             predictions_dir: Path | None = None):
    """:class:`~avsbench_kit.runs.scoring.SplitScore` of one split under ``protocols``."""
    from avsbench_kit.runs import scoring

    return scoring.score(predict(model, batch_iter), manifest, split, protocols, predictions_dir=predictions_dir)


# -- resume ------------------------------------------------------------------------------------
LOCK = ".lock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def find_resumable(store, config_hash: str, dataset_fingerprint: str, mode: str):
    """The newest unfinished run of exactly this config + data whose process is gone."""
    for rec in reversed(store.records()):
        if rec.status == "complete" or rec.config_hash != config_hash or rec.mode != mode:
            continue
        if rec.dataset_fingerprint != dataset_fingerprint:
            continue
        lock = store.path(rec.run_id, LOCK)
        if lock.is_file():
            try:
                if _pid_alive(int(lock.read_text().strip() or 0)):
                    continue  # another process is running it right now
            except ValueError:
                pass
        if store.path(rec.run_id, "last.pt").is_file():
            return rec
    return None


# -- the run -----------------------------------------------------------------------------------
def hardware(world: int) -> dict[str, Any]:
    import torch

    from avsbench_kit.provenance import environment_info

    info: dict[str, Any] = dict(environment_info())
    info.update({"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                 "device": "cpu", "world_size": world})
    return info


def build_model(req: RunRequest, cfg: dict[str, Any]):
    """The baseline (or reference predictor) built from the resolved config, seeded."""
    from avsbench_kit.runs.trainer import seed_everything

    if req.baseline in REFERENCE_PREDICTORS:
        from avsbench_kit.data.datasets import DATASETS

        return ConstantPredictor(req.baseline, DATASETS.get(req.dataset).task)
    from avsbench_kit.plugins import BASELINES, load_plugins

    load_plugins()
    seed_everything(int(cfg.get("seed", 0)))
    from avsbench_kit.data.datasets import DATASETS

    return BASELINES.get(req.baseline).from_config({**cfg, "task": DATASETS.get(req.dataset).task})


def execute(req: RunRequest, home: str | Path | None = None, *, progress: bool = True,
            say: Callable[[str], None] = print):
    """Run one request end to end; returns the complete :class:`RunRecord`."""
    from avsbench_kit import __version__
    from avsbench_kit.config import config_hash
    from avsbench_kit.data.datasets import DATASETS
    from avsbench_kit.provenance import git_sha
    from avsbench_kit.runs.record import RunRecord, iso, new_run_id, utc_now
    from avsbench_kit.runs.store import RunStore
    from avsbench_kit.runs.trainer import Dist, TrainConfig, Trainer, init_distributed

    started = time.perf_counter()
    dist = init_distributed()
    quiet = (lambda _m: None) if not dist.main else say
    spec = DATASETS.get(req.dataset)
    baseline_task_ok(req.baseline, spec.task)
    cfg = resolve_config(req)
    seed = int(cfg.get("seed", 0))
    tcfg = TrainConfig.from_dict(cfg.get("train"))
    from avsbench_kit.metrics.protocols import default_protocols

    protocols = tuple(default_protocols(spec.task))  # the official protocol first, then its -clip- variant
    select_metric = SELECT_METRIC[spec.task]
    manifest = ensure_manifest(req.dataset, home, req.synth_size, req.synth_seed, quiet) if dist.main else None
    if dist.active:
        manifest = _share(manifest, dist, lambda: ensure_manifest(req.dataset, home, req.synth_size,
                                                                   req.synth_seed, quiet))
    model = build_model(req, cfg)
    requests = list(model.feature_requests())
    if dist.main:
        ensure_features(manifest, requests, spec.splits, home, req.build_caches, quiet, progress)
    _barrier(dist)
    record_cfg = {**cfg, "run": {"baseline": req.baseline, "preset": req.config, "dataset": req.dataset,
                                 "mode": req.mode, "protocols": list(protocols),
                                 "select": f"val/{protocols[0]}/{select_metric}",
                                 "from": req.checkpoint_from}}
    chash = config_hash(record_cfg)
    store = RunStore(home)
    record = None
    if dist.main:
        record = find_resumable(store, chash, manifest.fingerprint, req.mode) if req.resume else None
        if record is not None:
            quiet(f"resuming run {record.run_id} from its last checkpoint")
            record.status = "running"
            record.notes.append(f"resumed at {iso(utc_now())}")
        else:
            record = RunRecord(
                run_id=new_run_id(chash, seed), baseline=req.baseline, dataset=req.dataset, seed=seed,
                config=record_cfg, config_hash=chash, config_name=req.config if req.baseline not in
                REFERENCE_PREDICTORS else "", mode=req.mode, task=spec.task, overrides=list(req.overrides),
                dataset_fingerprint=manifest.fingerprint,
                features=feature_fingerprints(requests),
                toolkit_version=__version__, git_sha=git_sha(), created_utc=iso(utc_now()),
                hardware=hardware(dist.world),
            )
            store.create(record)
            quiet(f"run {record.run_id} ({store.run_dir(record.run_id)})")
        store.path(record.run_id, LOCK).write_text(str(os.getpid()))
    run_dir = Path(_share(str(store.run_dir(record.run_id)) if record else None, dist, None))
    elapsed_before = record.wall_time_s if record else 0.0
    try:
        with_frames = bool(getattr(model, "needs_frames", False))

        def data(split: str, *, shuffle: bool, batch_size: int, epoch: int = 0):
            from avsbench_kit.features.reader import feature_batches

            return feature_batches(manifest, split, requests, batch_size=batch_size, shuffle=shuffle, seed=seed,
                                   epoch=epoch, home=home, with_frames=with_frames, with_masks=True)

        def validate(m) -> float:
            scored = evaluate(m, manifest, "val", [protocols[0]],
                              data("val", shuffle=False, batch_size=tcfg.eval_batch_size))
            return float(scored.metrics[protocols[0]][select_metric])

        trainer = None
        if "train" in req.mode:
            n_train = len(manifest.split("train"))
            has_val = "val" in spec.splits and len(manifest.split("val")) > 0
            trainer = Trainer(model, tcfg, batches=lambda e: data("train", shuffle=True, batch_size=tcfg.batch_size,
                                                                   epoch=e),
                              num_train_samples=n_train, ckpt_dir=run_dir, seed=seed,
                              validate=validate if has_val else None, identity=chash,
                              progress=progress, dist=dist,
                              on_epoch=lambda summary: _checkpoint_record(store, record, summary, started,
                                                                          elapsed_before))
            result = trainer.fit(resume=req.resume)
            if record is not None:
                record.training = {**result.summary(), **_param_counts(model)}
                record.selection = {"split": "val", "protocol": protocols[0], "metric": select_metric,
                                    "best_epoch": result.best_epoch, "best_value": result.best_value}
        if not dist.main:
            return None
        if trainer is not None:
            trainer.load_best()
        elif req.checkpoint_from:
            _load_from_run(store, req.checkpoint_from, model, record)
        elif req.baseline not in REFERENCE_PREDICTORS:
            record.notes.append("evaluated without training: the weights are the config's initial/pretrained ones")
        if "eval" in req.mode:
            _evaluate_all(model, manifest, spec, protocols, record, store, req, data, tcfg, quiet)
        record.status = "complete"
        record.finished_utc = iso(utc_now())
        record.wall_time_s = elapsed_before + time.perf_counter() - started
        store.save(record)
        return record
    except BaseException as exc:
        if record is not None and dist.main:
            record.status = "failed"
            record.error = f"{type(exc).__name__}: {getattr(exc, 'message', None) or exc}"
            record.wall_time_s = elapsed_before + time.perf_counter() - started
            store.save(record)
        raise
    finally:
        if record is not None and dist.main:
            store.path(record.run_id, LOCK).unlink(missing_ok=True)


def _param_counts(model) -> dict[str, Any]:
    counts = getattr(model, "parameter_counts", None)
    return {"parameters": counts()} if callable(counts) else {}


def _checkpoint_record(store, record, summary: dict[str, Any], started: float, before: float) -> None:
    """After every epoch: the record shows progress (and survives a kill)."""
    if record is None:
        return
    record.training = summary
    record.wall_time_s = before + time.perf_counter() - started
    store.save(record)


def _load_from_run(store, prefix: str, model, record) -> None:
    from avsbench_kit.runs.trainer import load_checkpoint, load_trainable_state

    source = store.get(prefix)
    path = store.path(source.run_id, "best.pt")
    if source.baseline != record.baseline:
        raise ConfigError(f"run {source.run_id} trained {source.baseline!r}, not {record.baseline!r}",
                          hint="use from=<a run of the same baseline>")
    if not path.is_file():
        raise AvsKitError(f"run {source.run_id} has no best.pt", hint="was it trained? (mode=eval runs have none)")
    load_trainable_state(model, load_checkpoint(path)["model"])
    record.notes.append(f"weights from run {source.run_id} (best.pt)")


def _evaluate_all(model, manifest, spec, protocols, record, store, req, data, tcfg, say) -> None:
    """Predict every test split once and score it under every protocol of the task."""
    import pandas as pd

    tables = []
    splits = [s for s in spec.splits if s not in ("train", "val")]
    for split in splits:
        if not len(manifest.split(split)):
            continue
        pred_dir = store.path(record.run_id, f"predictions/{split}") if req.save_predictions else None
        say(f"evaluating {split} ({len(manifest.split(split))} samples): {', '.join(protocols)}")
        scored = evaluate(model, manifest, split, list(protocols),
                          data(split, shuffle=False, batch_size=tcfg.eval_batch_size), predictions_dir=pred_dir)
        for protocol, values in scored.metrics.items():
            record.set_metrics(split, protocol, values, scored.versions.get(protocol, ""))
        if len(scored.samples):
            tables.append(scored.samples)
    if tables:
        store.write_per_sample(record.run_id, pd.concat(tables, ignore_index=True))
        record.files["per_sample"] = "per_sample.parquet"
    if req.save_predictions:
        record.files["predictions"] = "predictions/<split>/<sample_key>/<frame>.npy"


def _barrier(dist) -> None:
    if dist.active:
        import torch.distributed as tdist

        tdist.barrier()


def _share(value, dist, compute: Callable[[], Any] | None):
    """Rank 0's value on every rank (or, when ``compute`` is given, each rank computes it after rank 0)."""
    if not dist.active:
        return value
    import torch.distributed as tdist

    if compute is not None:
        tdist.barrier()
        return value if dist.main else compute()
    box = [value]
    tdist.broadcast_object_list(box, src=0)
    return box[0]
