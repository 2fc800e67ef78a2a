"""Leaderboards: tables from run records (reproduced) and published.csv (reported); renderers."""

from __future__ import annotations

from pathlib import Path


def collect_tables(home: str | Path | None = None, dataset: str | None = None,
                   published: str | Path | None = None):
    """Every leaderboard table for the runs in ``home`` and the reported numbers."""
    from avsbench_kit.data.datasets import DATASETS
    from avsbench_kit.leaderboard.build import build_tables
    from avsbench_kit.leaderboard.published import load_published
    from avsbench_kit.runs.store import RunStore

    records = RunStore(home).records()
    return build_tables(records, load_published(published), dataset=dataset, datasets_known=DATASETS.names())
