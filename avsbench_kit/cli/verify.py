"""`avskit verify`: is anything in the data home corrupt after a crash, a kill or a full disk?"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from avsbench_kit.cli.common import HomeOption, console


def register(app: typer.Typer) -> None:
    app.command("verify")(verify_command)


def verify_command(
    home: Optional[Path] = HomeOption,
    clean: bool = typer.Option(False, "--clean", help="Delete leftover temp files whose writer is gone."),
) -> None:
    """Check the whole data home: manifests against their fingerprints, GT caches and feature shards
    against their sha256, run records and checkpoints. Lists corrupt artefacts (exit 3),
    incomplete work a re-run resumes, and leftover temp files of interrupted writes."""
    from avsbench_kit.errors import DataError
    from avsbench_kit.verify import clean_leftovers, verify_home

    report = verify_home(home)
    for path, reason in report.incomplete:
        console.print(f"incomplete  {path}: {reason}", highlight=False, soft_wrap=True)
    removed = set(clean_leftovers(report)) if clean else set()
    for path in report.leftovers:
        state = "removed" if path in removed else "leftover"
        console.print(f"{state:<11} {path}", highlight=False, soft_wrap=True)
    for path, reason in report.corrupt:
        console.print(f"[bold red]corrupt[/]     {path}: {reason}", highlight=False, soft_wrap=True)
    console.print(f"{report.home}: {report.checked} artefact(s) checked, {len(report.corrupt)} corrupt, "
                  f"{len(report.incomplete)} incomplete, {len(report.leftovers) - len(removed)} leftover temp file(s)",
                  highlight=False, soft_wrap=True)
    if report.corrupt:
        first, reason = report.corrupt[0]
        raise DataError(f"{len(report.corrupt)} corrupt artefact(s) in {report.home}; first: {first}: {reason}",
                        hint="re-run the command that wrote it (features extract repairs shards; prepare rewrites "
                             "a manifest), or delete that run directory")
