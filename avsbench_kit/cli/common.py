"""Shared CLI pieces: consoles, the --home option, and the summary tables."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

def _width() -> int | None:
    """Rich's default of 80 columns truncates names when output is piped; tables stay whole."""
    import os
    import sys

    return None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160


console = Console(width=_width())
err_console = Console(stderr=True, width=_width())

HomeOption = typer.Option(
    None, "--home", help="Data home for prepared artefacts (default: $AVSKIT_HOME or the user cache dir)."
)


def print_manifest_summary(manifest, title: Optional[str] = None) -> None:
    """Split counts, fingerprint and exclusions of a prepared manifest."""
    from rich.table import Table

    df = manifest.df
    table = Table(title=title or f"{manifest.dataset}", title_justify="left")
    group_cols = ["subset", "split"] if df["subset"].astype(bool).any() else ["split"]
    for col in group_cols:
        table.add_column(col)
    table.add_column("samples", justify="right")
    table.add_column("clips", justify="right")
    table.add_column("frames", justify="right")
    table.add_column("annotated", justify="right")
    table.add_column("null", justify="right")
    order = {s: i for i, s in enumerate(["train", "val", "test", "test_s", "test_u", "test_n"])}
    groups = sorted(df.groupby(group_cols, sort=False), key=lambda kv: tuple(
        order.get(k, 99) if c == "split" else k for c, k in zip(group_cols, kv[0] if isinstance(kv[0], tuple) else (kv[0],))
    ))
    for key, part in groups:
        key = key if isinstance(key, tuple) else (key,)
        table.add_row(
            *[str(k) for k in key],
            f"{len(part):,}",
            f"{part['clip'].nunique():,}",
            f"{int(part['num_frames'].sum()):,}",
            f"{int(sum(sum(a) for a in part['annotated'])):,}",
            f"{int(part['is_null'].sum()):,}",
        )
    console.print(table)
    meta = manifest.meta
    console.print(f"fingerprint [bold]{meta['fingerprint_short']}[/]  ({meta['fingerprint']})")
    console.print(f"root {meta['root']}")
    if meta.get("exclusions"):
        console.print(f"[yellow]{len(meta['exclusions'])} sample(s) excluded[/] (see exclusions.parquet)")
    for note in meta.get("notes", []):
        console.print(f"note: {note}")


def existing_dir(path: Optional[Path]) -> Optional[Path]:
    return None if path is None else Path(path).expanduser()
