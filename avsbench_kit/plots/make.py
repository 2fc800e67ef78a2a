"""Which plots exist for a dataset or a run, written as PNG + SVG (used by `avskit plot` and the site).

A plot is only made when its data exists (no empty axes): bars need reproduced rows, the scatter
needs a baseline with reported numbers of the method it re-implements, J-vs-FPR needs a record
with a ``probes`` section, the gallery needs ``save_predictions=true``. What was skipped is said
in ``notes`` so the CLI can tell the user why a plot is missing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avsbench_kit.leaderboard.build import REPORTED, LeaderTable
from avsbench_kit.plots import data as D

DATASET_KINDS = ("bars", "scatter")
RUN_KINDS = ("curves", "categories", "probes", "gallery")
KINDS = DATASET_KINDS + RUN_KINDS


@dataclass
class PlotFile:
    kind: str
    title: str
    png: Path
    svg: Path


@dataclass
class PlotSet:
    files: list[PlotFile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # problems (e.g. the run's data is not prepared)
    missing: list[str] = field(default_factory=list)  # plots without data (e.g. an eval-only run has no curves)


def slug(text: str) -> str:
    """A file-name-safe form of a dataset, protocol or run id."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def table_stem(t: LeaderTable) -> str:
    """``avsbench-s4-avsbench-v1-1.0``: names a table's plot file and its element id on the site."""
    return "-".join(slug(x) for x in (t.dataset, t.protocol, t.version) if x)


def _save(fig, out: Path, stem: str, kind: str, title: str, into: PlotSet) -> None:
    from avsbench_kit.plots.figures import save

    png, svg = save(fig, str(out / stem))
    into.files.append(PlotFile(kind, title, Path(png), Path(svg)))


def dataset_plots(tables: list[LeaderTable], out: Path, kinds=DATASET_KINDS,
                  match: dict[str, tuple[str, ...]] | None = None) -> PlotSet:
    """Seed-error bars per reproduced table and the reproduced-vs-reported scatter, per dataset."""
    from avsbench_kit.plots import figures as F

    result = PlotSet()
    if "bars" in kinds:
        for t in tables:
            if t.protocol == REPORTED:
                continue
            bars = D.bar_rows(t)
            if not bars:
                continue
            proto = D.protocol_label(t.protocol, t.version)
            title = f"{t.dataset}: reproduced, protocol {proto}"
            _save(F.metric_bars(bars, title), out, f"bars-{table_stem(t)}", "bars", title, result)
    if "scatter" in kinds:
        for ds in dict.fromkeys(t.dataset for t in tables):
            pairs = D.scatter_pairs([t for t in tables if t.dataset == ds], match)
            if not pairs:
                result.missing.append(f"{ds}: no reproduced-vs-reported pairs (a reproduced baseline and a reported "
                                    f"number of the method it re-implements on the same split and metric)")
                continue
            protos = ", ".join(sorted({p.protocol for p in pairs}))
            title = f"{ds}: reproduced ({protos}) vs reported (papers' own code)"
            _save(F.reproduced_vs_reported(pairs, title), out, f"scatter-{slug(ds)}", "scatter", title, result)
    return result


def _clip_protocol(record) -> str:
    """The batch-independent protocol of the run (what a per-category mean of per-sample J is)."""
    for name, version in sorted(record.protocols.items()):
        if name.endswith("-clip-v1"):
            return D.protocol_label(name, version)
    return "per-sample J"


def run_plots(record, run_dir: Path, out: Path, kinds=RUN_KINDS, home: Any = None,
              manifests: dict[str, Any] | None = None, raw: dict[str, Any] | None = None) -> PlotSet:
    """Training curves, per-category J, J vs FPR (probes) and the mask gallery of one run."""
    from avsbench_kit.plots import figures as F

    result = PlotSet()
    rid = record.run_id
    head = f"{record.baseline} on {record.dataset}, seed {record.seed} ({rid})"
    if "curves" in kinds:
        c = D.curves(record)
        if c.empty:
            result.missing.append(f"{rid}: no training curves (an eval-only run)")
        else:
            title = f"training: {head}"
            _save(F.training_curves(c, title), out, f"curves-{slug(rid)}", "curves", title, result)
    if "probes" in kinds:
        raw = raw if raw is not None else D.read_raw_record(Path(run_dir) / "record.json")
        points = D.j_fpr_points(D.probe_results(raw))
        if points:
            title = f"probes, J vs FPR: {head}"
            _save(F.j_vs_fpr(points, title), out, f"probes-{slug(rid)}", "probes", title, result)
        else:
            result.missing.append(f"{rid}: no probe results with J and FPR (run `avskit probe {rid}`)")
    per_sample, manifest = None, None
    if {"categories", "gallery"} & set(kinds):
        per_sample = _per_sample(run_dir)
        manifest, why = run_manifest(record, home, manifests)
        if manifest is None:
            result.notes.append(f"{rid}: no per-category J or gallery: {why}")
    if "categories" in kinds and per_sample is not None and manifest is not None:
        table = D.category_table(per_sample, manifest.df)
        if len(table):
            title = f"per-category J ({_clip_protocol(record)} within each category)\n{head}"
            _save(F.per_category(table, title), out, f"categories-{slug(rid)}", "categories", title, result)
    if "gallery" in kinds and manifest is not None and getattr(record, "task", "") == "avss":
        result.missing.append(f"{rid}: no gallery for AVSS runs yet (it draws binary masks; AVSS predictions are "
                              f"per-class)")
    elif "gallery" in kinds and manifest is not None:
        splits = [p.name for p in sorted((Path(run_dir) / "predictions").glob("*")) if p.is_dir()]
        if not splits:
            result.missing.append(f"{rid}: no saved predictions (run with save_predictions=true for a gallery)")
        for split in splits:
            items = D.gallery_items(Path(run_dir), manifest, split, per_sample)
            if items:
                title = f"{split}: frame | GT (cyan outline) | prediction, logit > 0 (magenta outline)\n{head}"
                _save(F.gallery(items, title), out, f"gallery-{slug(rid)}-{slug(split)}", "gallery", title, result)
    return result


def _per_sample(run_dir: Path):
    import pandas as pd

    path = Path(run_dir) / "per_sample.parquet"
    return pd.read_parquet(path) if path.is_file() else None


def run_manifest(record, home: Any, cache: dict[str, Any] | None = None) -> tuple[Any, str]:
    """(the prepared manifest the run was evaluated on, "") or (None, why not): absent, or the
    prepared data is not the data the run used. ``cache`` keeps one loaded manifest per dataset."""
    from avsbench_kit.data.prepare import load_manifest
    from avsbench_kit.errors import AvsKitError

    cache = {} if cache is None else cache
    if record.dataset not in cache:
        try:
            cache[record.dataset] = (load_manifest(record.dataset, home), "")
        except AvsKitError as exc:
            cache[record.dataset] = (None, f"the prepared {record.dataset} manifest is needed ({exc.message})")
    manifest, why = cache[record.dataset]
    if manifest is not None and record.dataset_fingerprint and manifest.fingerprint != record.dataset_fingerprint:
        return None, (f"the prepared {record.dataset} (fingerprint {manifest.fingerprint[:8]}) is not the data "
                      f"the run used ({record.dataset_fingerprint[:8]})")
    return manifest, why
