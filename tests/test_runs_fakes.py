"""Shared fakes (no tests here) for the runs/leaderboard/regress tests: records written into a store."""

from __future__ import annotations

import copy
import datetime as dt

from avsbench_kit.config import config_hash
from avsbench_kit.runs.record import RunRecord, new_run_id
from avsbench_kit.runs.store import RunStore

T0 = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)


def make_record(store: RunStore, *, baseline: str = "av2t", dataset: str = "synth-s4", seed: int = 0,
                metrics: dict | None = None, minutes: int = 0, status: str = "complete",
                fingerprint: str = "f" * 64, extra_cfg: dict | None = None, protocols: dict | None = None) -> RunRecord:
    cfg = {"seed": seed, "lr": 1e-3, "baseline": baseline, **(extra_cfg or {})}
    h = config_hash(cfg)
    rec = RunRecord(
        run_id=new_run_id(h, seed, T0 + dt.timedelta(minutes=minutes)), baseline=baseline, dataset=dataset,
        seed=seed, config=cfg, config_hash=h, config_name="cpu-small", status="running",
        dataset_fingerprint=fingerprint, features={"clip": "c" * 64},
        protocols=protocols if protocols is not None else {"avsbench-v1": "1", "avsbench-clip-v1": "1"},
        toolkit_version="0.1.0", git_sha="abc",
    )
    store.create(rec)
    rec.metrics = copy.deepcopy(metrics or {})
    rec.status = status
    store.save(rec)
    return rec
