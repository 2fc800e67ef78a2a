"""`avskit probe`: a finished run's selected checkpoint evaluated under input perturbations.

No retraining: the model is rebuilt from the record's resolved config, its selected weights
(``best.pt``) are loaded, the run's own feature caches are read (checked against the record's
fingerprints), and one split is scored clean and under each probe with the run's protocols.
A probe only runs through an input the model reads (its feature requests, and its declared
``modalities()`` when it has them); ``control=True`` runs it anyway, which for a model that does not
read the input measures nothing but gives the control's own numbers (reliance 0, FPR = its
clean foreground rate) — computed, not assumed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from avsbench_kit.errors import AvsKitError, ConfigError, DataError
from avsbench_kit.probes.registry import DEFAULT_PROBES, Probe, parse_probe


@dataclass
class LoadedRun:
    """A run ready to be probed."""

    record: Any
    model: Any
    manifest: Any
    requests: list
    protocols: list[str]
    reads: tuple[str, ...]
    batch_size: int
    view: str = "native"
    notes: list[str] = field(default_factory=list)


# -- rebuilding the run -------------------------------------------------------------------------
def rebuild_model(store: Any, record: Any) -> tuple[Any, str]:
    """The record's model with its selected weights; returns (model, where the weights came from)."""
    from avsbench_kit.runs.run import RunRequest, baseline_spec, build_model
    from avsbench_kit.runs.trainer import load_checkpoint, load_trainable_state

    cfg = {k: v for k, v in record.config.items() if k != "run"}
    req = RunRequest(baseline=record.baseline, dataset=record.dataset, config=record.config_name or "cpu-small")
    model = build_model(req, cfg)
    if not baseline_spec(record.baseline).trains:
        return model, "none (reference predictor)"
    source = record.run_id
    path = store.path(source, "best.pt")
    if not path.is_file():
        source = str((record.config.get("run") or {}).get("from") or "")
        if not source:
            return model, "the config's initial weights (the run did not train)"
        source = store.resolve(source)
        path = store.path(source, "best.pt")
        if not path.is_file():
            raise AvsKitError(f"run {record.run_id} took its weights from run {source}, which has no best.pt",
                              hint="probe a run that trained (`avskit runs ls`)")
    load_trainable_state(model, load_checkpoint(path)["model"])
    return model, f"{source}/best.pt"


def reads(model: Any, requests: list) -> tuple[str, ...]:
    """The inputs that reach the model: the modalities of its feature caches (plus ``image`` when
    it takes raw frames), restricted to its declared ``modalities()`` when it has that method."""
    from avsbench_kit.features.base import ENCODERS

    found = {str(ENCODERS.meta(r.encoder).get("modality", "")) for r in requests}
    if getattr(model, "needs_frames", False):
        found.add("image")
    declared = getattr(model, "modalities", None)
    if callable(declared):
        found &= set(declared())
    return tuple(m for m in ("audio", "image", "text") if m in found)


def load_run(run_id: str, home: str | Path | None = None) -> LoadedRun:
    """Rebuild a complete run for probing (every mismatch with the record is a one-line error)."""
    from avsbench_kit.data.prepare import load_manifest
    from avsbench_kit.runs.run import feature_fingerprints
    from avsbench_kit.runs.store import RunStore
    from avsbench_kit.runs.trainer import TrainConfig

    store = RunStore(home)
    record = store.get(run_id)
    if record.status != "complete":
        raise AvsKitError(f"run {record.run_id} is {record.status}, not complete",
                          hint="probe a complete run (`avskit runs ls --status complete`)")
    manifest = load_manifest(record.dataset, home)
    if manifest.fingerprint != record.dataset_fingerprint:
        raise DataError(f"{record.dataset} is prepared from other data than run {record.run_id} used "
                        f"({manifest.fingerprint[:12]}, the run: {record.dataset_fingerprint[:12]})",
                        hint="re-prepare the dataset the run used, or probe a run on the current data")
    model, weights = rebuild_model(store, record)
    requests = list(model.feature_requests())
    now = feature_fingerprints(requests)
    if record.features and now != record.features:
        changed = sorted(k for k in set(now) | set(record.features) if now.get(k) != record.features.get(k))
        raise DataError(f"run {record.run_id} read other feature caches than its config gives now ({', '.join(changed)})",
                        hint="the encoder presets or code changed since the run: re-run it, then probe")
    protocols, view = probe_protocols(record)
    batch = TrainConfig.from_dict(record.config.get("train")).eval_batch_size if record.config.get("train") else 8
    return LoadedRun(record, model, manifest, requests, protocols, reads(model, requests), int(batch),
                     view, [f"weights: {weights}"])


