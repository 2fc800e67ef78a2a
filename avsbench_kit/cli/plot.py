"""`avskit plot`: the leaderboard and run plots as PNG + SVG files (the site embeds the same)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from avsbench_kit.cli.common import HomeOption, console


def register(app: typer.Typer) -> None:
    app.command("plot")(plot_command)


def parse_match(items: list[str]) -> dict[str, tuple[str, ...]]:
    """``["av2t=AV2T-SAM"]`` -> ``{"av2t": ("AV2T-SAM",)}`` (a baseline may be given several times)."""
    from avsbench_kit.errors import ConfigError

    out: dict[str, tuple[str, ...]] = {}
    for item in items:
        baseline, sep, prefix = item.partition("=")
        if not sep or not baseline or not prefix:
            raise ConfigError(f"--match {item!r} is not BASELINE=METHOD_PREFIX",
                              hint='e.g. --match "av2t=AV2T-SAM (no adapter)"')
        out[baseline] = out.get(baseline, ()) + (prefix,)
    return out


def plot_command(
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Only this dataset (default: every dataset with runs)."),
    run: Optional[List[str]] = typer.Option(None, "--run", help="Run id (prefix) for the run plots; repeatable "
                                                                "(default: the newest complete run per dataset)."),
    kind: Optional[List[str]] = typer.Option(None, "--kind", help="bars | scatter | curves | categories | probes | "
                                                                  "gallery; repeatable (default: all)."),
    out: Path = typer.Option(Path("plots"), "--out", help="Directory for the PNG and SVG files."),
    match: Optional[List[str]] = typer.Option(None, "--match", help="BASELINE=METHOD_PREFIX: pair a baseline with "
                                                                    "reported rows for the scatter (repeatable)."),
    home: Optional[Path] = HomeOption,
    published: Optional[Path] = typer.Option(None, "--published", help="Reported numbers CSV."),
) -> None:
    """Seed-error bars per protocol, reproduced-vs-reported scatter, training/validation curves,
    per-category J, J vs FPR from probe results, and a gallery of mask overlays (frame, GT,
    prediction) from saved predictions. Every title names the protocol and its version."""
    from avsbench_kit.errors import ConfigError
    from avsbench_kit.leaderboard import collect_tables
    from avsbench_kit.plots.make import DATASET_KINDS, KINDS, RUN_KINDS, dataset_plots, run_plots
    from avsbench_kit.registry import did_you_mean
    from avsbench_kit.runs.store import RunStore

    kinds = tuple(kind or KINDS)
    for k in kinds:
        if k not in KINDS:
            raise ConfigError(f"unknown plot kind {k!r}", hint=did_you_mean(k, KINDS))
    store = RunStore(home)
    records = store.records(lambda r: dataset is None or r.dataset == dataset)
    tables = [t for t in collect_tables(home, dataset, published) if t.dataset in {r.dataset for r in records}]
    if dataset is not None and not records:
        raise ConfigError(f"no runs on dataset {dataset!r} in {store.root}",
                          hint=f"avskit run baseline=NAME dataset={dataset} first (`avskit runs ls` lists runs)")
    chosen = [store.get(p) for p in run] if run else _newest_per_dataset(records)
    out.mkdir(parents=True, exist_ok=True)
    written, notes = [], []
    if set(kinds) & set(DATASET_KINDS):
        ps = dataset_plots(tables, out, [k for k in kinds if k in DATASET_KINDS], parse_match(match or []))
        written += ps.files
        notes += ps.missing + ps.notes
    if set(kinds) & set(RUN_KINDS):
        manifests: dict = {}
        for record in chosen:
            ps = run_plots(record, store.run_dir(record.run_id), out, [k for k in kinds if k in RUN_KINDS],
                           home=home, manifests=manifests)
            written += ps.files
            notes += ps.missing + ps.notes
    for f in written:
        console.print(f"{f.png}  {f.svg}  {f.title}", markup=False, highlight=False, soft_wrap=True)
    for note in notes:
        console.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
    if not written:
        raise ConfigError("no plot had data to show", hint="see the notes above; `avskit runs ls` lists the runs")
    console.print(f"wrote {len(written)} plot(s) (PNG + SVG) to {out}", highlight=False)


def _newest_per_dataset(records: list) -> list:
    """Per dataset, the newest complete run, preferring a trained one (it has curves)."""
    newest: dict[str, object] = {}
    for r in records:  # sorted by run id = start time
        if r.status == "complete" and (r.training or not getattr(newest.get(r.dataset), "training", None)):
            newest[r.dataset] = r
    return list(newest.values())
