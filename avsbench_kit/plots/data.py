"""What the plots and the site show, as plain data (no matplotlib here, so it is cheap to test).

Every function reads run records, leaderboard tables or a run's files and returns small typed
rows; :mod:`avsbench_kit.plots.figures` draws them and :mod:`avsbench_kit.site` tabulates them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from avsbench_kit.leaderboard.build import REPORTED, LeaderTable

#: Reported methods (published.csv ``method`` prefixes) that a toolkit baseline re-implements:
#: the pairs of the reproduced-vs-reported scatter. ``avskit plot --match B=PREFIX`` adds more.
REPORTED_AS: dict[str, tuple[str, ...]] = {
    "av2t": ("AV2T-SAM",),
}
#: The headline metric per metric family: what bars, scatter and categories plot first.
HEADLINE = ("mIoU", "J&F", "J", "F", "S")


def protocol_label(name: str, version: str = "") -> str:
    """``avsbench-v1 v1.0``: a protocol is never named without its version."""
    return f"{name} v{version}" if version else name


# -- leaderboard bars --------------------------------------------------------------------------
@dataclass
class Bar:
    label: str  # the row: baseline + config
    column: str  # "test mIoU"
    mean: float
    std: float | None
    n: int


def bar_rows(table: LeaderTable, max_columns: int = 6) -> list[Bar]:
    """Mean ± std over seeds of every reproduced row of ``table`` (its first ``max_columns`` columns)."""
    if table.protocol == REPORTED:
        raise ValueError("bars show reproduced numbers only (reported numbers have no seeds)")
    out = []
    for row in table.rows:
        label = row_label(row.method, row.detail)
        for split, metric in table.columns[:max_columns]:
            cell = row.cells.get((split, metric))
            if cell is not None and math.isfinite(cell.mean):
                out.append(Bar(label, f"{split} {metric}", cell.mean, cell.std, cell.n))
    return out


def row_label(method: str, detail: str) -> str:
    """``av2t [cpu-small train.epochs=2]``: the method and the config part of a reproduced row."""
    config = detail.split(" #", 1)[0].removeprefix("config ").strip()
    return f"{method} [{config}]" if config and config != "-" else method


# -- reproduced vs reported --------------------------------------------------------------------
@dataclass
class Pair:
    dataset: str
    split: str
    metric: str
    reproduced_label: str
    reproduced: float
    reproduced_std: float | None
    reported_label: str
    reported: float
    protocol: str  # the toolkit protocol of the reproduced number (with version)
    reported_protocol: str  # the evaluation code of the reported number


def scatter_pairs(tables: list[LeaderTable], match: dict[str, tuple[str, ...]] | None = None) -> list[Pair]:
    """Every (reproduced, reported) number of one method on the same dataset, split and metric.

    Only official toolkit protocols are paired (not ``-clip-v1`` variants): they are the ones that
    reproduce the papers' evaluation. The two still come from different evaluation code; the
    pair says which.
    """
    match = {**REPORTED_AS, **(match or {})}
    reported = {t.dataset: t for t in tables if t.protocol == REPORTED}
    out = []
    for t in tables:
        if t.protocol == REPORTED or t.protocol.endswith("-clip-v1") or t.dataset not in reported:
            continue
        for row in t.rows:
            prefixes = match.get(row.method, ())
            for rep in reported[t.dataset].rows:
                if not any(rep.method.startswith(p) for p in prefixes):
                    continue
                for key, cell in row.cells.items():
                    other = rep.cells.get(key)
                    if other is None:
                        continue
                    out.append(Pair(t.dataset, key[0], key[1], row_label(row.method, row.detail), cell.mean,
                                    cell.std, f"{rep.method} ({rep.detail})", other.mean,
                                    protocol_label(t.protocol, t.version), rep.protocol))
    return out


# -- probes ------------------------------------------------------------------------------------
@dataclass
class ProbeResult:
    probe: str
    version: str
    seed: str
    values: dict[str, float] = field(default_factory=dict)  # flat "split/protocol/metric" -> value


def _flatten(obj: Any, prefix: str = "") -> Iterable[tuple[str, float]]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _flatten(v, f"{prefix}/{k}" if prefix else str(k))
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield prefix, float(obj)


def probe_results(raw: dict[str, Any]) -> list[ProbeResult]:
    """The ``probes`` section of a raw record, whatever its nesting: a mapping probe -> result or
    a list of results with a ``name``/``probe`` key; numbers anywhere below become flat keys."""
    section = raw.get("probes")
    if isinstance(section, dict):
        entries = [(str(v.get("name") or v.get("probe") or k), v) for k, v in section.items() if isinstance(v, dict)]
    elif isinstance(section, list):
        entries = [(str(v.get("name") or v.get("probe") or f"probe {i + 1}"), v)
                   for i, v in enumerate(section) if isinstance(v, dict)]
    else:
        return []
    out = []
    for name, entry in entries:
        meta = {"name", "probe", "version", "seed"}
        values = dict(_flatten({k: v for k, v in entry.items() if k not in meta}))
        if "fpr" in entry and isinstance(entry.get("combined"), dict):  # an `avskit probe` negative entry
            split = str(entry.get("split", "test"))
            values[f"{split}/J"] = float(entry["combined"]["J_positive"])
            values[f"{split}/FPR"] = float(entry["fpr"])
        out.append(ProbeResult(name, str(entry.get("version", "")), str(entry.get("seed", "")), values))
    return out


@dataclass
class JFprPoint:
    probe: str
    where: str  # the key path above J/FPR (e.g. "test/avsbench-v1")
    j: float
    fpr: float


_J_NAMES = ("j", "miou", "j_positive", "positive_j")
_FPR_NAMES = ("fpr", "false_positive_rate")


def j_fpr_points(results: list[ProbeResult]) -> list[JFprPoint]:
    """(J, FPR) of every probe result that reports both under the same key path."""
    out = []
    for r in results:
        by_prefix: dict[str, dict[str, float]] = {}
        for key, value in r.values.items():
            prefix, _, leaf = key.rpartition("/")
            by_prefix.setdefault(prefix, {})[leaf.lower()] = value
        for prefix, leaves in by_prefix.items():
            j = next((leaves[n] for n in _J_NAMES if n in leaves), None)
            fpr = next((leaves[n] for n in _FPR_NAMES if n in leaves), None)
            if j is not None and fpr is not None:
                out.append(JFprPoint(r.probe + (f" v{r.version}" if r.version else ""), prefix, j, fpr))
    return out


# -- per-category ------------------------------------------------------------------------------
def j_column(per_sample) -> str | None:
    """The per-sample J column: ``mIoU`` (AVSBench family) or ``J`` (Ref-AVS)."""
    for name in ("J", "mIoU"):
        if name in per_sample.columns:
            return name
    return None


def category_table(per_sample, manifest_df):
    """Per split and category: samples, mean per-sample J (and F): the ``-clip-v1`` aggregation
    restricted to each category. ``manifest_df`` gives each ``sample_key``'s category."""
    import pandas as pd

    jcol = j_column(per_sample)
    if jcol is None or "sample_key" not in per_sample.columns:
        return pd.DataFrame(columns=["split", "category", "samples", "J", "F"])
    cats = manifest_df[["sample_key", "category"]].drop_duplicates("sample_key")
    df = per_sample.merge(cats, on="sample_key", how="left")
    df["category"] = df["category"].fillna("").astype(str).replace("", "(none)")
    if "split" not in df.columns:
        df["split"] = ""
    agg = {"samples": ("sample_key", "size"), "J": (jcol, "mean")}
    if "F" in df.columns:
        agg["F"] = ("F", "mean")
    out = df.groupby(["split", "category"], sort=True).agg(**agg).reset_index()
    return out.sort_values(["split", "J"], ascending=[True, False], kind="stable").reset_index(drop=True)


