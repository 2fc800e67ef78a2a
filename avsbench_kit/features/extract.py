"""`avskit features extract`: run a frozen encoder over a prepared manifest into a feature cache.

Resumable and shardable by construction (see :mod:`avsbench_kit.features.cache`): the plan is
fixed by the manifest, every shard is written under a temporary name and renamed, a shard
counts only once its sidecar exists, and existing shards are re-hashed and reused (or recomputed
if corrupt). Worker I of W computes the shards whose index is I modulo W.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from avsbench_kit.atomic import remove_stale_temps
from avsbench_kit.errors import ConfigError
from avsbench_kit.features.base import RUNTIME_KEYS, Encoder, build_encoder
from avsbench_kit.features.cache import (
    FORMAT,
    FORMAT_VERSION,
    FeatureCache,
    ShardPlan,
    Unit,
    cache_dir,
    cache_root,
    environment,
    plan_shards,
    tar_bytes,
)
from avsbench_kit.progress import Steps


@dataclass
class ExtractSummary:
    dataset: str
    encoder: str
    path: Path
    splits: list[str]
    worker: tuple[int, int]
    units: int = 0  # cache entries (clips or samples) in this worker's shards
    units_computed: int = 0  # of which were encoded in this run
    shards: int = 0  # this worker's shards
    computed: list[str] = field(default_factory=list)
    repaired: list[tuple[str, str]] = field(default_factory=list)
    reused: int = 0
    bytes_written: int = 0
    total_bytes: int = 0
    seconds: float = 0.0
    complete: bool = False  # every shard of the requested splits exists (all workers)

    @property
    def cache_hit(self) -> bool:
        """No encoder work at all: every shard was already complete and intact."""
        return not self.computed and not self.repaired

    def lines(self) -> list[str]:
        """The end-of-run summary: what was asked, what was done (samples, shards, bytes, time)."""
        w_i, w_n = self.worker
        who = f", worker {w_i} of {w_n}" if w_n > 1 else ""
        out = [f"{self.encoder} on {self.dataset} ({', '.join(self.splits)}{who})"]
        if self.cache_hit:
            out.append(f"cache hit: all {self.shards} shard(s) ({self.units:,} samples) already complete and intact, "
                       f"no encoder work ({self.seconds:,.2f} s)")
        else:
            work = len(self.computed) + len(self.repaired)
            rate = self.units_computed / self.seconds if self.seconds else 0.0
            out.append(f"samples {self.units:,} ({self.units_computed:,} encoded, {rate:,.1f}/s) | shards {work} "
                       f"computed ({len(self.repaired)} of them repairs), {self.reused} reused | "
                       f"bytes {human_bytes(self.bytes_written)} written | time {self.seconds:,.1f} s")
        for name, why in self.repaired:
            out.append(f"repaired {name}: it was {why}")
        state = "complete" if self.complete else "incomplete (other workers still running?)"
        out.append(f"cache {self.path} ({human_bytes(self.total_bytes)}, {state})")
        return out


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000.0
    return f"{n:,.1f} TB"


# ---- workers ----------------------------------------------------------------------------------
def resolve_workers(num_workers_total: int | None = None, worker_index: int | None = None) -> tuple[int, int]:
    """(index, total): explicit options > torchrun's RANK/WORLD_SIZE > SLURM_PROCID/SLURM_NTASKS > (0, 1)."""
    env = os.environ
    if num_workers_total is None:
        for total_var, index_var in (("WORLD_SIZE", "RANK"), ("SLURM_NTASKS", "SLURM_PROCID")):
            if total_var in env and index_var in env:
                num_workers_total, worker_index = int(env[total_var]), int(env[index_var])
                break
    total = 1 if num_workers_total is None else int(num_workers_total)
    index = 0 if worker_index is None else int(worker_index)
    if total < 1 or not 0 <= index < total:
        raise ConfigError(f"worker index {index} of {total} workers is out of range",
                          hint="use --num-workers-total W --worker-index I with 0 <= I < W")
    return index, total


# ---- configuration helpers --------------------------------------------------------------------
def canonical_overrides(name: str, cfg: dict[str, Any]) -> list[str]:
    """The preset keys whose values differ from the packaged preset, as ``key=value`` (sorted):
    the same config always gives the same list, however it was spelled."""
    import json

    from avsbench_kit.config import flatten, load_preset

    base = flatten(load_preset("encoders", name))
    out = []
    for key, value in sorted(flatten(cfg).items()):
        if key in RUNTIME_KEYS or base.get(key) == value:
            continue
        out.append(f"{key}={value if isinstance(value, str) else json.dumps(value)}")
    return out


