"""`avskit prepare`: SynthAVS generation, and official layout -> manifest for every dataset."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from avsbench_kit.cli.common import HomeOption, console, print_manifest_summary

SYNTH_SUBSETS = ("synth-s4", "synth-ms3", "synth-refavs", "synth-avss")


def register(app: typer.Typer) -> None:
    app.command(
        "prepare",
        help=(
            "Prepare a dataset: read its official layout, validate it, write a fingerprinted manifest.\n\n"
            "DATASET is one of `avskit ls datasets`, or `synth` to generate the embedded SynthAVS "
            "benchmark (then prepare synth-s4, synth-ms3, synth-refavs and synth-avss from it). "
            "Extra key=value arguments override the SynthAVS preset (e.g. s4.clips.train=40)."
        ),
    )(prepare_command)


def prepare_command(
    dataset: str = typer.Argument(..., help="Dataset name, or `synth`."),
    overrides: Optional[List[str]] = typer.Argument(None, help="key=value overrides (synth only)."),
    root: Optional[Path] = typer.Option(None, "--root", help="Dataset root (the official release folder)."),
    home: Optional[Path] = HomeOption,
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Exclude bad samples instead of stopping."),
    checksum: bool = typer.Option(False, "--checksum", help="Record file-content sha256 in the manifest."),
    shards: bool = typer.Option(False, "--shards", help="Also export raw samples to WebDataset shards."),
    hf: Optional[Path] = typer.Option(None, "--hf", help="Also export to a Hugging Face datasets dir."),
    gt_cache: bool = typer.Option(
        False, "--gt-cache", help="Also decode every GT mask once into the GT cache that `avskit eval` reads "
        "(otherwise the first full-split eval writes it)."),
    out: Optional[Path] = typer.Option(None, "--out", help="synth: output directory."),
    seed: int = typer.Option(0, "--seed", help="synth: random seed."),
    size: str = typer.Option("small", "--size", help="synth: small | medium."),
) -> None:
    from avsbench_kit.data.prepare import prepare

    if dataset == "synth":
        from avsbench_kit.data.synth import generate
        from avsbench_kit.home import synth_dir

        target = out or synth_dir(size, seed, home)
        summary = generate(target, seed=seed, size=size, overrides=list(overrides or []))
        console.print(f"SynthAVS ({size}, seed {seed}) at {target}: {summary}")
        names, roots = SYNTH_SUBSETS, [target] * len(SYNTH_SUBSETS)
    else:
        if overrides:
            from avsbench_kit.errors import ConfigError

            raise ConfigError(f"unexpected arguments {overrides}", hint="key=value overrides apply to `prepare synth`")
        names, roots = (dataset,), [root]
    for name, ds_root in zip(names, roots):
        manifest = prepare(name, ds_root, home=home, skip_bad=skip_bad, checksum=checksum)
        print_manifest_summary(manifest)
        if shards:
            from avsbench_kit.data.shards import export_shards

            index = export_shards(manifest, home=home)
            console.print(f"shards: {index}")
        if gt_cache:
            from avsbench_kit.data import gt_cache as GC
            from avsbench_kit.data.datasets import DATASETS

            records = GC.build(manifest, DATASETS.get(name).task, home=home, progress=True)
            size = sum(f["bytes"] for r in records.values() for f in r["files"].values())
            console.print(f"GT cache: {len(records)} split(s), {sum(r['frames'] for r in records.values()):,} frames, "
                          f"{size / 1e6:.1f} MB at {GC.cache_dir(name, manifest.fingerprint, home)}")
        if hf is not None:
            from avsbench_kit.data.hf_export import export_hf

            console.print(f"hugging face dataset: {export_hf(manifest, Path(hf) / name)}")
