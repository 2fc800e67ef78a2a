"""`avskit eval`: score a folder of predictions on a prepared split with the official protocols.

Thin: parse, check the folder against the manifest, stream samples into the Evaluator, print,
write JSON. Everything heavy is imported inside the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from avsbench_kit.cli.common import HomeOption, console, err_console


def register(app: typer.Typer) -> None:
    app.command(
        "eval",
        help=(
            "Evaluate predictions on a prepared dataset split.\n\n"
            "--pred is a folder laid out as DIR/<sample_key>/<frame_index>.{npy,npz,png} (float logits, or "
            "0/255 PNG masks; frame index = position in the manifest's frames list, from 0), or a reference "
            "predictor: empty, full, gt (use ./gt for a folder named gt). Without --protocol the official "
            "protocol and its batch-independent -clip-v1 variant are both reported (`avskit ls protocols`)."
        ),
    )(eval_command)


def eval_command(
    dataset: str = typer.Option(..., "--dataset", help="Prepared dataset name (`avskit ls datasets`)."),
    split: str = typer.Option(..., "--split", help="Split to score, e.g. test, test_s, test_u, test_n."),
    pred: str = typer.Option(..., "--pred", help="Prediction folder, or empty | full | gt."),
    protocol: Optional[str] = typer.Option(None, "--protocol", help="One protocol (default: official + clip variant)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the results (with provenance) to this JSON file."),
    samples_out: Optional[Path] = typer.Option(None, "--samples", help="Write the per-sample table (.parquet or .csv)."),
    home: Optional[Path] = HomeOption,
    partial: bool = typer.Option(False, "--partial", help="Score only the samples whose predictions are complete; label the result PARTIAL."),
    resize: Optional[str] = typer.Option(None, "--resize", help="Resample predictions of another size: nearest | bilinear."),
    ignore_extra: bool = typer.Option(False, "--ignore-extra", help="Ignore files that are not predictions for this split."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    device: str = typer.Option("cpu", "--device", help="Where the metric kernels run: cpu (default: the "
                                "numpy-assisted fast path), auto, cuda, cuda:N or mps (same numbers)."),
    gt_cache: str = typer.Option(
        "auto", "--gt-cache",
        help="Decoded-GT cache: auto (read it if verified, else decode the PNGs and write it), rebuild, off.",
    ),
) -> None:
    from avsbench_kit.metrics.evaluator import evaluate_predictions

    report = evaluate_predictions(
        dataset=dataset, split=split, pred=pred, protocol=protocol, home=home, partial=partial,
        resize=resize, ignore_extra=ignore_extra, progress=progress, device=device, gt_cache=gt_cache,
    )
    print_report(report)
    if samples_out is not None:
        write_samples(report["_samples"], samples_out)
        console.print(f"per-sample table: {samples_out}")
    if json_out is not None:
        from avsbench_kit.atomic import write_json

        write_json(json_out, {k: v for k, v in report.items() if not k.startswith("_")})
        console.print(f"results: {json_out}")


def print_report(report: dict[str, Any]) -> None:
    from rich.table import Table

    partial = report["partial"]
    title = f"{report['dataset']} {report['split']} — {report['predictions']}"
    if partial:
        title = "[bold red]PARTIAL[/] " + title
    names: list[str] = []
    for entry in report["protocols"].values():
        for m in entry["metrics"]:
            if m not in names:
                names.append(m)
    table = Table(title=title, title_justify="left")
    table.add_column("protocol", no_wrap=True)
    table.add_column("kind")
    for m in names:
        table.add_column(m, justify="right")
    table.add_column("notes")
    for name, entry in report["protocols"].items():
        values = [entry["metrics"].get(m) for m in names]
        cells = ["" if v is None else ("nan" if v != v else f"{v:.4f}") for v in values]
        info = entry.get("info", {})
        notes = []
        if "batches" in info:
            notes.append(f"{info['batches']} batches of {info['batch_size']}")
        if info.get("samples_without_F"):
            notes.append(f"{info['samples_without_F']} samples without F")
        if "classes_seen" in info:
            notes.append(f"{info['classes_seen']} classes seen")
        table.add_row(f"{name}@{entry['version']}", "official" if entry["official"] else "batch-independent",
                      *cells, "; ".join(notes))
    console.print(table)
    console.print(
        f"samples {report['num_samples_scored']:,}/{report['num_samples_expected']:,}  frames {report['num_frames']:,}  "
        f"fingerprint {report['dataset_fingerprint'][:12]}  GT from {report.get('gt_source', 'png')}  {report['seconds']:.1f} s"
    )
    if partial:
        err_console.print(
            f"[bold red]PARTIAL[/]: {report['num_samples_missing']} sample(s) without complete predictions were "
            "left out; these numbers are not comparable to full-split results"
        )
    for note in report.get("notes", []):
        console.print(f"note: {note}")


def write_samples(df, path: Path) -> None:
    from avsbench_kit.atomic import atomic_path

    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".csv":
            df.to_csv(tmp, index=False)
        else:
            df.to_parquet(tmp, index=False)
