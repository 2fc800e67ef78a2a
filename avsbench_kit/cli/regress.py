"""`avskit regress`: the CI gate — a run's metrics against a golden file, with tolerances."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from avsbench_kit.cli.common import HomeOption, console

_STYLE = {"ok": "green", "regressed": "bold red", "missing": "bold red", "improved": "yellow", "new": "dim"}


def register(app: typer.Typer) -> None:
    app.command("regress")(regress_command)


def regress_command(
    run_id: Optional[str] = typer.Argument(None, help="Run id (or prefix) to check."),
    golden_path: Path = typer.Option(..., "--golden", help="Golden JSON, e.g. leaderboards/golden/NAME.json."),
    latest: bool = typer.Option(False, "--latest", help="Check the latest complete run of the golden's baseline, dataset and config preset."),
    update: bool = typer.Option(False, "--update", help="Write the run's metrics into the golden (keeps tolerances)."),
    ignore_provenance: bool = typer.Option(False, "--ignore-provenance",
                                           help="Compare even if dataset/config/feature fingerprints differ."),
    strict: bool = typer.Option(False, "--strict", help="Fail on any difference beyond tolerance in either "
                                "direction (CI: an inflated metric is a bug until the golden is updated)."),
    tolerance: Optional[float] = typer.Option(None, "--tolerance", min=0.0,
                                              help="With --update: the absolute tolerance of every metric "
                                              "(default: keep the golden's; 0.02 for new metrics)."),
    home: Optional[Path] = HomeOption,
) -> None:
    """Compare a run with a golden: worse beyond tolerance fails (exit 1); better beyond tolerance
    passes and asks for `--update` (fails with `--strict`); a golden made from other data/config is refused."""
    from rich.table import Table

    from avsbench_kit.errors import ConfigError
    from avsbench_kit.runs.regress import RegressionError, compare, golden_from_record, load_golden, save_golden
    from avsbench_kit.runs.store import RunStore

    if (run_id is None) == (not latest):
        raise ConfigError("give either a RUN_ID or --latest", hint="e.g. avskit regress --golden G.json --latest")
    store = RunStore(home)
    golden = load_golden(golden_path) if (golden_path.is_file() or not update) else None
    if latest:
        made = (golden or {}).get("produced_by", {})

        def same_experiment(r) -> bool:
            return all(made.get(k) in (None, getattr(r, k)) for k in ("baseline", "dataset", "config_name"))

        record = store.latest(same_experiment)
    else:
        record = store.get(run_id)  # type: ignore[arg-type]
    if record.status != "complete":
        raise ConfigError(f"run {record.run_id} is {record.status}, not complete", hint="gate only complete runs")

    if golden is not None:
        result = compare(golden, record, ignore_provenance=ignore_provenance, strict=strict)
        table = Table(title=f"{record.run_id} vs {golden_path}", title_justify="left")
        for col in ("metric", "golden", "run", "delta", "tolerance", "better", "status"):
            table.add_column(col, justify="left" if col in ("metric", "status", "better") else "right")
        for d in result.diffs:
            table.add_row(
                d.key, "" if d.golden is None else f"{d.golden:.6f}", "" if d.actual is None else f"{d.actual:.6f}",
                "" if d.delta is None else f"{d.delta:+.2e}", f"{d.tolerance:.1e}", d.direction,
                f"[{_STYLE[d.status]}]{d.status}[/]",
            )
        console.print(table)
        made = golden.get("produced_by", {})
        console.print(f"golden made from run {made.get('run_id', '?')} (git {made.get('git_sha', '?')}, "
                      f"toolkit {made.get('toolkit_version', '?')}, {golden.get('updated_utc', '?')})", highlight=False)
        for key in result.mismatches:
            console.print(f"[red]provenance differs:[/] {key}: golden {made.get(key)!r:.80} vs run "
                          f"{getattr(record, key)!r:.80}", highlight=False)
    if update:
        save_golden(golden_path, golden_from_record(record, golden, name=golden_path.stem, tolerance=tolerance))
        console.print(f"[green]golden {golden_path} updated from run {record.run_id}[/]")
        return
    assert golden is not None
    if result.mismatches and not ignore_provenance:
        raise RegressionError(
            f"FAIL: golden {golden_path} was produced from a different {', '.join(result.mismatches)}; "
            "the numbers are not comparable",
            hint=f"if the change is intended: avskit regress --golden {golden_path} {record.run_id} --update "
                 "(or --ignore-provenance to compare anyway)",
        )
    if result.regressed:
        names = ", ".join(f"{d.key} ({d.status})" for d in result.regressed)
        what = "differ from" if strict else "worse than"
        raise RegressionError(
            f"FAIL: {len(result.regressed)} metric(s) {what} golden {golden_path} beyond tolerance or missing: {names}",
            hint="find the change that moved them; if the change is intended, update the golden with --update",
        )
    if result.improved:
        console.print(f"[yellow]PASS, improved[/]: {len(result.improved)} metric(s) better than the golden beyond "
                      f"tolerance — update it: avskit regress --golden {golden_path} {record.run_id} --update")
        return
    console.print("[green]PASS[/]: all metrics within tolerance")
