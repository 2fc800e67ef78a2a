"""Fault injection for the CLI: kill, fill the disk, or make the data home read-only, from inside a
child process at a chosen point, then check what the data home holds.

The mechanism is the one the cache tests started with (a child process patches the write path
and SIGKILLs itself at a chosen write), generalised: :func:`install` reads ``AVSKIT_FAULT`` and
patches the commit points every artefact goes through (``os.replace`` / ``os.rename``: each
atomic write ends in one), the temp-file writes, or named steps. Specs:

- ``count:FILE``            count the commits; write the number to FILE at exit (no fault)
- ``kill-before:N``         SIGKILL just before the N-th commit (its temp file is complete)
- ``kill-after:N``          SIGKILL just after the N-th commit
- ``kill-at:MOD:ATTR:N``    SIGKILL on the N-th call of ``MOD.ATTR`` (``Class.method`` allowed): a named step
- ``pause-before:N:FILE``   before the N-th commit, create FILE and wait until it is deleted
- ``torn-after:N``          after the N-th commit, cut the file in half and SIGKILL (a NON-atomic
                            writer's leftover: the checks must report it)
- ``enospc:N``              the N-th temp file written fails half-way with ENOSPC (disk full)
- ``erofs:ROOT``            any write, mkdir or rename under ROOT fails with EROFS (read-only)

:func:`child` runs ``avskit ARGS`` in a subprocess with a fault; the checks (:func:`snapshot`,
:func:`results`) are what the fault tests and ``make faults`` (tests/fault_suite.py) share.
"""

from __future__ import annotations

import builtins
import errno
import hashlib
import importlib
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
ENV = "AVSKIT_FAULT"


# -- inside the child (or, for faults that do not kill, this process) -------------------------------
_PATCHES: list[tuple[Any, str, Any]] = []
COMMITS = {"n": 0}  # commits seen since install()


def _set(owner: Any, name: str, value: Any) -> None:
    _PATCHES.append((owner, name, getattr(owner, name)))
    setattr(owner, name, value)


def uninstall() -> None:
    """Undo :func:`install` (in-process faults: ENOSPC, read-only)."""
    while _PATCHES:
        owner, name, value = _PATCHES.pop()
        setattr(owner, name, value)


def _die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _patch_commits(before, after) -> None:
    """Wrap ``os.replace`` and ``os.rename`` (every atomic write ends in one of them)."""
    COMMITS["n"] = 0
    for name in ("replace", "rename"):
        real = getattr(os, name)

        def wrapped(src, dst, *a, _real=real, **k):
            COMMITS["n"] += 1
            n = COMMITS["n"]
            before(n)
            out = _real(src, dst, *a, **k)
            after(n, dst)
            return out

        _set(os, name, wrapped)


def _patch_open(check, before=None) -> None:
    """Wrap ``open`` (builtins and io: pathlib uses the latter) for files opened for writing:
    ``before(path)`` may refuse the open, ``check(path, f)`` may replace the file object."""
    real = io.open

    def wrapped(file, mode="r", *a, **k):
        writing = any(c in mode for c in "wax+") and isinstance(file, (str, bytes, os.PathLike))
        if writing and before is not None:
            before(os.fsdecode(file))
        f = real(file, mode, *a, **k)
        return (check(os.fsdecode(file), f) or f) if writing else f

    _set(builtins, "open", wrapped)
    _set(io, "open", wrapped)


class _FullDisk:
    """A writable file that accepts ``room`` bytes, then fails with ENOSPC (and keeps what it wrote)."""

    def __init__(self, f: Any, room: int) -> None:
        self._f, self._room = f, room

    def write(self, data: Any) -> int:
        n = len(memoryview(data).cast("B"))
        if n > self._room:
            self._f.write(bytes(memoryview(data).cast("B")[: self._room]))
            self._room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._room -= n
        return self._f.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._f.close()


