"""`avskit verify`: check a whole data home after a crash, a kill or a full disk.

Every write of the toolkit goes to a temp file (or directory) renamed into place, so an
interrupted command leaves each artefact either as it was or complete. This module checks that
promise on disk: prepared manifests match their fingerprints, decoded-GT caches and feature shards
match their sha256, run records are readable and a complete run has its files, checkpoints are
intact zip archives. What an interruption legitimately leaves is listed apart: *incomplete* work
(a re-run resumes it) and *leftover* temp files (safe to delete; ``--clean`` removes those whose
writer is gone).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from avsbench_kit.atomic import pid_alive, temp_is_stale
from avsbench_kit.home import data_home


@dataclass
class HomeReport:
    """What :func:`verify_home` found: ``(path, reason)`` pairs per kind."""

    home: Path
    corrupt: list[tuple[Path, str]] = field(default_factory=list)
    incomplete: list[tuple[Path, str]] = field(default_factory=list)
    leftovers: list[Path] = field(default_factory=list)
    checked: int = 0  # artefacts checked (manifests, GT splits, feature caches, runs)

    @property
    def ok(self) -> bool:
        return not self.corrupt


def _zip_problem(path: Path) -> str | None:
    """None if ``path`` (a torch checkpoint: a zip archive) reads back with matching CRCs."""
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (OSError, zipfile.BadZipFile) as exc:
        return f"not a readable checkpoint ({exc})"
    return f"member {bad} fails its CRC" if bad else None


def _check_prepared(home: Path, report: HomeReport) -> None:
    from avsbench_kit.data.datasets import DATASETS
    from avsbench_kit.data.gt_cache import GtCache
    from avsbench_kit.data.manifest import Manifest
    from avsbench_kit.errors import AvsKitError

    root = home / "prepared"
    for folder in sorted(p for p in root.glob("*") if p.is_dir()) if root.is_dir() else []:
        if not (folder / "manifest.json").is_file():
            if (folder / "manifest.parquet").is_file():
                report.incomplete.append((folder, "manifest.parquet without manifest.json: re-run `avskit prepare`"))
            continue
        report.checked += 1
        try:
            manifest = Manifest.load(folder, dataset=folder.name)
        except (AvsKitError, OSError, ValueError, KeyError) as exc:
            report.corrupt.append((folder / "manifest.json", getattr(exc, "message", None) or str(exc)))
            continue
        if folder.name not in DATASETS:
            continue
        gt = GtCache(manifest, DATASETS.get(folder.name).task, home)
        header, problem = gt._header()
        if problem:
            report.corrupt.append((gt.header_path, problem))
        for split in sorted((header or {}).get("splits", {})):
            report.checked += 1
            state, reason = gt.status(split)
            if state == "invalid":
                report.corrupt.append((gt.path / split, reason))


def _check_features(home: Path, report: HomeReport) -> None:
    from avsbench_kit.errors import AvsKitError
    from avsbench_kit.features.cache import find_caches

    for cache in find_caches(home / "features"):
        report.checked += 1
        try:
            problems = cache.verify()
        except (AvsKitError, OSError, ValueError, KeyError) as exc:
            report.corrupt.append((cache.header_path, getattr(exc, "message", None) or str(exc)))
            continue
        report.corrupt.extend((cache.path / p.shard, p.problem) for p in problems)


def _check_runs(home: Path, report: HomeReport) -> None:
    from avsbench_kit.runs.store import BEST_CKPT, LAST_CKPT, PER_SAMPLE, RunStore

    store = RunStore(home)
    records, problems = store.scan()
    report.corrupt.extend((p.path, p.reason) for p in problems)
    report.checked += len(records) + len(problems)
    for rec in records:
        run = store.run_dir(rec.run_id)
        if rec.status == "complete":
            if "train" in rec.mode and not (run / BEST_CKPT).is_file():
                report.corrupt.append((run / BEST_CKPT, "a complete trained run without its selected checkpoint"))
            if "eval" in rec.mode and rec.metrics and not (run / PER_SAMPLE).is_file():
                report.corrupt.append((run / PER_SAMPLE, "a complete evaluated run without its per-sample table"))
        elif rec.status == "running":
            report.incomplete.append((run, "unfinished run: re-running the same `avskit run` command resumes it"))
        for name in (BEST_CKPT, LAST_CKPT):
            if (run / name).is_file():
                problem = _zip_problem(run / name)
                if problem:
                    report.corrupt.append((run / name, problem))
        if (run / PER_SAMPLE).is_file():
            try:
                import pyarrow.parquet as pq

                pq.read_metadata(run / PER_SAMPLE)
            except Exception as exc:  # pyarrow raises its own error types for a damaged footer
                report.corrupt.append((run / PER_SAMPLE, f"unreadable parquet ({exc})"))


def verify_home(home: str | Path | None = None) -> HomeReport:
    """Check every artefact under the data home (see the module docstring)."""
    root = data_home(home)
    report = HomeReport(root)
    if not root.is_dir():
        return report
    _check_prepared(root, report)
    _check_features(root, report)
    _check_runs(root, report)
    report.leftovers = sorted(p for p in root.rglob(".*") if p.name.endswith(".tmp") or ".partial-" in p.name)
    return report


def clean_leftovers(report: HomeReport) -> list[Path]:
    """Delete the leftovers no live process is writing; returns what was removed."""
    import shutil

    removed = []
    for path in report.leftovers:
        if ".partial-" in path.name:  # a SynthAVS generation's tree, named by its pid
            pid = path.name.rsplit("-", 1)[1]
            stale = pid.isdigit() and not pid_alive(int(pid))
        else:
            stale = temp_is_stale(path)
        if stale:
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
            removed.append(path)
    return removed
