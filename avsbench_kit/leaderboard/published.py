"""Reported numbers (``leaderboards/published.csv``) and the mapping from the papers' wording.

The spec table (``shared/spec/published_results.csv``) uses the papers' names ("AVSBench S4
(V1S)", "mIoU (J)", mIoU in %); the toolkit's table uses the toolkit's names (``avsbench-s4``,
``mIoU``, fractions in [0, 1] like the metric protocols return) and keeps the original text in
``source_*`` columns. Every reported number also carries the evaluation code it was computed with,
as far as the method notes tell (``protocol``): reported numbers never share a column with a
toolkit protocol.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from avsbench_kit.errors import DataError

COLUMNS = ("method", "backbone", "dataset", "split", "metric", "value", "source", "note",
           "protocol", "source_dataset", "source_split", "source_metric", "source_value")

DATASET_MAP = {
    "AVSBench S4 (V1S)": "avsbench-s4",
    "AVSBench MS3 (V1M)": "avsbench-ms3",
    "Ref-AVS (Ref-AVSBench)": "refavs",
    "RefCOCO (referring image segmentation)": "refcoco",
    "RefCOCO/+/g": "refcoco-all",
}
SPLIT_MAP = {
    "test": "test",
    "Seen": "test_s",
    "Unseen": "test_u",
    "Null": "test_n",
    "Mix (S+U)": "test_mix",
    "val (README 'reference score')": "val",
    "average": "average",
}
METRIC_MAP = {
    "mIoU (J)": "mIoU",
    "F-score": "F",
    "J&F": "J&F",
    "J": "J",
    "F": "F",
    "S": "S",
    "cIoU": "cIoU",
    "delta J vs best SAM2-based prior": "claim:delta_J_vs_best_sam2_prior",
    "delta J vs GAVS": "claim:delta_J_vs_gavs",
    "FPS drop when combined with visual prompts": "claim:fps_drop_with_visual_prompts",
}
#: Metrics the papers print in percent; the toolkit stores fractions. AVSBench F-score and
#: Ref-AVS S are already fractions in the papers; Ref-AVS F is in percent.
_PERCENT = {"mIoU", "J", "J&F", "cIoU", "claim:delta_J_vs_best_sam2_prior", "claim:delta_J_vs_gavs"}


def _percent(dataset: str, metric: str) -> bool:
    return metric in _PERCENT or (metric == "F" and dataset == "refavs")


#: Evaluation code per method, from the method notes (shared/spec/methods/*.md); first match wins.
_PROTOCOL_RULES: tuple[tuple[str, str], ...] = (
    ("TPAVI", "paper (official AVSBench code)"),
    ("ST-BAVA", "paper (ST-BAVA code: AVSBench metrics, sigmoid F, 224px)"),
    ("SAMA-AVS +", "paper (ST-BAVA code: AVSBench metrics, sigmoid F, 224px)"),
    ("SAM zero-shot", "paper (ST-BAVA code: AVSBench metrics, sigmoid F, 224px)"),
    ("GAVS / SAMA-AVS", "paper (AuralSAM2 measurement)"),
    ("SAMA-AVS", "paper (SAMA-AVS code: F without sigmoid, 1024px)"),
    ("GAVS (user", "user reproduction (GAVS code: AVSBench metrics at stored frame resolution)"),
    ("GAVS +", "paper (Ref-AVS official code)"),
    ("GAVS", "paper (GAVS code: AVSBench metrics at stored frame resolution)"),
    ("AV2T-SAM", "paper (AV2T-SAM code: F on raw logits, no sigmoid)"),
    ("EVF-", "paper (RefCOCO cIoU)"),
)
_REFAVS_PROTOCOL = "paper (Ref-AVS official code)"
_DEFAULT_PROTOCOL = "paper (own code, not verified)"


def protocol_for(method: str, dataset: str, metric: str) -> str:
    if metric.startswith("claim:"):
        return "paper (relative claim)"
    if method.startswith("AuralSAM2"):  # its released evaluation is registered as toolkit protocols
        return "refavs-auralsam2-v1" if dataset == "refavs" else "avsbench-auralsam2-v1"
    if dataset == "refavs":
        return _REFAVS_PROTOCOL
    for prefix, label in _PROTOCOL_RULES:
        if method.startswith(prefix):
            return label
    return _DEFAULT_PROTOCOL


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def convert_spec_row(row: dict[str, str], where: str = "") -> dict[str, str]:
    """One row of the spec table -> one row of ``published.csv`` (names and units normalised)."""
    try:
        dataset = DATASET_MAP[row["dataset"]]
        split = SPLIT_MAP[row["split"]]
        metric = METRIC_MAP[row["metric"]]
        raw = float(row["value"])
    except (KeyError, ValueError) as exc:
        raise DataError(
            f"{where}: no toolkit mapping for {exc} in row {row.get('method')!r}",
            hint="extend DATASET_MAP/SPLIT_MAP/METRIC_MAP in avsbench_kit/leaderboard/published.py",
        ) from None
    value = raw / 100.0 if _percent(dataset, metric) else raw
    return {
        "method": row["method"], "backbone": row["backbone"], "dataset": dataset, "split": split,
        "metric": metric, "value": _fmt(value), "source": row["source"], "note": row["note"],
        "protocol": protocol_for(row["method"], dataset, metric),
        "source_dataset": row["dataset"], "source_split": row["split"], "source_metric": row["metric"],
        "source_value": row["value"],
    }


def convert_spec(src: str | Path) -> str:
    """The full text of ``published.csv`` made from the spec table (deterministic)."""
    src = Path(src)
    with src.open(newline="", encoding="utf-8") as f:
        rows = [convert_spec_row(r, f"{src}:{i + 2}") for i, r in enumerate(csv.DictReader(f))]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def default_published_path() -> Path:
    """``leaderboards/published.csv`` of the checkout the toolkit runs from."""
    return Path(__file__).resolve().parents[2] / "leaderboards" / "published.csv"


@dataclass(frozen=True)
class PublishedRow:
    method: str
    backbone: str
    dataset: str
    split: str
    metric: str
    value: float
    source: str
    note: str
    protocol: str

    @property
    def is_claim(self) -> bool:
        """Relative claims (deltas, FPS drops) are kept in the CSV but not tabulated."""
        return self.metric.startswith("claim:")


def load_published(path: str | Path | None = None) -> list[PublishedRow]:
    """Read ``published.csv``; a missing column or a non-numeric value is a DataError naming the line."""
    path = Path(path) if path is not None else default_published_path()
    if not path.is_file():
        raise DataError(f"{path} does not exist", hint="pass --published FILE (the toolkit ships leaderboards/published.csv)")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        need = {"method", "backbone", "dataset", "split", "metric", "value", "source"}
        missing = need - set(reader.fieldnames or ())
        if missing:
            raise DataError(f"{path}: missing columns {sorted(missing)}", hint=f"expected columns {', '.join(COLUMNS)}")
        rows = []
        for i, r in enumerate(reader):
            try:
                value = float(r["value"])
            except (TypeError, ValueError):
                raise DataError(f"{path}:{i + 2}: value {r['value']!r} is not a number",
                                hint="values are plain decimals (fractions in [0, 1] for mIoU/J/F)") from None
            rows.append(PublishedRow(
                method=r["method"], backbone=r["backbone"], dataset=r["dataset"], split=r["split"],
                metric=r["metric"], value=value, source=r["source"], note=r.get("note") or "",
                protocol=r.get("protocol") or _DEFAULT_PROTOCOL,
            ))
    return rows
