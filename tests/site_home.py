"""A data home for the site and plot tests: real runs on a tiny SynthAVS S4 (two seeds of the
test suite's tiny baseline with saved predictions, and the `empty` reference) plus hand-written
records on ``avsbench-s4`` (three baselines, seeds, a ``probes`` section, loss components and a
hostile override string) so that every part of the site has something to show."""

from __future__ import annotations

from pathlib import Path

import pytest

from avsbench_kit.runs.record import RunRecord
from avsbench_kit.runs.store import RunStore

HOSTILE = '<script>alert("x")</script>&<b>'
#: (baseline, seed, test mIoU, test F) of the hand-written avsbench-s4 records
FAKE = [("av2t", 0, 0.60, 0.70), ("av2t", 1, 0.62, 0.71), ("av2t", 2, 0.61, 0.69),
        ("probe-clip-only", 0, 0.55, 0.66), ("empty", 0, 0.0, 0.07)]


def fake_record(baseline: str, seed: int, miou: float, f: float, n: int) -> RunRecord:
    cfg = {"name": baseline, "seed": seed, "train": {"epochs": 3}}
    rec = RunRecord(run_id=f"20260101T00000{n}Z-fake{n:04d}-s{seed}", baseline=baseline, dataset="avsbench-s4",
                    seed=seed, config=cfg, config_hash=f"hash-{baseline}-{seed}", status="complete",
                    config_name="paper", overrides=[f"seed={seed}", f"note={HOSTILE}"] if baseline == "av2t" else [],
                    dataset_fingerprint="f" * 64, created_utc="2026-01-01T00:00:00Z")
    for protocol in ("avsbench-v1", "avsbench-clip-v1"):
        rec.set_metrics("test", protocol, {"mIoU": miou, "F": f}, "1.0")
    if baseline != "empty":
        rec.training = {"epoch_losses": [0.9, 0.6, 0.5], "val_history": [{"epoch": e, "value": 0.3 + 0.1 * e}
                                                                          for e in (1, 2, 3)],
                        "loss_components": [{"bce": 0.6, "dice": 0.3}, {"bce": 0.4, "dice": 0.2},
                                            {"bce": 0.3, "dice": 0.2}]}
        rec.model = {"backbone": "sam2 hiera-t (random init)", "parameters": {"trainable": 10, "total": 99}}
        rec.selection = {"split": "val", "protocol": "avsbench-v1", "metric": "mIoU", "best_epoch": 3,
                         "best_value": 0.6}
    return rec


def write_fakes(home: Path) -> list[str]:
    store = RunStore(home)
    ids = []
    for n, (baseline, seed, miou, f) in enumerate(FAKE):
        rec = fake_record(baseline, seed, miou, f, n)
        store.create(rec)
        ids.append(rec.run_id)
    # the probes helper writes this section; the site reads it from the raw JSON
    import json

    path = store.path(ids[0], "record.json")
    raw = json.loads(path.read_text())
    raw["probes"] = [  # the shape avsbench_kit.probes.record.entry writes
        {"probe": "audio-silent", "version": "1", "params": {}, "seed": 0, "split": "test", "negative": True,
         "drop": {"value": 0.3, "ci": [0.2, 0.4], "J_clean": 0.5, "J_probe": 0.35}, "fpr": 0.12,
         "combined": {"name": "hJ", "version": "1", "value": 0.64, "J_positive": 0.5}},
        {"probe": "audio-shuffled", "version": "1", "params": {}, "seed": 0, "split": "test", "negative": False,
         "drop": {"value": 0.2, "ci": [0.1, 0.3], "J_clean": 0.5, "J_probe": 0.4}},
    ]
    path.write_text(json.dumps(raw))
    return ids


def make_home(home: Path) -> dict[str, list[str]]:
    """Generate + prepare the tiny S4, run the tiny baseline (2 seeds) and `empty`, add the fakes."""
    from avsbench_kit.runs.run import RunRequest, execute
    from synth_home import synth_home
    from tiny_baseline import register_tiny

    synth_home(home)
    register_tiny()
    real = []
    for args in (["baseline=tiny-seg", "config=default", "seed=0", "save_predictions=true"],
                 ["baseline=tiny-seg", "config=default", "seed=1", "save_predictions=true"],
                 ["baseline=empty"]):
        rec = execute(RunRequest.parse([*args, "dataset=synth-s4"]), home, progress=False, say=lambda m: None)
        real.append(rec.run_id)
    return {"synth-s4": real, "avsbench-s4": write_fakes(home)}


@pytest.fixture(scope="session")
def site_home(tmp_path_factory):
    """(home, {dataset: [run ids]}), made once per test session (the site and browser tests share it)."""
    import torch

    home = tmp_path_factory.mktemp("site-home")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors on a shared machine
    try:
        return home, make_home(home)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def built_site(site_home, tmp_path_factory):
    """(site directory, SiteResult) built from :func:`site_home`."""
    from avsbench_kit.site.build import build_site

    out = tmp_path_factory.mktemp("site-out") / "site"
    return out, build_site(out, site_home[0])
