"""Render leaderboard tables as Rich tables, Markdown, tidy CSV or JSON.

Values are stored as fractions; tables show them ×100 (two decimals) except Ref-AVS ``S``,
which the papers print as a fraction. A blank cell means the number does not exist.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from avsbench_kit.leaderboard.build import REPORTED, Cell, LeaderTable

FORMATS = ("rich", "md", "csv", "json")
_RAW_METRICS = {"S"}  # shown as fractions, like the papers


def scale(metric: str) -> tuple[float, int]:
    return (1.0, 3) if metric in _RAW_METRICS else (100.0, 2)


def fmt_cell(cell: Cell | None, metric: str) -> str:
    if cell is None:
        return ""
    factor, digits = scale(metric)
    text = f"{cell.mean * factor:.{digits}f}"
    if cell.std is not None:
        text += f" ± {cell.std * factor:.{digits}f}"
    return text


def _header(split: str, metric: str) -> str:
    return f"{split} {metric}" + ("" if metric in _RAW_METRICS else " (%)")


def _row_values(table: LeaderTable, row) -> list[str]:
    return [fmt_cell(row.cells.get(col), col[1]) for col in table.columns]


def _static_columns(table: LeaderTable) -> list[str]:
    if table.protocol == REPORTED:
        return ["kind", "method", "backbone", "protocol (as far as known)"]
    return ["kind", "method", "config / data", "runs (n)"]


def _static_values(table: LeaderTable, row) -> list[str]:
    if table.protocol == REPORTED:
        return [row.kind, row.method, row.detail, row.protocol]
    return [row.kind, row.method, row.detail, str(row.seeds)]


def to_markdown(tables: list[LeaderTable]) -> str:
    out: list[str] = []
    for t in tables:
        out.append(f"### {t.title}\n")
        header = _static_columns(t) + [_header(*c) for c in t.columns] + ["source" if t.protocol == REPORTED else "runs"]
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "|".join("---" for _ in header) + "|")
        for row in t.rows:
            cells = _static_values(t, row) + _row_values(t, row) + [row.source]
            out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        for note in t.notes:
            out.append(f"\n_{note}_")
        out.append("")
    return "\n".join(out)


def to_records(tables: list[LeaderTable]) -> list[dict[str, Any]]:
    """Tidy rows: one number per line, with its table, kind, protocol and provenance."""
    rows = []
    for t in tables:
        for row in t.rows:
            for (split, metric), cell in row.cells.items():
                rows.append({
                    "table_dataset": t.dataset, "table_protocol": t.protocol, "table_version": t.version,
                    "kind": row.kind, "method": row.method, "detail": row.detail, "protocol": row.protocol,
                    "split": split, "metric": metric, "mean": cell.mean,
                    "std": "" if cell.std is None else cell.std, "n": cell.n, "source": row.source,
                    "note": row.note,
                })
    return rows


def to_csv(tables: list[LeaderTable]) -> str:
    rows = to_records(tables)
    buf = io.StringIO()
    fields = ["table_dataset", "table_protocol", "table_version", "kind", "method", "detail", "protocol",
              "split", "metric", "mean", "std", "n", "source", "note"]
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def to_json(tables: list[LeaderTable]) -> str:
    data = []
    for t in tables:
        data.append({
            "dataset": t.dataset, "protocol": t.protocol, "version": t.version, "title": t.title,
            "columns": [{"split": s, "metric": m} for s, m in t.columns], "notes": t.notes,
            "rows": [{
                "kind": r.kind, "method": r.method, "detail": r.detail, "protocol": r.protocol,
                "source": r.source, "note": r.note, "run_ids": r.run_ids,
                "cells": {f"{s}/{m}": {"mean": c.mean, "std": c.std, "n": c.n} for (s, m), c in r.cells.items()},
            } for r in t.rows],
        })
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def rich_tables(tables: list[LeaderTable]) -> list:
    """Rich renderables; long source texts of reported rows become numbered footnotes."""
    from rich.table import Table
    from rich.text import Text

    out = []
    for t in tables:
        reported = t.protocol == REPORTED
        table = Table(title=t.title, title_justify="left")
        for col in _static_columns(t):
            table.add_column(col, overflow="fold", min_width=4 if col == "kind" else 12)
        for split, metric in t.columns:
            table.add_column(f"{split}\n{metric}" + ("" if metric in _RAW_METRICS else " %"), justify="right",
                             no_wrap=True)
        table.add_column("src" if reported else "runs", overflow="fold", min_width=3 if reported else 24)
        footnotes: dict[str, int] = {}
        for row in t.rows:
            style = "cyan" if row.kind == "reproduced" else None
            last = f"[{footnotes.setdefault(row.source, len(footnotes) + 1)}]" if reported else row.source
            table.add_row(*_static_values(t, row), *_row_values(t, row), last, style=style)
        out.append(table)
        lines = [f"[{i}] {src}" for src, i in footnotes.items()] + list(t.notes)
        if lines:
            out.append(Text("\n".join(lines), style="dim"))
    return out


def render(tables: list[LeaderTable], fmt: str) -> str:
    """Text form for md/csv/json (rich is printed by the CLI)."""
    if fmt == "md":
        return to_markdown(tables)
    if fmt == "csv":
        return to_csv(tables)
    if fmt == "json":
        return to_json(tables)
    raise ValueError(f"format {fmt!r} has no text form")
