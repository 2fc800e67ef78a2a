"""`avskit runs ls` / `avskit runs show ID`: what has been run, and everything a record holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from avsbench_kit.cli.common import HomeOption, console

app = typer.Typer(help="List and inspect run records (<data home>/runs/<run_id>/record.json).",
                  no_args_is_help=True)

_STATUS_STYLE = {"complete": "green", "running": "yellow", "failed": "red"}


def headline(record) -> str:
    """The first test split's numbers under the first recorded protocol (what `ls` shows)."""
    splits = [s for s in record.metrics if s not in ("train", "val")] or list(record.metrics)
    if not splits:
        return ""
    split = splits[0]
    protocols = sorted(record.metrics[split], key=lambda p: (p.endswith("-clip-v1"), p))  # official first
    if not protocols:
        return ""
    values = record.metrics[split][protocols[0]]
    shown = " ".join(f"{k} {v:.4f}" for k, v in list(values.items())[:3])
    return f"{split} {protocols[0]}: {shown}"


@app.command("ls")
def ls_runs(
    home: Optional[Path] = HomeOption,
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Only runs on this dataset."),
    baseline: Optional[str] = typer.Option(None, "--baseline", help="Only runs of this baseline."),
    status: Optional[str] = typer.Option(None, "--status", help="running | complete | failed"),
) -> None:
    """One line per run, oldest first: id, status, baseline, config, dataset, seed, headline metrics."""
    from rich.table import Table

    from avsbench_kit.runs.store import RunStore

    store = RunStore(home)
    records, problems = store.scan()
    records = [
        r for r in records
        if (dataset is None or r.dataset == dataset)
        and (baseline is None or r.baseline == baseline)
        and (status is None or r.status == status)
    ]
    table = Table(title=f"runs in {store.root}", title_justify="left")
    for col in ("run id", "status", "baseline", "config", "dataset", "seed", "wall", "headline"):
        table.add_column(col, no_wrap=col != "headline")
    for r in records:
        style = _STATUS_STYLE.get(r.status, "")
        table.add_row(
            r.run_id, f"[{style}]{r.status}[/]", r.baseline, r.config_name, r.dataset, str(r.seed),
            f"{r.wall_time_s:,.0f}s" if r.wall_time_s else "", headline(r),
        )
    for p in problems:
        table.add_row(p.run_id, "[red]unreadable[/]", "", "", "", "", "", p.reason)
    console.print(table)
    if not records and not problems:
        console.print("no runs yet: `avskit run baseline=NAME dataset=NAME` makes one")


@app.command("show")
def show_run(
    run_id: str = typer.Argument(..., help="A run id or an unambiguous prefix of one."),
    home: Optional[Path] = HomeOption,
    as_json: bool = typer.Option(False, "--json", help="Print the record as JSON."),
) -> None:
    """Provenance, config and metrics of one run."""
    from rich.table import Table

    from avsbench_kit.hashing import short
    from avsbench_kit.runs.store import RunStore

    store = RunStore(home)
    record = store.get(run_id)
    if as_json:
        typer.echo(json.dumps(record.to_dict(), indent=2, sort_keys=True))
        return
    style = _STATUS_STYLE.get(record.status, "")
    console.print(f"[bold]{record.run_id}[/]  [{style}]{record.status}[/]  ({store.run_dir(record.run_id)})")
    info = [
        ("baseline", f"{record.baseline}  config {record.config_name or '-'}  mode {record.mode}  seed {record.seed}"),
        ("dataset", f"{record.dataset}  fingerprint {short(record.dataset_fingerprint) or '-'}"),
        ("config hash", f"{short(record.config_hash)}  (seed-free {short(record.group_hash)})"),
        ("features", ", ".join(f"{k}={short(v)}" for k, v in record.features.items()) or "-"),
        ("protocols", ", ".join(f"{k} v{v}" for k, v in record.protocols.items()) or "-"),
        ("toolkit", f"{record.toolkit_version}  git {record.git_sha or '-'}"),
        ("started", f"{record.created_utc}  finished {record.finished_utc or '-'}  wall {record.wall_time_s:,.1f}s"),
        ("hardware", ", ".join(f"{k}={record.hardware[k]}" for k in ("device", "cpu_count", "torch_threads", "world_size")
                               if k in record.hardware) or "-"),
    ]
    if record.init_from:  # a warm start: the source run is part of what produced this one
        src = record.init_from
        info.append(("init from", f"{src.get('run_id')}  config {src.get('config_name') or '-'}  "
                                  f"best epoch {src.get('best_epoch')}  sha256 {short(src.get('checkpoint_sha256'))}"))
    if record.selection:
        info.append(("selection", ", ".join(f"{k}={v}" for k, v in record.selection.items())))
    if record.training:
        info.append(("training", ", ".join(f"{k}={v}" for k, v in record.training.items() if not isinstance(v, (list, dict)))))
    if record.error:
        info.append(("error", f"[red]{record.error}[/]"))
    for key, value in info:
        console.print(f"{key:<12} {value}", highlight=False)
    if record.metrics:
        table = Table(title="metrics", title_justify="left")
        for col in ("split", "protocol", "metric", "value"):
            table.add_column(col, justify="right" if col == "value" else "left")
        for split, per_protocol in record.metrics.items():
            for protocol, values in per_protocol.items():
                for metric, value in values.items():
                    table.add_row(split, protocol, metric, f"{value:.4f}")
        console.print(table)
    if record.probes:
        from avsbench_kit.cli.probe import table as probe_table

        console.print(probe_table([(record, record.probes)]))
    files = sorted(p.name for p in store.run_dir(record.run_id).iterdir() if not p.name.startswith("."))
    console.print(f"files: {', '.join(files)}")
