"""`avskit leaderboard`: reported and reproduced numbers, one table per dataset and protocol."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from avsbench_kit.cli.common import HomeOption, console


def register(app: typer.Typer) -> None:
    app.command("leaderboard")(leaderboard_command)


def leaderboard_command(
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Only this dataset (e.g. synth-s4, avsbench-s4)."),
    fmt: str = typer.Option("rich", "--format", help="rich | md | csv | json | html (a static site: --out DIR)"),
    out: Optional[Path] = typer.Option(None, "--out", help="Write to FILE (html: the site's DIRECTORY) instead of printing."),
    home: Optional[Path] = HomeOption,
    published: Optional[Path] = typer.Option(None, "--published", help="Reported numbers CSV (default: leaderboards/published.csv)."),
) -> None:
    """Leaderboard: rows = methods, reported rows (with source) and reproduced rows (with run ids,
    mean ± std over seeds) marked; a column never mixes protocols; blank = no such number."""
    from avsbench_kit.atomic import write_text
    from avsbench_kit.errors import ConfigError
    from avsbench_kit.leaderboard import collect_tables
    from avsbench_kit.leaderboard.render import FORMATS, render, rich_tables
    from avsbench_kit.registry import did_you_mean

    if fmt == "html":
        return _site(out, home, published, dataset)
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}", hint=did_you_mean(fmt, FORMATS + ("html",)))
    tables = collect_tables(home, dataset, published)
    if dataset is not None and not tables:
        from avsbench_kit.data.datasets import DATASETS

        if dataset in DATASETS.names():  # a registered dataset with nothing to show yet
            raise ConfigError(f"no leaderboard numbers for dataset {dataset!r}: no complete runs on it "
                              "and no reported numbers", hint=f"evaluate a baseline on it first: avskit run "
                                                               f"baseline=NAME dataset={dataset} (avskit ls baselines)")
        names = {t.dataset for t in collect_tables(home, None, published)} | set(DATASETS.names())
        raise ConfigError(f"no leaderboard numbers for dataset {dataset!r}",
                          hint=did_you_mean(dataset, sorted(names)))
    if fmt == "rich":
        import io

        from rich.console import Console

        target = Console(record=True, file=io.StringIO(), width=220) if out else console
        for table in rich_tables(tables):
            target.print(table)
            target.print()
        if out:
            write_text(out, target.export_text())
    else:
        text = render(tables, fmt)
        if out:
            write_text(out, text)
        else:
            typer.echo(text, nl=False)
    if out:
        console.print(f"wrote {len(tables)} table(s) to {out}")


def _site(out: Optional[Path], home: Optional[Path], published: Optional[Path], dataset: Optional[str]) -> None:
    from avsbench_kit.errors import ConfigError
    from avsbench_kit.site.build import build_site

    if out is None:
        raise ConfigError("--format html writes a site and needs --out DIR", hint="e.g. avskit leaderboard --format html --out site/")
    if dataset is not None:
        raise ConfigError("--dataset is not used with --format html (the site has a page per dataset)",
                          hint="drop --dataset; open DIR/datasets/<name>.html for one dataset")
    result = build_site(out, home, published)
    console.print(f"wrote {result.out}/index.html: {len(result.datasets)} dataset(s) with runs, {result.runs} run page(s), "
                  f"{result.plots} plot(s)", highlight=False, soft_wrap=True)
    for note in result.notes:
        console.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
    console.print(f"open file://{result.out}/index.html", highlight=False, soft_wrap=True)