def probe_protocols(record: Any) -> tuple[list[str], str]:
    """(protocols, view) a run is probed under: its first view's (the native one, or AVSS binary)."""
    from avsbench_kit.runs.run import baseline_spec, task_protocols

    output = "semantic" if record.task == "avss" and "semantic" in baseline_spec(record.baseline).outputs else "binary"
    views = task_protocols(record.task, output)
    view = next(iter(views))
    return list(views[view]), view


# -- choosing probes ----------------------------------------------------------------------------
@dataclass
class Plan:
    """The probes to run (with parameters) and those left out, with the reason."""

    run: list[tuple[Probe, dict[str, Any]]]
    skipped: list[tuple[str, str]]


def dataset_inputs(manifest: Any) -> tuple[str, ...]:
    """The inputs a dataset has: audio and image always, text when some row has an expression."""
    has_text = bool(manifest.df["text"].astype(str).str.len().gt(0).any())
    return ("audio", "image", "text") if has_text else ("audio", "image")


def choose(run: LoadedRun, specs: Iterable[str] = (), control: bool = False) -> Plan:
    """Explicit ``specs`` must fit the model (else one ConfigError naming what is missing); the
    default set keeps the probes the model can take and lists the others as skipped. Probes of an
    input the dataset does not have (text on AVSBench) never run."""
    specs = list(specs)
    explicit = bool(specs)
    chosen, skipped = [], []
    who = f"run {run.record.run_id} ({run.record.baseline})"
    reads_text = ", ".join(run.reads) or "no input features"
    has = dataset_inputs(run.manifest)
    for text in specs or DEFAULT_PROBES:
        probe, params = parse_probe(text)
        if probe.modality not in has:
            if explicit:
                raise ConfigError(f"probe {probe.name} perturbs {probe.modality}, but {run.record.dataset} has none",
                                  hint="text probes need a dataset with referring expressions (Ref-AVS)")
            continue
        if probe.modality not in run.reads and not control:
            why = f"{who} reads no {probe.modality} (it reads {reads_text})"
            if explicit:
                raise ConfigError(f"probe {probe.name} perturbs {probe.modality}, but {why}",
                                  hint="--control runs it anyway as a control (the input reaches nothing)")
            skipped.append((probe.name, f"reads no {probe.modality}"))
            continue
        chosen.append((probe, params))
    if not chosen:
        raise ConfigError(f"no probe applies to {who}: it reads {reads_text}",
                          hint="--control runs the probes anyway (a vision-only control's own numbers)")
    return Plan(chosen, skipped)


# -- evaluating ---------------------------------------------------------------------------------
@dataclass
class Scored:
    metrics: dict[str, dict[str, float]]
    versions: dict[str, str]
    samples: Any  # per-sample table (with fg / pixels columns)
    features: dict[str, str]


def default_split(run: LoadedRun) -> str:
    from avsbench_kit.data.datasets import DATASETS

    splits = [s for s in DATASETS.get(run.record.dataset).splits if s not in ("train", "val", "test_n")]
    present = [s for s in splits if len(run.manifest.split(s))]
    if not present:
        raise DataError(f"{run.record.dataset} has no test split with samples", hint="pass --split")
    return present[0]


def _foreground(pairs: Iterable[tuple[dict, Any]], size: tuple[int, int] | None, threshold: float,
                counts: dict[str, tuple[int, int]]) -> Iterable[tuple[dict, Any]]:
    """Pass (batch, logits) through, counting each sample's predicted foreground pixels on its
    annotated frames at the scoring resolution with the protocol's foreground rule (class logits:
    the class-agnostic "not background" view)."""
    from avsbench_kit.runs.scoring import binary_view, resize_logits

    for batch, logits in pairs:
        binary, _ = binary_view(logits, batch["masks"])
        at = resize_logits(binary, size or tuple(batch["masks"].shape[-2:]))
        frames = batch.get("num_frames")
        for i, key in enumerate(batch["key"]):
            n = int(frames[i]) if frames is not None else at.shape[1]
            scored = at[i][:n][batch["annotated"][i][:n].bool()]
            counts[key] = (int((scored >= threshold).sum()), int(scored.numel()))
        yield batch, logits


