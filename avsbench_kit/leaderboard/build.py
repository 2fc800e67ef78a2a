"""Leaderboard tables from run records (reproduced) and ``published.csv`` (reported).

One table per dataset and protocol: a column is always one (split, metric) under one protocol.
Reproduced numbers are grouped by toolkit protocol *and version*; reported numbers go to the
dataset's "reported" table, each row naming the evaluation code it came from — they never share
a column with a toolkit protocol. Seeds of one experiment (same baseline, seed-free config hash
and dataset fingerprint) collapse to one row with mean ± std.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable

from avsbench_kit.hashing import short
from avsbench_kit.leaderboard.published import PublishedRow
from avsbench_kit.runs.record import RunRecord

REPORTED = "reported"
#: Splits that select checkpoints or train models: never on a leaderboard.
HIDDEN_SPLITS = ("train", "val")
_SPLIT_ORDER = ("test", "test_s", "test_u", "test_mix", "test_n")
_METRIC_ORDER = ("mIoU", "J", "F", "J&F", "S", "reliance")


@dataclass(frozen=True)
class Cell:
    mean: float
    std: float | None = None  # sample std over seeds (ddof=1); None for a single number
    n: int = 1


@dataclass
class Row:
    kind: str  # "reported" | "reproduced"
    method: str
    detail: str  # backbone (reported) or config + fingerprints (reproduced)
    protocol: str  # the evaluation code (reported) or protocol@version (reproduced)
    source: str  # paper/table (reported) or run ids (reproduced)
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)
    note: str = ""
    run_ids: list[str] = field(default_factory=list)

    @property
    def seeds(self) -> int:
        return max((c.n for c in self.cells.values()), default=0)


@dataclass
class LeaderTable:
    dataset: str
    protocol: str  # toolkit protocol name, or "reported"
    version: str = ""
    columns: list[tuple[str, str]] = field(default_factory=list)  # (split, metric)
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    reported_under: str = ""  # reported numbers whose evaluation code is a registered toolkit protocol

    @property
    def title(self) -> str:
        if self.protocol == REPORTED and self.reported_under:
            return (f"{self.dataset} — reported under protocol {self.reported_under} v{self.version} "
                    "(the paper's own evaluation)")
        if self.protocol == REPORTED:
            return f"{self.dataset} — reported (each paper's own evaluation code, see 'protocol')"
        version = f" v{self.version}" if self.version else ""
        return f"{self.dataset} — protocol {self.protocol}{version} (reproduced)"


def mean_std(values: list[float]) -> Cell:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return Cell(mean, None, n)
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return Cell(mean, math.sqrt(var), n)


def _order(values: Iterable[str], preferred: tuple[str, ...]) -> list[str]:
    rank = {v: i for i, v in enumerate(preferred)}
    return sorted(set(values), key=lambda v: (rank.get(v, len(rank)), v))


def _columns(rows: list[Row]) -> list[tuple[str, str]]:
    keys = {k for r in rows for k in r.cells}
    splits = _order((s for s, _ in keys), _SPLIT_ORDER)
    metrics = _order((m for _, m in keys), _METRIC_ORDER)
    return [(s, m) for s in splits for m in metrics if (s, m) in keys]


def reproduced_rows(records: Iterable[RunRecord]) -> dict[tuple[str, str, str], list[Row]]:
    """``{(dataset, protocol, version): [Row]}`` from complete records, seeds grouped."""
    groups: dict[tuple, list[RunRecord]] = {}
    for r in records:
        if r.status == "complete" and r.metrics:
            groups.setdefault(r.group_key(), []).append(r)
    out: dict[tuple[str, str, str], list[Row]] = {}
    for (baseline, group_hash, dataset, fingerprint), runs in groups.items():
        runs = sorted(runs, key=lambda r: r.run_id)
        per_protocol: dict[tuple[str, str], dict[tuple[str, str], list[float]]] = {}
        for r in runs:
            for split, by_protocol in r.metrics.items():
                if split in HIDDEN_SPLITS:
                    continue
                for protocol, values in by_protocol.items():
                    version = r.protocols.get(protocol, "")
                    bucket = per_protocol.setdefault((protocol, version), {})
                    for metric, value in values.items():
                        bucket.setdefault((split, metric), []).append(float(value))
        _add_probe_cells(per_protocol, runs)
        first = runs[0]
        features = ", ".join(f"{k} {short(v, 8)}" for k, v in sorted(first.features.items()))
        shown = [o for o in first.overrides if not o.startswith("seed=")]
        detail = f"config {first.config_name or '-'}" + (f" {' '.join(shown)}" if shown else "")
        detail += f" #{short(group_hash, 8)}; data {short(fingerprint, 8)}"
        if features:
            detail += f"; features {features}"
        for (protocol, version), cells in per_protocol.items():
            row = Row(
                kind="reproduced", method=baseline, detail=detail,
                protocol=f"{protocol}@{version}" if version else protocol,
                source=", ".join(r.run_id for r in runs),
                cells={k: mean_std(v) for k, v in cells.items()},
                note=(f"mean ± std over {len(runs)} runs (seeds {sorted({r.seed for r in runs})})"
                      if len(runs) > 1 else "single run"),
                run_ids=[r.run_id for r in runs],
            )
            out.setdefault((dataset, protocol, version), []).append(row)
    return out


def _add_probe_cells(per_protocol: dict[tuple[str, str], dict[tuple[str, str], list[float]]],
                     runs: list[RunRecord]) -> None:
    """Probe figures (audio reliance, FPR and hJ of the negative-audio probes; ``avskit probe`` with
    default parameters, probe seed = the run's seed) as cells of the ``-clip-v1`` table: they are
    built from per-sample (per-clip) J, as that protocol."""
    from avsbench_kit.probes.record import summary

    cells: dict[tuple[str, str], list[float]] = {}
    for r in runs:
        for split, values in summary(r.probes, seed=r.seed).items():
            if split in HIDDEN_SPLITS:
                continue
            for metric, value in values.items():
                cells.setdefault((split, metric), []).append(value)
    if not cells or not per_protocol:
        return
    keys = sorted(per_protocol)
    target = next((k for k in keys if k[0].endswith("-clip-v1")), keys[0])
    per_protocol[target].update(cells)


def reported_rows(published: Iterable[PublishedRow]) -> dict[tuple[str, str], list[Row]]:
    """``{(dataset, toolkit protocol or ""): [Row]}``: one row per (method, backbone, evaluation
    code), in file order. Numbers produced by a paper's evaluation that the toolkit registers as a
    protocol (e.g. ``avsbench-auralsam2-v1``) get their own table."""
    from avsbench_kit.metrics.protocols import PROTOCOLS

    toolkit = set(PROTOCOLS.names())
    out: dict[tuple[str, str], list[Row]] = {}
    index: dict[tuple[str, str, str, str], Row] = {}
    sources: dict[tuple[str, str, str, str], list[str]] = {}
    for p in published:
        if p.is_claim:
            continue
        key = (p.dataset, p.method, p.backbone, p.protocol)
        row = index.get(key)
        if row is None:
            row = index[key] = Row(kind=REPORTED, method=p.method, detail=p.backbone, protocol=p.protocol,
                                   source=p.source, note=p.note)
            sources[key] = [p.source]
            out.setdefault((p.dataset, p.protocol if p.protocol in toolkit else ""), []).append(row)
        elif p.source not in sources[key]:
            sources[key].append(p.source)
            row.source = "; ".join(sources[key])
        cell = (p.split, p.metric)
        if cell in row.cells:
            row.note = (row.note + "; " if row.note else "") + f"duplicate {p.split}/{p.metric} ignored ({p.value})"
            continue
        row.cells[cell] = Cell(p.value)
    return out


def build_tables(records: Iterable[RunRecord], published: Iterable[PublishedRow], *,
                 dataset: str | None = None, datasets_known: Iterable[str] | None = None) -> list[LeaderTable]:
    """All leaderboard tables (optionally for one dataset).

    Reported rows of datasets the toolkit does not know (e.g. RefCOCO context numbers) are only
    shown when that dataset is asked for explicitly.
    """
    from avsbench_kit.metrics.protocols import PROTOCOLS

    known = set(datasets_known) if datasets_known is not None else None
    tables: list[LeaderTable] = []
    for (ds, protocol, version), rows in reproduced_rows(records).items():
        rows.sort(key=lambda r: r.method)
        tables.append(LeaderTable(ds, protocol, version, _columns(rows), rows))
    for (ds, under), rows in reported_rows(published).items():
        if known is not None and ds not in known and ds != dataset:
            continue
        version = PROTOCOLS.get(under).version if under else ""
        table = LeaderTable(ds, REPORTED, version, _columns(rows), rows, reported_under=under)
        table.notes.append("reported numbers are copied from the papers (source column); they are never "
                           "in a column with a toolkit protocol" if not under else
                           f"reported numbers computed by the paper's own code, which the toolkit registers as "
                           f"{under}: compare them only with reproduced runs scored under {under}")
        tables.append(table)
    if dataset is not None:
        tables = [t for t in tables if t.dataset == dataset]
    order = {name: i for i, name in enumerate(known or ())}

    def key(t: LeaderTable) -> tuple:
        official = 0 if not t.protocol.endswith("-clip-v1") else 1
        return (order.get(t.dataset, len(order)), t.dataset, 2 if t.protocol == REPORTED else official,
                t.protocol, t.version)

    return sorted(tables, key=key)