def install(spec: str | None = None) -> None:
    """Apply the fault ``spec`` (default: ``$AVSKIT_FAULT``) to this process."""
    spec = spec if spec is not None else os.environ.get(ENV, "")
    if not spec:
        return
    kind, _, arg = spec.partition(":")
    if kind == "count":
        _patch_commits(lambda n: None, lambda n, dst: None)
        if arg:
            import atexit

            atexit.register(lambda: Path(arg).write_text(str(COMMITS["n"])))
    elif kind == "kill-before":
        _patch_commits(lambda n: _die() if n == int(arg) else None, lambda n, dst: None)
    elif kind == "kill-after":
        _patch_commits(lambda n: None, lambda n, dst: _die() if n == int(arg) else None)
    elif kind == "torn-after":  # what a NON-atomic writer killed mid-write leaves: the suite must see it

        def tear(n: int, dst: Any) -> None:
            if n == int(arg):
                if os.path.isfile(dst):
                    with io.FileIO(dst, "r+") as f:
                        f.truncate(os.path.getsize(dst) // 2)
                _die()

        _patch_commits(lambda n: None, tear)
    elif kind == "pause-before":
        target, _, flag = arg.partition(":")

        def pause(n: int) -> None:
            if n == int(target):
                Path(flag).write_text(str(os.getpid()))
                while Path(flag).exists():
                    time.sleep(0.02)

        _patch_commits(pause, lambda n, dst: None)
    elif kind == "kill-at":
        module, attr, nth = arg.rsplit(":", 2)
        owner: Any = importlib.import_module(module)
        *path, name = attr.split(".")
        for part in path:
            owner = getattr(owner, part)
        real = getattr(owner, name)
        calls = {"n": 0}

        def step(*a, **k):
            calls["n"] += 1
            if calls["n"] == int(nth):
                _die()
            return real(*a, **k)

        _set(owner, name, step)
    elif kind == "enospc":
        temps = {"n": 0}

        def full(path: str, f: Any):
            if not (os.path.basename(path).startswith(".") and path.endswith(".tmp")):
                return None
            temps["n"] += 1
            return _FullDisk(f, 64) if temps["n"] == int(arg) else None

        _patch_open(full)
    elif kind == "erofs":
        root = os.path.realpath(arg)

        def refuse(path: Any) -> None:
            if os.path.realpath(os.fsdecode(path)).startswith(root):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))

        _patch_open(lambda path, f: None, before=refuse)
        for name in ("mkdir", "rename", "replace", "unlink", "rmdir"):
            real = getattr(os, name)

            def guard(p, *a, _real=real, **k):
                refuse(p)
                return _real(p, *a, **k)

            _set(os, name, guard)
        real_open = os.open

        def os_open(p, flags, *a, **k):
            if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
                refuse(p)
            return real_open(p, flags, *a, **k)

        _set(os, "open", os_open)
    else:
        raise ValueError(f"unknown fault spec {spec!r}")


_CHILD = """
import sys
sys.path.insert(0, {tests!r})
import faults
faults.install()
from tiny_baseline import register_tiny
register_tiny()
from avsbench_kit.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


# -- outside: run, snapshot, compare --------------------------------------------------------------
def child_cmd(args: list[str]) -> list[str]:
    return [sys.executable, "-c", _CHILD.format(tests=str(TESTS)), *args]


def child_env(fault: str | None = None) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO),
           "AVSKIT_PROGRESS": "plain"}
    env.pop(ENV, None)
    if fault:
        env[ENV] = fault
    return env


def child(args: list[str], fault: str | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """``avskit ARGS`` in a fresh process (tiny-seg registered) with ``fault`` installed."""
    return subprocess.run(child_cmd(args), env=child_env(fault), capture_output=True, text=True,
                          cwd=str(REPO), timeout=timeout)


def count_commits(args: list[str], tmp: Path) -> tuple[int, subprocess.CompletedProcess]:
    """How many commits (renames into place) ``avskit ARGS`` makes uninterrupted, and its result."""
    out = tmp / f"count-{time.monotonic_ns()}"
    proc = child(args, f"count:{out}")
    return int(out.read_text()), proc


def _hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def is_scratch(rel: str) -> bool:
    """Temp files of interrupted writes and lock files: not artefacts."""
    parts = rel.split("/")
    return any(p.startswith(".") and (p.endswith(".tmp") or ".partial-" in p) for p in parts) or \
        parts[-1] == ".lock" or ".locks" in parts


def snapshot(home: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every artefact under ``home`` (scratch files left out)."""
    out = {}
    for p in sorted(home.rglob("*")):
        rel = p.relative_to(home).as_posix()
        if p.is_file() and not is_scratch(rel):
            out[rel] = _hash(p)
    return out


