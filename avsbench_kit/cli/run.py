"""`avskit run baseline=NAME dataset=NAME [mode=...] [key=value...]`: train, select, evaluate, record."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from avsbench_kit.cli.common import HomeOption, console, err_console


def register(app: typer.Typer) -> None:
    app.command(
        "run",
        help=(
            "Train a baseline on the train split, select the checkpoint on val, predict the test splits, "
            "evaluate them with the dataset's official protocol and its -clip-v1 variant, and write a run "
            "record (<data home>/runs/<run_id>/).\n\n"
            "Run keys: baseline=NAME (av2t), dataset=NAME (synth-s4), config=PRESET (the baseline's default, "
            "cpu-small), mode=train+eval|train|eval, resume=true|false, from=RUN_ID (mode=eval: weights of "
            "that run), init_from=RUN_ID (warm start from that run's selected weights, e.g. a stage-1 run), "
            "then=PRESET[,PRESET] (after this run, run each preset warm-started from the previous one: "
            "two-stage methods in one command), device=auto|cpu|cuda|cuda:N|mps, save_predictions=true|false, "
            "build_caches=true|false. Every "
            "other key=value overrides the baseline's config (e.g. train.epochs=5 seed=1 "
            "train.precision=bf16 audio=off modality=vision-only). baseline=empty|full|gt are the "
            "reference predictors (eval only). Ref-AVS runs also report test_mix (Mix = S+U); AVSS runs "
            "the semantic protocol and the class-agnostic binary view. Under torchrun every process "
            "trains and rank 0 writes. Re-running an interrupted command resumes it."
        ),
    )(run_command)


def run_command(
    args: Optional[List[str]] = typer.Argument(None, help="key=value run keys and config overrides."),
    home: Optional[Path] = HomeOption,
    progress: bool = typer.Option(True, "--progress/--no-progress",
                                  help="Bars on a terminal (default); --no-progress: one plain line per epoch/shard "
                                       "(also the default when stderr is not a terminal)."),
) -> None:
    from avsbench_kit.progress import progress_mode
    from avsbench_kit.runs.run import RunRequest, execute_stages

    req = RunRequest.parse(args or [])
    with progress_mode("auto" if progress else "plain"):
        records = execute_stages(req, home, say=lambda m: err_console.print(m, highlight=False))
    for record in records:
        if record is not None:  # None: a non-zero torchrun rank
            _show(record)


def _show(record) -> None:
    from rich.table import Table

    table = Table(title=f"run {record.run_id} ({record.baseline} on {record.dataset}, seed {record.seed})",
                  title_justify="left")
    for col in ("split", "protocol", "metric", "value"):
        table.add_column(col, justify="right" if col == "value" else "left")
    for split, per_protocol in record.metrics.items():
        for protocol, values in per_protocol.items():
            for metric, value in values.items():
                table.add_row(split, f"{protocol} v{record.protocols.get(protocol, '?')}", metric, f"{value:.4f}")
    console.print(table)
    if record.selection.get("best_epoch") is not None:
        sel = record.selection
        console.print(f"checkpoint: epoch {sel['best_epoch']} (best {sel['split']} {sel['protocol']} "
                      f"{sel['metric']} {sel['best_value']:.4f})", highlight=False)
    console.print(f"record: avskit runs show {record.run_id}   leaderboard: avskit leaderboard --dataset {record.dataset}",
                  highlight=False)