# -- curves ------------------------------------------------------------------------------------
@dataclass
class Curves:
    epochs: list[int]
    train_loss: list[float]
    val_epochs: list[int]
    val_values: list[float]
    val_label: str  # "val mIoU (avsbench-v1 v1.0)"
    components: dict[str, list[float]] = field(default_factory=dict)  # loss name -> per-epoch value

    @property
    def empty(self) -> bool:
        return not self.train_loss and not self.val_values


def loss_components(training: dict[str, Any]) -> dict[str, list[float]]:
    """Per-epoch loss components if the trainer recorded them: ``{name: [per epoch]}`` or a list
    of per-epoch ``{name: value}`` dicts under ``loss_components`` (either shape is accepted).
    ``total`` is left out: it is the training loss curve itself. A single component (only the
    total) is no breakdown, so nothing is returned then."""
    raw = training.get("loss_components")
    out: dict[str, list[float]] = {}
    if isinstance(raw, dict):
        out = {str(k): [float(x) for x in v] for k, v in raw.items() if isinstance(v, list)}
    elif isinstance(raw, list):
        for i, epoch in enumerate(raw):
            if isinstance(epoch, dict):
                for k, v in epoch.items():
                    out.setdefault(str(k), [math.nan] * i).append(float(v))
            for v in out.values():  # a component missing in an epoch is a gap, not a shift
                v.extend([math.nan] * (i + 1 - len(v)))
    out.pop("total", None)
    return out if len(out) > 1 else {}