def lost(before: dict[str, str], after: dict[str, str], owned: tuple[str, ...] = ()) -> list[str]:
    """Artefacts of ``before`` that are gone or changed, except under the ``owned`` prefixes (what
    the command itself rewrites, e.g. a running record)."""
    return sorted(k for k, v in before.items() if after.get(k) != v and not k.startswith(owned))


def results(home: Path, extra: list[Path] = ()) -> dict[str, Any]:
    """What a command produced, comparable bit for bit between an interrupted + re-run command and
    an uninterrupted one: manifests, feature shards, GT caches, per-sample tables and saved
    predictions by sha256; each complete run's metrics; ``extra`` files (eval --json) without
    their timing fields. Run ids and times differ between runs and are left out."""
    from avsbench_kit.runs.store import RunStore

    out: dict[str, Any] = {}
    per_run: dict[str, dict[str, str]] = {}
    for rel, digest in snapshot(home).items():
        if rel.startswith("runs/"):
            run, name = rel.split("/", 2)[1:]
            if name.startswith("predictions/") or name == "per_sample.parquet":
                per_run.setdefault(run, {})[name] = digest
        elif rel.endswith(".json"):
            out[rel] = _plain_json(home / rel, home)
        else:
            out[rel] = digest
    # distinct complete runs: a kill after the run completed makes the re-run repeat it (a new run
    # id, as documented); the repeat must give the same numbers and files, so it adds no entry
    out["runs"] = []
    for r in RunStore(home).records():
        entry = (r.metrics, per_run.get(r.run_id, {}))
        if r.status == "complete" and entry not in out["runs"]:
            out["runs"].append(entry)
    for path in extra:
        out[f"extra:{path.name}"] = _plain_json(path, home) if path.is_file() else None
    return out


def _plain_json(path: Path, home: Path) -> Any:
    """A JSON artefact without its timing fields and with the data home's path made relative."""
    import json

    return _strip_times(json.loads(path.read_text().replace(str(home), "<home>")))


#: fields that describe how a result was produced, not the result: times, environment, and
#: ``gt_source`` (an eval after a kill that left the decoded-GT cache complete reads it instead of
#: the PNGs; the numbers must be the same, which the rest of the JSON checks)
_TIMING = ("seconds", "created_at", "created_utc", "updated_utc", "prepared_utc", "wall_time_s", "finished_utc", "date",
           "created", "generated_utc", "elapsed_s", "environment", "toolkit_git", "git_sha", "gt_source")


#: notes that only say where the GT came from (the eval that wrote the GT cache says so)
_GT_NOTES = ("GT decoded from PNGs",)


def _strip_times(obj: Any) -> Any:
    if isinstance(obj, dict):
        out = {k: _strip_times(v) for k, v in obj.items() if k not in _TIMING}
        if "gt_source" in obj and isinstance(out.get("notes"), list):
            out["notes"] = [n for n in out["notes"] if not str(n).startswith(_GT_NOTES)]
        return out
    if isinstance(obj, list):
        return [_strip_times(v) for v in obj]
    return obj


def copy_home(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst, symlinks=True)
    return dst
