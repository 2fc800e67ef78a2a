"""The run record: everything needed to trust (or refuse to compare) a reproduced number.

A record is plain JSON (``record.json``) so it can be read without the toolkit; this module gives
it a typed shape, a schema version and the helpers the leaderboard and the regression gate share
(flat metric keys, seed-free grouping).
"""

from __future__ import annotations

import copy
import datetime as _dt
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Iterator

from avsbench_kit.hashing import sha256_obj, short

SCHEMA_VERSION = 2  # 2: model (describe()), init_from, probes; v1 records still load
STATUSES = ("running", "complete", "failed")
#: Config keys that differ between the seeds of one experiment (removed before grouping).
SEED_KEYS = ("seed",)


def utc_now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def iso(t: _dt.datetime) -> str:
    return t.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_run_id(config_hash: str, seed: int, now: _dt.datetime | None = None) -> str:
    """``20251123T185301Z-3f9a2c1b-s0``: sorts by UTC start time, names the config and the seed."""
    stamp = (now or utc_now()).astimezone(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{short(config_hash, 8)}-s{int(seed)}"


def seedless_hash(config: dict[str, Any]) -> str:
    """Hash of a resolved config without its seed: runs that differ only by seed share it."""
    cfg = copy.deepcopy(config)
    for key in SEED_KEYS:
        cfg.pop(key, None)
    return sha256_obj(cfg)


def metric_key(split: str, protocol: str, metric: str) -> str:
    """The flat name of one number: ``test/avsbench-v1/mIoU``."""
    return f"{split}/{protocol}/{metric}"


def split_metric_key(key: str) -> tuple[str, str, str]:
    split, protocol, metric = key.split("/", 2)
    return split, protocol, metric


@dataclass
class RunRecord:
    """One train/evaluate run. ``metrics[split][protocol][metric] = value``."""

    run_id: str
    baseline: str
    dataset: str
    seed: int
    config: dict[str, Any]
    config_hash: str
    status: str = "running"
    config_name: str = ""
    overrides: list[str] = field(default_factory=list)  # as typed (display only; not hashed)
    mode: str = "train+eval"
    task: str = ""
    schema_version: int = SCHEMA_VERSION
    group_hash: str = ""
    dataset_fingerprint: str = ""
    features: dict[str, str] = field(default_factory=dict)
    protocols: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    selection: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)  # Baseline.describe(): backbone, checkpoints, counts
    init_from: dict[str, Any] = field(default_factory=dict)  # warm start: source run id, config hash, fingerprint
    hardware: dict[str, Any] = field(default_factory=dict)
    toolkit_version: str = ""
    git_sha: str = ""
    created_utc: str = ""
    finished_utc: str = ""
    wall_time_s: float = 0.0
    files: dict[str, str] = field(default_factory=dict)
    error: str = ""
    notes: list[str] = field(default_factory=list)
    #: input-probe results of the selected checkpoint (``avskit probe``; avsbench_kit.probes.record)
    probes: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} is not one of {STATUSES}")
        if not self.group_hash:
            self.group_hash = seedless_hash(self.config)

    # -- (de)serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunRecord":
        """Build from JSON; unknown keys are kept out, a newer schema is refused (ValueError)."""
        version = data.get("schema_version", 0)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise ValueError(f"schema_version {version!r} is newer than this toolkit's ({SCHEMA_VERSION})")
        names = {f.name for f in fields(cls)}
        missing = [n for n in ("run_id", "baseline", "dataset", "seed", "config", "config_hash") if n not in data]
        if missing:
            raise ValueError(f"missing fields {missing}")
        return cls(**{k: v for k, v in data.items() if k in names})

    # -- metrics -------------------------------------------------------------------------------
    def set_metrics(self, split: str, protocol: str, values: dict[str, float], version: str = "") -> None:
        self.metrics.setdefault(split, {})[protocol] = {k: float(v) for k, v in values.items()}
        if version:
            self.protocols[protocol] = version

    def flat_metrics(self) -> dict[str, float]:
        """``{"test/avsbench-v1/mIoU": 0.71, ...}``: the form goldens and diffs use."""
        return dict(iter_metrics(self.metrics))

    @property
    def label(self) -> str:
        """How the leaderboard names the experiment: baseline and config preset."""
        return f"{self.baseline} [{self.config_name}]" if self.config_name else self.baseline

    def group_key(self) -> tuple[str, str, str, str]:
        """Runs that are seeds of one experiment: same baseline, seed-free config, dataset data."""
        return (self.baseline, self.group_hash, self.dataset, self.dataset_fingerprint)


def iter_metrics(metrics: dict[str, dict[str, dict[str, float]]]) -> Iterator[tuple[str, float]]:
    for split in sorted(metrics):
        for protocol in sorted(metrics[split]):
            for metric, value in metrics[split][protocol].items():
                yield metric_key(split, protocol, metric), float(value)
