"""The regression gate: compare a run's metrics with stored golden values.

A golden file (``leaderboards/golden/NAME.json``) holds, per flat metric key
(``split/protocol/metric``), the value, an absolute tolerance and a direction (``higher`` or
``lower`` is better), plus how it was produced (run id, config, fingerprints, toolkit version, git
SHA, date). Worse beyond tolerance fails; better beyond tolerance passes but asks for the golden to
be refreshed (``--update``), so the gate keeps guarding the new level. With ``strict`` (CI) a
difference beyond tolerance in *either* direction fails: a bug that inflates a score must not land.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avsbench_kit.atomic import write_json
from avsbench_kit.errors import AvsKitError, DataError
from avsbench_kit.runs.record import RunRecord, iso, utc_now

GOLDEN_SCHEMA = 1
DEFAULT_TOLERANCE = 0.02  # absolute, on fractions: 2 points of mIoU
LOWER_IS_BETTER = frozenset({"S", "fpr", "FPR", "loss"})
#: Provenance fields that must agree for the numbers to be comparable at all.
PROVENANCE_KEYS = ("baseline", "dataset", "dataset_fingerprint", "config_hash", "features", "protocols")

OK, REGRESSED, IMPROVED, MISSING, NEW = "ok", "regressed", "improved", "missing", "new"


class RegressionError(AvsKitError):
    """The gate failed: a metric got worse beyond tolerance, is missing, or is not comparable."""

    exit_code = 1


def direction_for(metric_key: str) -> str:
    metric = metric_key.rsplit("/", 1)[-1]
    return "lower" if metric in LOWER_IS_BETTER or metric.startswith("FPR ") else "higher"


def gated_values(record: RunRecord) -> dict[str, float]:
    """The numbers a golden can hold: the run's metrics (``split/protocol/metric``) and, once
    `avskit probe` has run, its probe figures at the run's own seed with default parameters
    (``probes/split/reliance``, ``probes/split/FPR silent``, ...: the leaderboard's columns)."""
    from avsbench_kit.probes.record import summary

    values = record.flat_metrics()
    for split, cells in summary(record.probes or [], seed=record.seed).items():
        values.update({f"probes/{split}/{name}": float(v) for name, v in cells.items()})
    return values


@dataclass
class MetricDiff:
    key: str
    golden: float | None
    actual: float | None
    tolerance: float
    direction: str
    status: str

    @property
    def delta(self) -> float | None:
        if self.golden is None or self.actual is None:
            return None
        return self.actual - self.golden


@dataclass
class RegressResult:
    run_id: str
    diffs: list[MetricDiff] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)  # provenance fields that differ
    ignore_provenance: bool = False
    strict: bool = False  # an improvement beyond tolerance fails too

    @property
    def regressed(self) -> list[MetricDiff]:
        failing = (REGRESSED, MISSING, IMPROVED) if self.strict else (REGRESSED, MISSING)
        return [d for d in self.diffs if d.status in failing]

    @property
    def improved(self) -> list[MetricDiff]:
        return [d for d in self.diffs if d.status == IMPROVED]

    @property
    def passed(self) -> bool:
        return not self.regressed and (self.ignore_provenance or not self.mismatches)


def provenance(record: RunRecord) -> dict[str, Any]:
    """What a golden records about the run it was made from."""
    return {
        "run_id": record.run_id,
        "baseline": record.baseline,
        "config_name": record.config_name,
        "dataset": record.dataset,
        "dataset_fingerprint": record.dataset_fingerprint,
        "config": record.config,
        "config_hash": record.config_hash,
        "seed": record.seed,
        "features": record.features,
        "protocols": record.protocols,
        "toolkit_version": record.toolkit_version,
        "git_sha": record.git_sha,
        "run_finished_utc": record.finished_utc,
        "hardware": {k: record.hardware.get(k) for k in ("device", "cpu_count", "torch_threads", "torch", "machine")
                     if k in record.hardware},
    }


def load_golden(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"golden file {path} does not exist",
                        hint="create it from a run with `avskit regress --golden FILE RUN_ID --update`")
    try:
        golden = json.loads(path.read_text("utf-8"))
        metrics = golden["metrics"]
        for key, spec in metrics.items():
            float(spec["value"]), float(spec["tolerance"])
            if spec.get("direction", "higher") not in ("higher", "lower"):
                raise ValueError(f"{key}: direction must be 'higher' or 'lower'")
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not a golden file ({exc})",
                        hint="regenerate it with `avskit regress --golden FILE RUN_ID --update`") from None
    return golden


def compare(golden: dict[str, Any], record: RunRecord, *, ignore_provenance: bool = False,
            strict: bool = False) -> RegressResult:
    """Diff every golden metric against the run (and list the run's metrics the golden lacks)."""
    actual = gated_values(record)
    result = RegressResult(record.run_id, ignore_provenance=ignore_provenance, strict=strict)
    for key, spec in sorted(golden["metrics"].items()):
        value, tol = float(spec["value"]), float(spec["tolerance"])
        direction = spec.get("direction", direction_for(key))
        got = actual.get(key)
        if got is None:
            result.diffs.append(MetricDiff(key, value, None, tol, direction, MISSING))
            continue
        gain = (got - value) if direction == "higher" else (value - got)
        status = REGRESSED if gain < -tol else IMPROVED if gain > tol else OK
        result.diffs.append(MetricDiff(key, value, got, tol, direction, status))
    for key in sorted(set(actual) - set(golden["metrics"])):
        result.diffs.append(MetricDiff(key, None, actual[key], DEFAULT_TOLERANCE, direction_for(key), NEW))
    produced = golden.get("produced_by", {})
    mine = provenance(record)
    for key in PROVENANCE_KEYS:
        if key in produced and produced[key] != mine[key]:
            result.mismatches.append(key)
    return result


def golden_from_record(record: RunRecord, previous: dict[str, Any] | None = None, *,
                       name: str = "", default_tolerance: float = DEFAULT_TOLERANCE,
                       tolerance: float | None = None) -> dict[str, Any]:
    """A golden made from a run; tolerances and directions of an existing golden are kept
    (``tolerance`` given: every metric gets it)."""
    old = (previous or {}).get("metrics", {})
    metrics = {}
    for key, value in gated_values(record).items():
        spec = old.get(key, {})
        metrics[key] = {
            "value": value,
            "tolerance": float(tolerance if tolerance is not None else spec.get("tolerance", default_tolerance)),
            "direction": spec.get("direction", direction_for(key)),
        }
    return {
        "schema_version": GOLDEN_SCHEMA,
        "name": name or (previous or {}).get("name", ""),
        "description": (previous or {}).get("description", ""),
        "updated_utc": iso(utc_now()),
        "produced_by": provenance(record),
        "metrics": metrics,
    }


def save_golden(path: str | Path, golden: dict[str, Any]) -> None:
    write_json(path, golden)
