"""`avskit run`: prepare -> features -> train -> select on val -> predict test -> evaluate -> record.

The orchestration only wires pieces together: the dataset manifest (prepared on demand; SynthAVS
is generated when missing), the feature caches a baseline asks for (built when missing), the
shared :class:`~avsbench_kit.runs.trainer.Trainer`, the metric protocols, and the run store.
The checkpoint is selected on ``val`` with the dataset's official protocol and never looks at
test. Re-running an identical command after a crash or a kill resumes the unfinished run.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from avsbench_kit.atomic import pid_alive, remove_stale_temps
from avsbench_kit.errors import AvsKitError, ConfigError, NotPreparedError
from avsbench_kit.registry import did_you_mean

MODES = ("train+eval", "train", "eval")
#: run-level keys of `avskit run` (everything else is a config override); not part of the config hash
RUN_KEYS = ("baseline", "dataset", "config", "mode", "resume", "from", "save_predictions", "build_caches",
            "synth_size", "synth_seed", "device", "init_from", "then")
#: the metric (of the official protocol, on val) that selects the checkpoint, per task
SELECT_METRIC = {"s4": "mIoU", "ms3": "mIoU", "refavs": "J&F", "avss": "mIoU"}
#: Ref-AVS "Mix (S+U)": the union of the seen and unseen test splits, scored as one split
MIX_SPLITS = {"refavs": {"test_mix": ("test_s", "test_u")}}
#: class-agnostic binary view of AVSS (GT > 0 is foreground), scored by the AVSBench protocols
BINARY_VIEW = ("avsbench-v1", "avsbench-clip-v1")


@dataclass
class RunRequest:
    """What `avskit run ...` asked for (run-level keys) plus the config overrides."""

    baseline: str = "av2t"
    dataset: str = "synth-s4"
    config: str = ""  # "" = the baseline's default preset (cpu-small for trainable baselines)
    mode: str = "train+eval"
    overrides: list[str] = field(default_factory=list)
    resume: bool = True
    checkpoint_from: str = ""  # mode=eval: a run id (prefix) whose best.pt is evaluated
    save_predictions: bool = False
    build_caches: bool = True
    synth_size: str = "small"
    synth_seed: int = 0
    device: str = "cpu"  # auto | cpu | cuda | cuda:N | mps (not hashed: the record's hardware says where)
    init_from: str = ""  # warm start from another run's best.pt (hashed: it changes the result)
    then: str = ""  # "P1,P2": after this run, run config=P1 warm-started from it, then P2 (stages)

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
        spec = baseline_spec(req.baseline)
        if not spec.trains and req.mode != "eval":
            req.mode = "eval"  # a reference predictor: nothing to train
        req.config = req.config or spec.default_preset
        return req


def baseline_spec(name: str):
    from avsbench_kit.plugins import baseline_spec as spec_of

    return spec_of(name)


# -- config ------------------------------------------------------------------------------------
def resolve_config(req: RunRequest) -> dict[str, Any]:
    """The baseline's packaged preset + trainer defaults + the input switches + the user's
    overrides, validated. Every baseline takes ``modality=full|vision-only|no-audio|no-text`` and,
    for the inputs its spec declares, ``audio=on|off`` / ``text=on|off``."""
    from avsbench_kit.config import apply_overrides, flatten, parse_override
    from avsbench_kit.runs.trainer import TrainConfig, defaults

    spec = baseline_spec(req.baseline)
    load_config = config_loader(req.baseline)
    preset = load_config(req.baseline, req.config, [])
    known = set(flatten(preset))
    switches = {"modality": "full", **{m: True for m in ("audio", "text") if m in spec.modalities},
                "augment": {"hflip": 0.0, "scale_crop": None}}
    switches = {k: v for k, v in switches.items() if k not in preset}
    toolkit_keys = {f"train.{k}" for k in defaults()} | set(switches)
    own, later = [], []
    for text in req.overrides:
        key, _ = parse_override(text)
        (later if key not in known and key in toolkit_keys else own).append(text)
    cfg = load_config(req.baseline, req.config, own)  # enforces the baseline's fixed overrides
    cfg["train"] = {**defaults(), **(cfg.get("train") or {})}
    cfg.update(switches)
    cfg = apply_overrides(cfg, later)
    from avsbench_kit.data.datasets import DATASETS

    dspec = DATASETS.get(req.dataset)
    cfg["task"] = dspec.task  # what the model predicts for (AVSS: class logits over num_classes)
    if dspec.num_classes:
        cfg["num_classes"] = dspec.num_classes
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
    tasks = list(baseline_spec(baseline).tasks)
    if task not in tasks:
        raise ConfigError(f"baseline {baseline!r} handles tasks {tasks}, not {task!r}",
                          hint="pick a dataset of a supported task (`avskit ls datasets`)")


def task_protocols(task: str, output: str) -> dict[str, list[str]]:
    """``{view: protocols}`` a run reports: the task's official protocol and its clip variant; on
    AVSS, semantic output adds the class-agnostic ``binary`` view, binary output has only that."""
    from avsbench_kit.metrics.protocols import default_protocols

    if task != "avss":
        return {"native": default_protocols(task)}
    views = {"native": default_protocols(task)} if output == "semantic" else {}
    views["binary"] = list(BINARY_VIEW)
    return views


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
                    say: Callable[[str], None], progress: bool = True, device: Any = "cpu") -> None:
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
                    progress=progress, device=str(device))
        return
    for split in splits:
        if len(manifest.split(split)):
            next(iter(reader.feature_batches(manifest, split, requests, batch_size=1, shuffle=False, seed=0,
                                             home=home, with_masks=False)), None)


# -- prediction + evaluation --------------------------------------------------------------------
def predict(model, batch_iter: Iterable[dict], device: Any = None, precision: str = "fp32") -> Iterator[tuple[dict, Any]]:
    """(batch, logits) for every batch, in eval mode, without gradients, on ``device``; the logits
    come back to the CPU once per batch (what the metric kernels read)."""
    import torch

    from avsbench_kit.device import autocast_context, to_device

    device = device or torch.device("cpu")
    model.eval()
    with torch.no_grad():
        for batch in batch_iter:
            with autocast_context(device, precision):
                out = model(to_device(batch, device))
            logits = getattr(out, "logits", out)
            yield batch, logits.float().cpu()


def evaluate(model, manifest, split: str, protocols: list[str], batch_iter: Iterable[dict],
             predictions_dir: Path | None = None, *, view: str = "native", device: Any = None,
             precision: str = "fp32"):
    """:class:`~avsbench_kit.runs.scoring.SplitScore` of one split under ``protocols``."""
    from avsbench_kit.runs import scoring

    scorer = scoring.Scorer(manifest, [split], protocols, view=view, predictions_dir=predictions_dir)
    for batch, logits in predict(model, batch_iter, device, precision):
        scorer.feed(batch, logits)
    return scorer.result()


# -- resume ------------------------------------------------------------------------------------
LOCK = ".lock"


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
                if pid_alive(int(lock.read_text().strip() or 0)):
                    continue  # another process is running it right now
            except ValueError:
                pass
        if store.path(rec.run_id, "last.pt").is_file():
            return rec
    return None


# -- the run -----------------------------------------------------------------------------------
def hardware(world: int, device: Any, precision: str) -> dict[str, Any]:
    import torch

    from avsbench_kit.device import device_info
    from avsbench_kit.provenance import environment_info

    info: dict[str, Any] = dict(environment_info())
    info.update({"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "world_size": world,
                 "precision": precision})
    info.update(device_info(device))
    return info


def check_weights(req: RunRequest, cfg: dict[str, Any]) -> None:
    """A config that needs pretrained parts it was not given fails here, naming all of them, before
    any data or run directory is touched (never a silent run on random encoders)."""
    from avsbench_kit.plugins import BASELINES

    missing = list(BASELINES.get(req.baseline).missing_weights(cfg))
    if missing:
        raise ConfigError(f"{req.baseline} config={req.config} needs pretrained weights: " + "; ".join(missing),
                          hint="pass each as key=/path (or a hub id already in the local cache); "
                               "config=cpu-small runs without them")


def build_model(req: RunRequest, cfg: dict[str, Any]):
    """The baseline built from the resolved config, seeded; a preset key it never read is an error."""
    from avsbench_kit.config import flatten
    from avsbench_kit.plugins import BASELINES, load_plugins
    from avsbench_kit.runs.trainer import seed_everything
    from baselines.base import TrackedConfig

    load_plugins()
    seed_everything(int(cfg.get("seed", 0)))
    tracked = TrackedConfig(cfg)
    model = BASELINES.get(req.baseline).from_config(tracked)
    model.feature_requests()  # part of construction: what it reads of the config counts
    from avsbench_kit.config import parse_override

    dead = [k for k in (parse_override(o)[0] for o in req.overrides) if tracked.is_inactive(k)]
    if dead:
        raise ConfigError(f"{req.baseline}: override(s) {', '.join(dead)} have no effect in this configuration",
                          hint="they belong to another variant (see the preset's comments); drop them")
    unread = tracked.unread(flatten(cfg))
    if unread:
        raise ConfigError(f"{req.baseline} config={req.config}: key(s) {', '.join(unread)} set but not used by "
                          f"{type(model).__name__}", hint="remove them (a key with no effect would be recorded as a setting)")
    return model


def _init_from(store, prefix: str, baseline: str, model) -> dict[str, Any]:
    """Warm start: copy another run's selected weights (best.pt) into ``model``; returns what the
    record keeps (source run, its config hash, dataset fingerprint and the checkpoint's sha256)."""
    from baselines.base import file_sha256

    from avsbench_kit.runs.trainer import load_checkpoint, load_trainable_state

    source = store.get(prefix)
    if source.baseline != baseline:
        raise ConfigError(f"init_from={prefix}: run {source.run_id} trained {source.baseline!r}, not {baseline!r}",
                          hint="warm-start from a run of the same baseline (e.g. its stage-1 run)")
    if source.status != "complete":
        raise ConfigError(f"init_from={prefix}: run {source.run_id} is {source.status}",
                          hint="finish that run first (re-running its command resumes it)")
    path = store.path(source.run_id, "best.pt")
    if not path.is_file():
        raise ConfigError(f"init_from={prefix}: run {source.run_id} has no best.pt", hint="was it trained?")
    n = load_trainable_state(model, load_checkpoint(path)["model"], source=f"init_from={source.run_id}")
    return {"run_id": source.run_id, "config_hash": source.config_hash, "config_name": source.config_name,
            "dataset": source.dataset, "dataset_fingerprint": source.dataset_fingerprint,
            "best_epoch": source.selection.get("best_epoch"), "checkpoint_sha256": file_sha256(path),
            "entries": n}


def stage_requests(req: RunRequest) -> list[RunRequest]:
    """``then=P1,P2``: the follow-up stages of ``req`` — same baseline, dataset and overrides, each
    with ``config=P`` and warm-started (``init_from``) from the stage before. Every stage's config
    and weights are checked before the first one starts."""
    from dataclasses import replace

    presets = [p.strip() for p in str(req.then).split(",") if p.strip()]
    if presets and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("then= chains stages in one process; under torchrun start each stage on its own",
                          hint="run stage 1, then config=<stage 2> init_from=<stage-1 run id>")
    stages = [replace(req, config=p, then="", init_from="") for p in presets]
    for stage in stages:
        check_weights(stage, resolve_config(stage))
    return stages


def execute_stages(req: RunRequest, home: str | Path | None = None, *, progress: bool = True,
                   say: Callable[[str], None] = print) -> list:
    """Run ``req`` and then its ``then=`` stages, each from the previous run's best checkpoint; the
    complete records in order (each later record names its source run in ``init_from``)."""
    stages = stage_requests(req)
    record = execute(req, home, progress=progress, say=say)
    records = [record]
    for stage in stages:
        if record is None:  # pragma: no cover - a non-main rank (refused above)
            break
        stage.init_from = record.run_id
        say(f"next stage: config={stage.config} init_from={record.run_id}")
        record = execute(stage, home, progress=progress, say=say)
        records.append(record)
    return records


def execute(req: RunRequest, home: str | Path | None = None, *, progress: bool = True,
            say: Callable[[str], None] = print):
    """Run one request end to end; returns the complete :class:`RunRecord`."""
    from avsbench_kit.config import config_hash
    from avsbench_kit.data.datasets import DATASETS
    from avsbench_kit.device import resolve_device
    from avsbench_kit.runs.record import iso, utc_now
    from avsbench_kit.runs.store import RunStore
    from avsbench_kit.runs.trainer import TrainConfig, Trainer, init_distributed

    started = time.perf_counter()
    spec = DATASETS.get(req.dataset)
    bspec = baseline_spec(req.baseline)
    baseline_task_ok(req.baseline, spec.task)
    cfg = resolve_config(req)
    check_weights(req, cfg)
    device = resolve_device(req.device)  # a missing device fails here, before anything is written
    dist = init_distributed(device.type)
    if dist.active and device.type == "cuda":
        import torch

        device = torch.device("cuda", torch.cuda.current_device())
    quiet = (lambda _m: None) if not dist.main else say
    seed = int(cfg.get("seed", 0))
    tcfg = TrainConfig.from_dict(cfg.get("train"))
    output = "semantic" if spec.task == "avss" and "semantic" in bspec.outputs else "binary"
    views = task_protocols(spec.task, output)
    select_view = "native" if "native" in views else "binary"
    protocols = tuple(p for ps in views.values() for p in ps)
    select_protocol = views[select_view][0]
    select_metric = SELECT_METRIC[spec.task]
    model = build_model(req, cfg)  # config errors surface before data is generated
    manifest = ensure_manifest(req.dataset, home, req.synth_size, req.synth_seed, quiet) if dist.main else None
    if dist.active:
        manifest = _share(manifest, dist, lambda: ensure_manifest(req.dataset, home, req.synth_size,
                                                                   req.synth_seed, quiet))
    requests = list(model.feature_requests())
    augment = _augmenter(cfg, requests, seed)
    if dist.main:
        ensure_features(manifest, requests, spec.splits, home, req.build_caches, quiet, progress, device)
    _barrier(dist)
    record_cfg = {**cfg, "run": {"baseline": req.baseline, "preset": req.config, "dataset": req.dataset,
                                 "mode": req.mode, "protocols": list(protocols),
                                 "select": f"val/{select_protocol}/{select_metric}",
                                 "from": req.checkpoint_from, "init_from": req.init_from}}
    chash = config_hash(record_cfg)
    store = RunStore(home)
    record = None
    held = contextlib.ExitStack()  # rank 0 holds the run's lock until the record is final
    if dist.main:
        try:
            record = _open_record(store, held, req, record_cfg, chash, manifest, requests, seed, spec, dist,
                                  device, tcfg, quiet)
        except BaseException:
            held.close()
            raise
    run_dir = Path(_share(str(store.run_dir(record.run_id)) if record else None, dist, None))
    elapsed_before = record.wall_time_s if record else 0.0
    try:
        if req.init_from:
            info = _init_from(store, req.init_from, req.baseline, model)
            if record is not None:
                record.init_from = info
                quiet(f"warm start from run {info['run_id']} ({info['entries']} tensors)")
        if record is not None:
            record.model = model.describe()
        with_frames = bool(getattr(model, "needs_frames", False))

        def data(split: str, *, shuffle: bool, batch_size: int, epoch: int = 0):
            from avsbench_kit.features.reader import feature_batches

            return feature_batches(manifest, split, requests, batch_size=batch_size, shuffle=shuffle, seed=seed,
                                   epoch=epoch, home=home, with_frames=with_frames, with_masks=True,
                                   pin_memory=device.type == "cuda")

        def validate(m) -> float:
            scored = evaluate(m, manifest, "val", [select_protocol],
                              data("val", shuffle=False, batch_size=tcfg.eval_batch_size), view=select_view,
                              device=device, precision=tcfg.precision)
            return float(scored.metrics[select_protocol][select_metric])

        trainer = None
        if "train" in req.mode:
            n_train = len(manifest.split("train"))
            has_val = "val" in spec.splits and len(manifest.split("val")) > 0
            trainer = Trainer(model, tcfg, batches=lambda e: data("train", shuffle=True, batch_size=tcfg.batch_size,
                                                                   epoch=e),
                              num_train_samples=n_train, ckpt_dir=run_dir, seed=seed,
                              validate=validate if has_val else None, identity=chash,
                              progress=progress, dist=dist, transform=augment, device=device,
                              on_epoch=lambda summary: _checkpoint_record(store, record, summary, started,
                                                                          elapsed_before))
            result = trainer.fit(resume=req.resume)
            if record is not None:
                record.training = {**result.summary(), **_param_counts(model)}
                record.selection = {"split": "val", "protocol": select_protocol, "metric": select_metric,
                                    "view": select_view, "best_epoch": result.best_epoch,
                                    "best_value": result.best_value}
        if not dist.main:
            _leave(dist)  # rank 0 alone predicts and writes; a clean exit avoids gloo/NCCL aborts
            return None
        model.to(device)
        if trainer is not None:
            trainer.load_best()
        elif req.checkpoint_from:
            _load_from_run(store, req.checkpoint_from, model, record)
        elif bspec.trains and not req.init_from:
            record.notes.append("evaluated without training: the weights are the config's initial/pretrained ones")
        if "eval" in req.mode:
            _evaluate_all(model, manifest, spec, views, record, store, req, data, tcfg, quiet, device)
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
        held.close()
        if dist.main:
            _leave(dist)


def _open_record(store, held, req: RunRequest, record_cfg: dict[str, Any], chash: str, manifest, requests: list,
                 seed: int, spec, dist, device, tcfg, quiet):
    """Take the run's lock (``held``), then resume the unfinished run of this config + data or
    create a new record; marks it as this process's."""
    from avsbench_kit import __version__
    from avsbench_kit.provenance import git_sha
    from avsbench_kit.runs.record import RunRecord, iso, new_run_id, utc_now

    held.enter_context(store.exclusive(f"{chash[:16]}-{manifest.fingerprint[:16]}-{req.mode.replace('+', '_')}",
                                       f"baseline={req.baseline} dataset={req.dataset} seed={seed}"))
    record = find_resumable(store, chash, manifest.fingerprint, req.mode) if req.resume else None
    if record is not None:
        quiet(f"resuming run {record.run_id} from its last checkpoint")
        remove_stale_temps(store.run_dir(record.run_id), recursive=True)  # what the killed process was writing
        record.status = "running"
        record.notes.append(f"resumed at {iso(utc_now())}")
    else:
        record = RunRecord(
            run_id=new_run_id(chash, seed), baseline=req.baseline, dataset=req.dataset, seed=seed,
            config=record_cfg, config_hash=chash, config_name=req.config, mode=req.mode, task=spec.task,
            overrides=list(req.overrides), dataset_fingerprint=manifest.fingerprint,
            features=feature_fingerprints(requests),
            toolkit_version=__version__, git_sha=git_sha(), created_utc=iso(utc_now()),
            hardware=hardware(dist.world, device, tcfg.precision),
        )
        store.create(record)
        quiet(f"run {record.run_id} ({store.run_dir(record.run_id)})")
    store.path(record.run_id, LOCK).write_text(str(os.getpid()))
    return record


def _augmenter(cfg: dict[str, Any], requests: list, seed: int):
    """The training-batch transform of the ``augment:`` block (None when it is off); refused when a
    cached spatial feature would no longer match the augmented frames and masks."""
    block = cfg.get("augment") or {}
    if not block or not any(block.values()):
        return None
    from avsbench_kit.data.augment import augment_batch, check_augment_allowed

    check_augment_allowed(requests, block)

    def transform(batch: dict, epoch: int, index: int) -> dict:
        import torch

        g = torch.Generator().manual_seed(hash((seed, epoch, index)) % 2**63)
        return augment_batch(batch, block, g)

    return transform


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


def _evaluate_all(model, manifest, spec, views, record, store, req, data, tcfg, say, device) -> None:
    """Predict every test split once and score it under every protocol of every view; Ref-AVS's
    Mix (S+U) is fed from the same predictions as test_s and test_u."""
    import pandas as pd

    from avsbench_kit.runs.scoring import Scorer

    tables = []
    splits = [s for s in spec.splits if s not in ("train", "val") and len(manifest.split(s))]
    mixes = {name: parts for name, parts in MIX_SPLITS.get(spec.task, {}).items()
             if all(p in splits for p in parts)}
    mix_scorers = {name: [Scorer(manifest, list(parts), protos, view=view, name=name)
                          for view, protos in views.items()] for name, parts in mixes.items()}
    for split in splits:
        pred_dir = store.path(record.run_id, f"predictions/{split}") if req.save_predictions else None
        scorers = [Scorer(manifest, [split], protos, view=view, predictions_dir=pred_dir if i == 0 else None)
                   for i, (view, protos) in enumerate(views.items())]
        scorers += [s for name, parts in mixes.items() if split in parts for s in mix_scorers[name]]
        names = [p for ps in views.values() for p in ps]
        say(f"evaluating {split} ({len(manifest.split(split))} samples): {', '.join(names)}")
        for batch, logits in predict(model, data(split, shuffle=False, batch_size=tcfg.eval_batch_size), device,
                                     tcfg.precision):
            for scorer in scorers:
                scorer.feed(batch, logits)
        for scorer in scorers[:len(views)]:
            tables.append(_record_score(record, split, scorer.result()))
    for name, scorers in mix_scorers.items():
        say(f"scoring {name} = {' + '.join(mixes[name])}")
        for scorer in scorers:
            _record_score(record, name, scorer.result())
    tables = [t for t in tables if t is not None and len(t)]
    if tables:
        store.write_per_sample(record.run_id, pd.concat(tables, ignore_index=True))
        record.files["per_sample"] = "per_sample.parquet"
    if req.save_predictions:
        record.files["predictions"] = "predictions/<split>/<sample_key>/<frame>.npy"


def _record_score(record, split: str, scored):
    for protocol, values in scored.metrics.items():
        record.set_metrics(split, protocol, values, scored.versions.get(protocol, ""))
    return scored.samples


def _leave(dist) -> None:
    """Leave the process group cleanly (exiting with it alive can abort in the backend's threads)."""
    if dist.active:
        import torch.distributed as tdist

        if tdist.is_initialized():
            tdist.destroy_process_group()


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
