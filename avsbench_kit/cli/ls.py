"""`avskit ls ...`: what is registered, and what is prepared."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from avsbench_kit.cli.common import HomeOption, console

app = typer.Typer(help="List what is registered: datasets, encoders, baselines, metric protocols, probes.",
                  no_args_is_help=True)


@app.command("datasets")
def ls_datasets(home: Optional[Path] = HomeOption) -> None:
    """Name, task, splits, and whether each dataset is prepared in the data home."""
    import json

    from rich.table import Table

    from avsbench_kit.data.datasets import DATASETS

    table = Table(title="datasets", title_justify="left")
    for col in ("name", "task", "splits", "prepared", "samples", "fingerprint"):
        table.add_column(col, no_wrap=True)
    table.add_column("description")
    for name in DATASETS.names():
        spec = DATASETS.get(name)
        prepared, samples, fp = "no", "", ""
        if spec.is_prepared(home):
            meta = json.loads((spec.prepared_dir(home) / "manifest.json").read_text("utf-8"))
            prepared, samples, fp = "yes", f"{meta['num_samples']:,}", meta["fingerprint_short"]
        table.add_row(name, spec.task, ",".join(spec.splits), prepared, samples, fp, spec.description)
    console.print(table)


@app.command("baselines")
def ls_baselines() -> None:
    """Registered baselines (ours and plugins'): name, tasks, inputs read, paper, config presets."""
    from rich.table import Table

    from avsbench_kit.plugins import BASELINES, load_plugins

    load_plugins()
    table = Table(title="baselines", title_justify="left")
    for col in ("name", "tasks", "reads", "paper", "configs"):
        table.add_column(col, overflow="fold")
    for name in BASELINES.names():
        spec = BASELINES.spec(name)
        table.add_row(name, ",".join(spec.tasks), ",".join(spec.modalities) or "-", spec.paper,
                      ", ".join(spec.presets))
    console.print(table)


@app.command("encoders")
def ls_encoders() -> None:
    """Registered frozen encoders: modality, cache key, output shape (default preset), weights source."""
    from rich.table import Table

    from avsbench_kit.features.base import ENCODERS, build_encoder

    table = Table(title="encoders", title_justify="left")
    for col in ("name", "modality", "keyed by", "output (default preset)", "weights"):
        table.add_column(col, overflow="fold")
    for name in ENCODERS.names():
        enc = build_encoder(name)
        table.add_row(name, enc.modality, enc.key_by, enc.describe_shape(), enc.weights_source())
    console.print(table)


@app.command("protocols")
def ls_protocols() -> None:
    """Metric protocols: name, version, task, description (`docs/metrics.md` lists every quirk)."""
    from rich.table import Table

    from avsbench_kit.metrics.protocols import PROTOCOLS

    table = Table(title="protocols", title_justify="left")
    for col in ("name", "version", "task"):
        table.add_column(col, no_wrap=True)
    table.add_column("description")
    for name in PROTOCOLS.names():
        meta = PROTOCOLS.meta(name)
        table.add_row(name, meta["version"], meta["task"], meta["description"])
    console.print(table)


@app.command("probes")
def ls_probes() -> None:
    """Input probes of `avskit probe`: name, version, input perturbed, kind, negative, parameters."""
    from rich.table import Table

    from avsbench_kit.probes.registry import PROBES

    table = Table(title="probes", title_justify="left")
    for col in ("name", "version", "input", "kind", "negative", "parameters"):
        table.add_column(col, no_wrap=True)
    table.add_column("description")
    for name in PROBES.names():
        p = PROBES.get(name)
        params = ", ".join(f"{k}={v}" for k, v in p.defaults.items()) or "-"
        table.add_row(name, p.version, p.modality, p.kind, "yes" if p.negative else "no", params, p.description)
    console.print(table)