def evaluate(run: LoadedRun, split: str, home: str | Path | None, probe: Probe | None = None,
             params: dict[str, Any] | None = None, seed: int = 0, progress: bool = False) -> Scored:
    """Score ``split`` clean (``probe=None``) or under one probe."""
    from avsbench_kit.features.reader import feature_batches
    from avsbench_kit.metrics.protocols import PROTOCOLS
    from avsbench_kit.runs import scoring
    from avsbench_kit.runs.run import predict

    encoders: dict[str, Any] = {}
    perturbation = None
    if probe is not None and probe.kind == "signal":
        encoders = signal_encoders(run, split, probe, params or {}, seed, home, progress)
    elif probe is not None:
        perturbation = probe.read_plan(run.manifest.rows(split), params or {}, seed, run.manifest)
    batches = feature_batches(run.manifest, split, run.requests, batch_size=run.batch_size, shuffle=False,
                              seed=0, home=home, with_frames=bool(getattr(run.model, "needs_frames", False)),
                              with_masks=True, perturbation=perturbation, encoders=encoders)
    counts: dict[str, tuple[int, int]] = {}
    official = PROTOCOLS.get(run.protocols[0])
    size, threshold = (tuple(official.resolution) if official.resolution else None), official.j_logit_threshold
    scored = scoring.score(_foreground(predict(run.model, batches), size, threshold, counts), run.manifest,
                           split, run.protocols, view=run.view)
    samples = scored.samples.copy()
    samples["fg"] = [counts[k][0] for k in samples["sample_key"]]
    samples["pixels"] = [counts[k][1] for k in samples["sample_key"]]
    fps = {r.label: (encoders[r.label].fingerprint() if r.label in encoders else run.record.features.get(r.label, ""))
           for r in run.requests}
    return Scored(scored.metrics, scored.versions, samples, fps)


def signal_encoders(run: LoadedRun, split: str, probe: Probe, params: dict[str, Any], seed: int,
                    home: str | Path | None, progress: bool) -> dict[str, Any]:
    """The perturbed encoder of every cache of the probe's modality, its split cache built once."""
    from avsbench_kit.features.base import build_encoder
    from avsbench_kit.features.extract import extract
    from avsbench_kit.probes.signal import PerturbedEncoder

    out = {}
    for r in run.requests:
        inner = build_encoder(r.encoder, r.overrides)
        if inner.modality != probe.modality:
            continue
        enc = PerturbedEncoder(inner, probe, params, seed)
        extract(run.manifest, enc, split=split, home=home, num_workers_total=1, worker_index=0, progress=progress)
        out[r.label] = enc
    return out


def j_column(samples: Any) -> str:
    for name in ("mIoU", "J", "mIoU_present"):
        if name in samples.columns:
            return name
    raise DataError("this split has no per-sample J (a null split scores S only)",
                    hint="probe a split with targets (--split test_s, test_u, test)")


# -- the entry point ----------------------------------------------------------------------------
def probe_run(run_id: str, specs: Iterable[str] = (), *, split: str | None = None, seed: int | None = None,
              control: bool = False, home: str | Path | None = None, progress: bool = False,
              say: Callable[[str], None] = print) -> tuple[Any, list[dict[str, Any]], Plan]:
    """Probe one run; returns (record with its updated ``probes`` section, this call's entries, plan)."""
    from avsbench_kit.runs.store import RunStore
    from avsbench_kit.probes.record import entry, merge

    run = load_run(run_id, home)
    plan = choose(run, specs, control)
    split = split or default_split(run)
    run.manifest.split(split)  # unknown split -> DataError listing the splits
    seed = int(run.record.seed if seed is None else seed)
    for name, why in plan.skipped:
        say(f"skipped {name}: {run.record.baseline} {why}")
    say(f"probing run {run.record.run_id} ({run.record.baseline} on {run.record.dataset}, {split}): clean")
    clean = evaluate(run, split, home, seed=seed, progress=progress)
    entries = []
    for probe, params in plan.run:
        say(f"probing run {run.record.run_id}: {probe.name} v{probe.version}")
        started = time.perf_counter()
        scored = evaluate(run, split, home, probe, params, seed, progress)
        entries.append(entry(run, split, seed, probe, params, clean, scored, time.perf_counter() - started))
    record = RunStore(home).save_probes(run.record.run_id, merge(run.record.probes, entries))
    return record, entries, plan
