"""`avskit probe RUN_ID [--probe NAME ...]`: a trained run under input perturbations (no retraining)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from avsbench_kit.cli.common import HomeOption, console, err_console


def register(app: typer.Typer) -> None:
    app.command(
        "probe",
        help=(
            "Evaluate a run's selected checkpoint (best.pt) under input perturbations and store the results in "
            "its record (`probes` section): the relative J drop with a bootstrap CI (audio-shuffled = audio "
            "reliance), and for silent/noise/off-screen audio the false-positive rate and hJ. Probes: "
            "`avskit ls probes`; parameters as NAME:key=value,... Without --probe, every probe the model can "
            "take runs and the others are listed as skipped. --dataset D probes every complete run on D."
        ),
    )(probe_command)


def probe_command(
    run_ids: Optional[List[str]] = typer.Argument(None, help="Run ids (or unambiguous prefixes)."),
    probes: Optional[List[str]] = typer.Option(None, "--probe", "-p", help="A probe (repeatable), e.g. audio-silent."),
    split: Optional[str] = typer.Option(None, "--split", help="Split to probe (default: the first test split)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of shuffles, noise and bootstrap (default: the run's)."),
    control: bool = typer.Option(False, "--control", help="Also run probes of inputs the model does not read "
                                 "(a vision-only control: its numbers are the clean ones by construction)."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Probe every complete run on this dataset."),
    home: Optional[Path] = HomeOption,
    progress: bool = typer.Option(False, "--progress/--no-progress", help="Progress bars of cache building."),
) -> None:
    from avsbench_kit.errors import ConfigError
    from avsbench_kit.probes.engine import probe_run

    ids = list(run_ids or [])
    if dataset:
        ids += runs_on(dataset, home)
    if not ids:
        raise ConfigError("no run to probe", hint="avskit probe RUN_ID (`avskit runs ls`), or --dataset NAME")
    say = lambda m: err_console.print(m, highlight=False)  # noqa: E731
    results = []
    for run_id in ids:
        try:
            record, entries, _ = probe_run(run_id, probes or (), split=split, seed=seed, control=control,
                                           home=home, progress=progress, say=say)
        except ConfigError as exc:
            if not dataset or probes:  # one asked-for run: the error is the answer
                raise
            say(f"skipped run {run_id}: {exc.message}")
            continue
        results.append((record, entries))
    console.print(table(results))
    for record, _ in results:
        console.print(f"record: avskit runs show {record.run_id}", highlight=False)


def runs_on(dataset: str, home: Optional[Path]) -> list[str]:
    """Complete runs on ``dataset``, oldest first (a clear error when there are none)."""
    from avsbench_kit.errors import ConfigError
    from avsbench_kit.runs.store import RunStore

    found = [r.run_id for r in RunStore(home).records(lambda r: r.status == "complete" and r.dataset == dataset)]
    if not found:
        raise ConfigError(f"no complete run on {dataset}", hint=f"avskit run baseline=NAME dataset={dataset}")
    return found


def fmt(value: Optional[float]) -> str:
    return "" if value is None else f"{100 * value:.2f}"


def table(results: list):
    """One row per (run, probe): J clean -> J under the probe, relative drop [95% CI], FPR, hJ (×100)."""
    from rich.markup import escape
    from rich.table import Table

    out = Table(title="probes (×100; drop = relative drop of per-sample J, audio-shuffled's = audio reliance; "
                      "FPR/hJ: negative audio)", title_justify="left")
    for col in ("run", "baseline", "split", "probe", "J clean", "J probe", "drop [95% CI]", "FPR", "hJ"):
        out.add_column(col, justify="right" if col in ("J clean", "J probe", "FPR", "hJ") else "left",
                       overflow="fold")
    for record, entries in results:
        for e in entries:
            d = e["drop"]
            name = e["probe"] + ("" if e["reaches_model"] else " (control)")
            params = ",".join(f"{k}={v}" for k, v in e["params"].items())
            seed = "" if e["seed"] == record.seed else f" seed {e['seed']}"
            out.add_row(record.run_id.split("-", 1)[-1], record.baseline, e["split"],
                        escape(f"{name} v{e['version']}" + (f" [{params}]" if params else "") + seed),
                        fmt(d["J_clean"]), fmt(d["J_probe"]),
                        escape(f"{fmt(d['value'])} [{fmt(d['ci'][0])}, {fmt(d['ci'][1])}]"),
                        fmt(e.get("fpr")), fmt((e.get("combined") or {}).get("value")))
    return out
