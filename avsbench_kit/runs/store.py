"""The run store: ``<data home>/runs/<run_id>/`` with ``record.json`` and the run's artefacts.

Append-only: a run directory is created exclusively, its record is rewritten atomically while
the run is going, and a complete record is never overwritten — a new run gets a new id.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from avsbench_kit.atomic import atomic_path, owner_tag, shared_mode, write_json
from avsbench_kit.errors import AvsKitError, DataError
from avsbench_kit.home import data_home
from avsbench_kit.runs.record import RunRecord

RECORD = "record.json"
PER_SAMPLE = "per_sample.parquet"
BEST_CKPT = "best.pt"
LAST_CKPT = "last.pt"


class RunNotFoundError(AvsKitError):
    """An unknown or ambiguous run id (prefix)."""


class RunBusyError(AvsKitError):
    """The same run (config + data + mode) is being run by another live process."""

    exit_code = 6


@dataclass
class StoreProblem:
    """A run directory whose record cannot be read (listed, never silently hidden)."""

    run_id: str
    path: Path
    reason: str


def runs_root(home: str | Path | None = None) -> Path:
    return data_home(home) / "runs"


class RunStore:
    """Create, update, find and list run records under one data home."""

    def __init__(self, home: str | Path | None = None, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else runs_root(home)

    # -- paths ---------------------------------------------------------------------------------
    def run_dir(self, run_id: str) -> Path:
        return self.root / run_id

    def path(self, run_id: str, name: str) -> Path:
        return self.run_dir(run_id) / name

    # -- writing -------------------------------------------------------------------------------
    def create(self, record: RunRecord) -> Path:
        """Make the run directory with its record in one rename (a kill never leaves a run
        directory without ``record.json``); a clash gets a ``-2``, ``-3`` ... suffix."""
        self.root.mkdir(parents=True, exist_ok=True)
        base, n = record.run_id, 1
        tmp = Path(tempfile.mkdtemp(prefix=f".{base}.{owner_tag()}.", suffix=".tmp", dir=self.root))
        try:
            tmp.chmod(shared_mode(directory=True))  # mkdtemp gives 0700
            while True:
                if not self.run_dir(record.run_id).exists():
                    record.files.setdefault("record", RECORD)
                    write_json(tmp / RECORD, record.to_dict())
                    try:
                        os.rename(tmp, self.run_dir(record.run_id))  # refused over a non-empty directory
                        break
                    except OSError:
                        if not self.run_dir(record.run_id).exists():
                            raise  # not a clash: a real error (read-only, disk full)
                n += 1
                record.run_id = f"{base}-{n}"
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return self.run_dir(record.run_id)

    @contextlib.contextmanager
    def exclusive(self, key: str, what: str) -> Iterator[None]:
        """Hold the lock ``runs/.locks/<key>.lock`` (``flock``: the kernel drops it when the
        holder exits or is killed, so a crash never leaves it stuck). Two identical `avskit run`
        commands would otherwise both resume, or both start, the same run; the second one is
        refused with the first one's pid."""
        import fcntl

        locks = self.root / ".locks"
        locks.mkdir(parents=True, exist_ok=True)
        path = locks / f"{key}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, shared_mode())
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "?"
                raise RunBusyError(
                    f"an identical run ({what}) is already in progress in {self.root} (pid {holder})",
                    hint="wait for it to finish (re-running then resumes or repeats it), or change the "
                         "seed/config for a separate run") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode("ascii"), 0)
            yield
        finally:
            os.close(fd)  # releases the lock

    def save(self, record: RunRecord) -> None:
        """Rewrite a running record atomically; a complete record on disk is never replaced."""
        target = self.path(record.run_id, RECORD)
        if not target.parent.is_dir():
            raise RunNotFoundError(f"run directory {target.parent} does not exist", hint="create the run first")
        if target.is_file():
            try:
                old = json.loads(target.read_text("utf-8"))
            except (OSError, ValueError):
                old = {}
            if old.get("status") == "complete":
                raise AvsKitError(
                    f"run {record.run_id} is complete; its record is never rewritten",
                    hint="start a new run (a new run id) instead",
                )
        self._write(record)

    def save_probes(self, run_id: str, probes: list[dict[str, Any]]) -> RunRecord:
        """Replace only the ``probes`` section of a record (complete ones included).

        Why this exception to "a complete record is never rewritten": probes evaluate the finished
        run's selected checkpoint afterwards; they add numbers and never change the run's own
        config, metrics or provenance, which are re-read from disk here and written back as they were.
        """
        record = self.load(run_id)
        record.probes = list(probes)
        self._write(record)
        return record

    def _write(self, record: RunRecord) -> None:
        record.files.setdefault("record", RECORD)
        write_json(self.path(record.run_id, RECORD), record.to_dict())

    def write_per_sample(self, run_id: str, table: Any) -> Path:
        """Write the per-sample metrics table (a pandas DataFrame) atomically as parquet."""
        target = self.path(run_id, PER_SAMPLE)
        with atomic_path(target) as tmp:
            table.to_parquet(tmp, index=False)
        return target

    # -- reading -------------------------------------------------------------------------------
    def load(self, run_id: str) -> RunRecord:
        path = self.path(run_id, RECORD)
        if not path.is_file():
            raise RunNotFoundError(f"no run record at {path}", hint="`avskit runs ls` lists the runs")
        return load_record(path)

    def read_per_sample(self, run_id: str):
        import pandas as pd

        path = self.path(run_id, PER_SAMPLE)
        if not path.is_file():
            raise RunNotFoundError(f"run {run_id} has no {PER_SAMPLE}", hint="was it evaluated? (mode=train skips eval)")
        return pd.read_parquet(path)

    def run_ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def scan(self) -> tuple[list[RunRecord], list[StoreProblem]]:
        """All readable records (sorted by run id, i.e. by start time) and the unreadable ones."""
        records, problems = [], []
        for run_id in self.run_ids():
            path = self.path(run_id, RECORD)
            if not path.is_file():
                problems.append(StoreProblem(run_id, path, "no record.json"))
                continue
            try:
                records.append(load_record(path))
            except DataError as exc:
                problems.append(StoreProblem(run_id, path, exc.message))
        return records, problems

    def records(self, where: Callable[[RunRecord], bool] | None = None) -> list[RunRecord]:
        records, _ = self.scan()
        return [r for r in records if where is None or where(r)]

    def resolve(self, prefix: str) -> str:
        """A full run id from an id or an unambiguous prefix (clear errors otherwise)."""
        ids = self.run_ids()
        if prefix in ids:
            return prefix
        matches = [i for i in ids if i.startswith(prefix)] if prefix else []
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise RunNotFoundError(
                f"no run id starts with {prefix!r} in {self.root}",
                hint="`avskit runs ls` lists the runs (use --home if they live elsewhere)",
            )
        shown = ", ".join(matches[:5]) + (f" and {len(matches) - 5} more" if len(matches) > 5 else "")
        raise RunNotFoundError(
            f"run id prefix {prefix!r} is ambiguous: it matches {shown}",
            hint="give more characters of the id",
        )

    def get(self, prefix: str) -> RunRecord:
        return self.load(self.resolve(prefix))

    def latest(self, where: Callable[[RunRecord], bool] | None = None, status: str = "complete") -> RunRecord:
        """The most recent record with ``status`` (and matching ``where``)."""
        found = self.records(lambda r: r.status == status and (where is None or where(r)))
        if not found:
            raise RunNotFoundError(f"no {status} run in {self.root}", hint="run `avskit run ...` first")
        return found[-1]


def load_record(path: str | Path) -> RunRecord:
    """Read one ``record.json``; a corrupt or foreign file is a DataError naming it."""
    path = Path(path)
    try:
        data = json.loads(path.read_text("utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return RunRecord.from_dict(data)
    except (OSError, ValueError, TypeError) as exc:
        raise DataError(
            f"{path}: unreadable run record ({exc})",
            hint="delete that run directory, or restore record.json from a backup",
        ) from None
