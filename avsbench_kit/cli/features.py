"""`avskit features ...`: extract frozen-encoder feature caches, list them, verify them."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from avsbench_kit.cli.common import HomeOption, console

app = typer.Typer(help="Frozen-encoder feature caches: extract (resumable, shardable), ls, verify.",
                  no_args_is_help=True)

CacheOption = typer.Option(None, "--cache", help="Cache root (default: <data home>/features).")


def _human(n: float) -> str:
    from avsbench_kit.features.extract import human_bytes

    return human_bytes(n)


def parse_extract_args(args: list[str]) -> tuple[str, str, str | None, list[str], str]:
    """``encoder=NAME dataset=NAME [split=SPLIT] [device=DEV] [key=value...]`` ->
    (encoder, dataset, split, overrides, device); ``device`` defaults to ``auto``."""
    from avsbench_kit.errors import ConfigError

    found: dict[str, str] = {}
    overrides: list[str] = []
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep:
            raise ConfigError(f"argument {arg!r} is not key=value",
                              hint="example: avskit features extract encoder=vggish dataset=synth-s4 split=train")
        if key in ("encoder", "dataset", "split", "device"):
            found[key] = value
        else:
            overrides.append(arg)
    missing = [k for k in ("encoder", "dataset") if not found.get(k)]
    if missing:
        raise ConfigError(f"missing {' and '.join(k + '=NAME' for k in missing)}",
                          hint="example: avskit features extract encoder=vggish dataset=synth-s4 split=train "
                               "(`avskit ls encoders`, `avskit ls datasets`)")
    return found["encoder"], found["dataset"], found.get("split") or None, overrides, found.get("device") or "auto"


@app.command("extract")
def extract_command(
    args: List[str] = typer.Argument(..., help="encoder=NAME dataset=NAME \\[split=SPLIT|all] "
                                               "\\[device=auto|cpu|cuda|cuda:N|mps] \\[key=value ...] "
                                               "(other keys override the encoder's preset)."),
    home: Optional[Path] = HomeOption,
    cache: Optional[Path] = CacheOption,
    num_workers_total: Optional[int] = typer.Option(None, "--num-workers-total", "-W",
                                                    help="Split the shards over W workers (default: $WORLD_SIZE, "
                                                         "$SLURM_NTASKS, or 1)."),
    worker_index: Optional[int] = typer.Option(None, "--worker-index", "-I",
                                               help="This worker's index in 0..W-1 (default: $RANK, $SLURM_PROCID)."),
    no_progress: bool = typer.Option(False, "--no-progress", help="One plain line per shard instead of a bar "
                                                                  "(the default when stderr is not a terminal)."),
) -> None:
    """Compute a feature cache (resumes a killed run, repairs corrupt shards, reuses complete ones).

    Example: avskit features extract encoder=vggish dataset=synth-s4 split=train channels=stereo
    """
    from avsbench_kit.features.extract import extract
    from avsbench_kit.progress import progress_mode

    encoder, dataset, split, overrides, device = parse_extract_args(list(args))
    with progress_mode("plain" if no_progress else "auto"):
        summary = extract(dataset, encoder, overrides, split=split, home=home, cache=cache,
                          num_workers_total=num_workers_total, worker_index=worker_index, device=device)
    for line in summary.lines():
        console.print(line, markup=False, highlight=False, soft_wrap=True)


@app.command("ls")
def ls_command(home: Optional[Path] = HomeOption, cache: Optional[Path] = CacheOption) -> None:
    """Every feature cache under the cache root: dataset, manifest, encoder, completeness, size."""
    from rich.table import Table

    from avsbench_kit.features.cache import cache_root, find_caches

    root = cache_root(home, cache)
    caches = find_caches(root)
    if not caches:
        console.print(f"no feature caches under {root}")
        return
    table = Table(title=f"feature caches in {root}", title_justify="left")
    for col in ("dataset", "manifest", "encoder", "fingerprint", "splits (shards done/planned)", "entries", "size"):
        table.add_column(col, no_wrap=col != "splits (shards done/planned)")
    for fc in caches:
        try:
            s = fc.summary()
        except Exception as exc:  # an unreadable cache is listed, not fatal
            table.add_row(fc.path.parent.parent.name, fc.path.parent.name, fc.path.name, "", f"[red]{exc}[/]", "", "")
            continue
        splits = ", ".join(f"{k} {v}" for k, v in s["splits"].items())
        style = "" if s["complete"] else "[yellow]"
        table.add_row(s["dataset"], s["manifest"], s["encoder"], s["fingerprint"], style + splits,
                      f"{s['samples']:,}", _human(s["bytes"]))
    console.print(table)


@app.command("verify")
def verify_command(
    caches: Optional[List[Path]] = typer.Argument(None, help="Cache directories (default: every cache)."),
    home: Optional[Path] = HomeOption,
    cache: Optional[Path] = CacheOption,
) -> None:
    """Re-hash every shard; name missing/corrupt ones; exit non-zero if any."""
    from avsbench_kit.errors import DataError
    from avsbench_kit.features.cache import FeatureCache, cache_root, find_caches

    if caches:
        targets = []
        for path in caches:
            fc = FeatureCache(Path(path).expanduser().resolve())
            if not fc.exists():
                raise DataError(f"{path} is not a feature cache (no cache.json)",
                                hint="pass a directory listed by `avskit features ls`")
            targets.append(fc)
    else:
        targets = find_caches(cache_root(home, cache))
        if not targets:
            console.print(f"no feature caches under {cache_root(home, cache)}")
            return
    bad = 0
    for fc in targets:
        problems = fc.verify()
        planned = sum(len(s["shards"]) for s in fc.header["plan"].values())
        done = sum(1 for s in fc.header["plan"].values() for name in s["shards"] if fc.sidecar(name) is not None)
        if not problems:
            state = f"{done} shard(s) intact" + ("" if done == planned else f", {planned - done} not extracted yet")
            console.print(f"[green]ok[/]  {fc.path} ({state})", highlight=False)
            continue
        bad += len(problems)
        console.print(f"[red]BAD[/] {fc.path}", highlight=False)
        for p in problems:
            console.print(f"    {p.shard}: {p.problem}", markup=False, highlight=False)
        command = fc.extract_command(None if caches else home, None if caches else cache)
        console.print(f"    repair: {command}", markup=False, highlight=False)
    if bad:
        raise DataError(f"{bad} problem(s) in {len(targets)} feature cache(s)",
                        hint="re-run the extract command printed above: only the damaged shards are recomputed")