def curves(record) -> Curves:
    """Training loss per epoch and the validation metric that selected the checkpoint."""
    training = record.training or {}
    losses = [float(x) for x in training.get("epoch_losses") or []]
    val = [v for v in training.get("val_history") or [] if isinstance(v, dict)]
    sel = record.selection or {}
    label = "val"
    if sel.get("metric"):
        version = record.protocols.get(sel.get("protocol", ""), "")
        label = f"{sel.get('split', 'val')} {sel['metric']} ({protocol_label(sel.get('protocol', ''), version)})"
    return Curves(list(range(1, len(losses) + 1)), losses, [int(v["epoch"]) for v in val],
                  [float(v["value"]) for v in val], label, loss_components(training))


# -- gallery -----------------------------------------------------------------------------------
@dataclass
class GalleryItem:
    split: str
    key: str
    frame: int
    category: str
    j: float | None  # the sample's per-sample J, when known
    image: Any  # uint8 [H, W, 3]
    gt: Any  # bool [h, w]
    pred: Any  # float logits [h', w']


def saved_prediction_keys(run_dir: Path, split: str) -> list[str]:
    root = Path(run_dir) / "predictions" / split
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def gallery_items(run_dir: Path, manifest, split: str, per_sample=None, count: int = 6) -> list[GalleryItem]:
    """Frames, GT and saved logits of ``count`` samples of ``split``: the best, the worst and the
    middle by per-sample J when it is known (so the gallery shows successes and failures)."""
    import numpy as np

    from avsbench_kit.data.loaders import AVSDataset

    keys = saved_prediction_keys(run_dir, split)
    if not keys:
        return []
    rows = {r["sample_key"]: i for i, r in enumerate(manifest.rows(split))}
    keys = [k for k in keys if k in rows]
    scores: dict[str, float] = {}
    if per_sample is not None and j_column(per_sample) is not None:
        part = per_sample[per_sample["split"] == split] if "split" in per_sample.columns else per_sample
        scores = {k: float(v) for k, v in zip(part["sample_key"], part[j_column(per_sample)]) if math.isfinite(v)}
    chosen = pick_spread(keys, scores, count)
    ds = AVSDataset(manifest, split, load_frames=True, load_masks=True, audio=None)
    out = []
    for key in chosen:
        item = ds[rows[key]]
        files = sorted((Path(run_dir) / "predictions" / split / key).glob("*.npy"), key=lambda p: int(p.stem))
        if not files:
            continue
        frame = int(files[len(files) // 2].stem)  # a middle annotated frame
        pred = np.load(files[len(files) // 2]).astype(np.float32)
        if pred.ndim != 2:  # per-class logits: not a binary mask to outline
            continue
        image = (item["frames"][frame].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        gt = item["masks"][frame].numpy() > 0
        out.append(GalleryItem(split, key, frame, str(item.get("category") or ""), scores.get(key), image, gt, pred))
    return out


def pick_spread(keys: list[str], scores: dict[str, float], count: int) -> list[str]:
    """``count`` keys spread over the score range (best first); in key order without scores."""
    scored = sorted((k for k in keys if k in scores), key=lambda k: (-scores[k], k))
    if len(scored) < count:
        return (scored + [k for k in keys if k not in scores])[:count]
    if count <= 1:
        return scored[:count]
    step = (len(scored) - 1) / (count - 1)
    return [scored[round(i * step)] for i in range(count)]


def read_raw_record(path: Path) -> dict[str, Any]:
    """The record as written (sections the typed record does not know, e.g. ``probes``, included)."""
    try:
        data = json.loads(Path(path).read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