def resolve_text_field(manifest: Any, cfg: dict[str, Any]) -> str:
    """``auto``: the referring expression if the dataset has any, else the category name."""
    chosen = cfg.get("text_field", "text")
    if chosen == "auto":
        return "text" if manifest.df["text"].astype(str).str.len().gt(0).any() else "category"
    return chosen


def text_of(row: dict[str, Any], text_field: str) -> str:
    value = str(row.get(text_field) or "")
    return value.replace("_", " ") if text_field == "category" else value


def header_for(manifest: Any, enc: Encoder, plan: list[ShardPlan], text_field: str | None) -> dict[str, Any]:
    by_split: dict[str, dict[str, Any]] = {}
    for shard in plan:
        entry = by_split.setdefault(shard.split, {"shards": [], "units": 0})
        entry["shards"].append(shard.name)
        entry["units"] += len(shard.units)
    for split, entry in by_split.items():
        entry["samples"] = int((manifest.df["split"] == split).sum())
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "dataset": manifest.dataset,
        "manifest_fingerprint": manifest.fingerprint,
        "encoder": enc.registry_name,
        "encoder_fingerprint": enc.fingerprint(),
        "fingerprint_parts": enc.fingerprint_parts(),
        "config": {k: v for k, v in sorted(enc.cfg.items()) if k not in RUNTIME_KEYS},
        "overrides": canonical_overrides(enc.registry_name, enc.cfg),
        "modality": enc.modality,
        "key_by": enc.key_by,
        "text_field": text_field,
        "fields": {k: v.as_dict() for k, v in enc.output_spec().items()},
        "shard_size": enc.shard_size,
        "split_order": list(by_split),
        "plan": by_split,
    }


def open_cache(manifest: Any, enc: Encoder, root: Path) -> FeatureCache:
    return FeatureCache(cache_dir(root, manifest.dataset, manifest.fingerprint, enc.registry_name, enc.fingerprint()))


# ---- loading units ----------------------------------------------------------------------------
class UnitLoader:
    """Fetches what an encoder needs for one unit, through the data layer's AVSDataset."""

    def __init__(self, manifest: Any, enc: Encoder, text_field: str | None) -> None:
        self.manifest = manifest
        self.needs = set(enc.needs)
        self.text_field = text_field
        self._rows: dict[str, list[dict[str, Any]]] = {}
        self._datasets: dict[str, Any] = {}

    def rows(self, split: str) -> list[dict[str, Any]]:
        if split not in self._rows:
            self._rows[split] = self.manifest.rows(split)
        return self._rows[split]

    def dataset(self, split: str) -> Any:
        if split not in self._datasets:
            from avsbench_kit.data.loaders import AVSDataset

            audio = "log_mel" if "log_mel" in self.needs else ("wav" if "audio" in self.needs else None)
            self._datasets[split] = AVSDataset(self.manifest, split, load_frames="frames" in self.needs,
                                               load_masks=False, audio=audio)
        return self._datasets[split]

    def load(self, split: str, unit: Unit) -> dict[str, Any]:
        row = self.rows(split)[unit.row]
        out: dict[str, Any] = {"key": unit.key, "clip": row["clip"], "num_frames": int(row["num_frames"])}
        if "text" in self.needs:
            out["text"] = text_of(row, self.text_field or "text")
        if self.needs & {"frames", "audio", "log_mel"}:
            item = self.dataset(split)[unit.row]
            for key in ("frames", "audio", "sample_rate", "log_mel"):
                if key in item:
                    out[key] = item[key]
        return out


def _batches(units: tuple[Unit, ...], size: int) -> list[tuple[Unit, ...]]:
    return [units[i:i + size] for i in range(0, len(units), size)]


def _prefetched(split: str, batches: list[tuple[Unit, ...]],
                loader: UnitLoader) -> Iterator[tuple[tuple[Unit, ...], list[dict[str, Any]]]]:
    """(units, their loaded inputs): the next batch is decoded in a thread while the encoder runs."""
    if not batches:
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(lambda b=batches[0]: [loader.load(split, u) for u in b])
        for current, nxt in zip(batches, batches[1:]):
            loaded = future.result()
            future = pool.submit(lambda b=nxt: [loader.load(split, u) for u in b])
            yield current, loaded
        yield batches[-1], future.result()


# ---- the driver -------------------------------------------------------------------------------
def extract(
    dataset: str | Any,
    encoder: str | Encoder,
    overrides: tuple[str, ...] | list[str] = (),
    *,
    split: str | None = None,
    home: str | Path | None = None,
    cache: str | Path | None = None,
    num_workers_total: int | None = None,
    worker_index: int | None = None,
    progress: bool = True,
    after_shard: Callable[[str], None] | None = None,
    device: str = "cpu",
) -> ExtractSummary:
    """Extract (or resume, or repair) the cache of ``encoder`` over ``dataset`` (a name or a
    Manifest); ``split=None`` or ``"all"`` means every split. Returns what was done. ``encoder``
    is a registry name (built with ``overrides``) or a built :class:`Encoder` (e.g. a probe's
    perturbed encoder, whose fingerprint names its own cache).

    ``device`` (auto|cpu|cuda|cuda:N|mps): where the encoder runs, batch by batch; each shard
    records it. An unavailable device fails before the cache is opened."""
    from avsbench_kit.data.prepare import load_manifest

    from avsbench_kit.device import resolve_device

    start = time.perf_counter()
    resolve_device(device)  # a missing GPU is the first error, before anything is read or written
    manifest = load_manifest(dataset, home) if isinstance(dataset, str) else dataset
    enc = encoder if isinstance(encoder, Encoder) else build_encoder(encoder, tuple(overrides))
    enc.set_device(device)
    index, total = resolve_workers(num_workers_total, worker_index)
    splits = [s for s in dict.fromkeys(manifest.df["split"].tolist())]
    if split not in (None, "", "all"):
        manifest.split(split)  # unknown split -> DataError listing the splits
        wanted = [split]
    else:
        wanted = splits
    plan = plan_shards(manifest, enc.key_by, enc.shard_size)
    text_field = resolve_text_field(manifest, enc.cfg) if "text" in enc.needs else None
    fc = open_cache(manifest, enc, cache_root(home, cache))
    fc.write_header(header_for(manifest, enc, plan, text_field))
    mine = [s for s in plan if s.split in wanted and s.index % total == index]
    remove_stale_temps(fc.path)  # a live worker's temps (same shard given twice) are kept

    summary = ExtractSummary(manifest.dataset, enc.registry_name, fc.path,
                             [s for s in splits if s in wanted], (index, total))
    summary.shards = len(mine)
    summary.units = sum(len(s.units) for s in mine)
    todo: list[tuple[ShardPlan, str | None]] = []
    for shard in mine:
        issue = fc.check_shard(shard.name)
        if issue is None:
            summary.reused += 1
        elif fc.sidecar(shard.name) is not None:
            todo.append((shard, issue))  # complete once, damaged since: repair
        else:
            todo.append((shard, None))
    if todo:
        loader = UnitLoader(manifest, enc, text_field)
        env = {**environment(), "device": enc.device_name}
        work = sum(len(s.units) for s, _ in todo)
        summary.units_computed = work
        with Steps(f"{enc.registry_name} {manifest.dataset}", len(todo), work, "samples", enabled=progress) as job:
            for shard, issue in todo:
                samples = []
                for units, inputs in _prefetched(shard.split, _batches(shard.units, enc.batch_size), loader):
                    for unit, arrays in zip(units, enc.encode(inputs)):
                        samples.append((unit.key, arrays, {"id": unit.ident, "split": shard.split}))
                    job.advance(len(units))
                record = fc.write_shard(shard, tar_bytes(samples), {"environment": env})
                summary.bytes_written += record["bytes"]
                if issue is None:
                    summary.computed.append(shard.name)
                else:
                    summary.repaired.append((shard.name, issue))
                job.step_done(f"shard {shard.name}", f"repaired ({issue})" if issue else "")
                if after_shard is not None:
                    after_shard(shard.name)
    idx = fc.refresh_index()
    summary.total_bytes = idx["total_bytes"]
    summary.complete = all(idx["splits"][s]["complete"] for s in summary.splits)
    summary.seconds = time.perf_counter() - start
    return summary
