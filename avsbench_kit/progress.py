"""Progress for long jobs: a Rich bar on a terminal, one plain line per finished step in a log.

A bar redrawn ten times a second is useless in a log file or a CI console (and ``make demo`` piped
to a file printed nothing for minutes). So the same calls give two renderings:

- ``bar``: a Rich Progress (count, rate, ETA) on stderr;
- ``plain``: one line per finished task (an epoch, a shard, a probe) on stderr, with its count,
  time and rate — :class:`PlainProgress` implements the part of Rich's Progress API the toolkit
  uses (``add_task``, ``update``, ``advance``, ``tasks[id].speed``, ``start``/``stop``, ``with``).

The mode is ``auto`` (bar when stderr is a terminal, plain lines otherwise) unless
``$AVSKIT_PROGRESS`` (``bar``/``plain``/``auto``) or a command's ``--no-progress`` (through
:func:`progress_mode`) says otherwise.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
MODES = ("auto", "bar", "plain")
_forced: list[str] = []  # innermost progress_mode() wins


@contextlib.contextmanager
def progress_mode(mode: str) -> Iterator[None]:
    """Render progress as ``mode`` inside the block (the CLI wraps a command in it)."""
    if mode not in MODES:
        raise ValueError(f"progress mode {mode!r} is not one of {MODES}")
    _forced.append(mode)
    try:
        yield
    finally:
        _forced.pop()


def current_mode() -> str:
    """``bar`` or ``plain``: what :func:`make_progress` will draw right now."""
    mode = _forced[-1] if _forced else os.environ.get("AVSKIT_PROGRESS", "auto").strip().lower()
    if mode in ("bar", "plain"):
        return mode
    stream = sys.stderr
    return "bar" if hasattr(stream, "isatty") and stream.isatty() else "plain"


def fmt_duration(seconds: float) -> str:
    """``4.2 s``, ``3 min 05 s``, ``1 h 02 min``: short and unambiguous in a log."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def emit(line: str) -> None:
    """One timestamped line on stderr (looked up per line: redirections made later still apply)."""
    stream = sys.stderr
    stream.write(f"[{time.strftime('%H:%M:%S')}] {line}\n")
    stream.flush()


@dataclass
class PlainTask:
    """One task of a :class:`PlainProgress` (the fields Rich's Task has that callers read)."""

    id: int
    description: str
    total: float | None
    completed: float = 0
    fields: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    start_completed: float = 0
    finished: bool = False  # its line was printed

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    @property
    def speed(self) -> float | None:
        """Items per second since the task was added (None before the first item)."""
        done = self.completed - self.start_completed
        return done / self.elapsed if done > 0 and self.elapsed > 0 else None

    finished_speed = None  # Rich's attribute; plain tasks only have ``speed``


class _PlainConsole:
    """``progress.console.print(...)`` of a :class:`PlainProgress` (Rich callers print through it)."""

    def __init__(self, owner: "PlainProgress") -> None:
        self._owner = owner

    def print(self, *objects: Any, **_: Any) -> None:
        self._owner.note(" ".join(str(o) for o in objects))


class PlainProgress:
    """Rich-Progress-compatible: prints one line when a task completes (or is left unfinished).

    A finished task's line is held until the next event, so that a summary the caller prints
    right after it through ``console.print("<description>: ...")`` (e.g. the trainer's loss
    components and validation value) joins the same line: one line per epoch, not two.
    """

    def __init__(self, unit: str = "samples", write: Callable[[str], None] | None = None) -> None:
        self.unit = unit
        self._write = write
        self.tasks: dict[int, PlainTask] = {}
        self.console = _PlainConsole(self)
        self._held: tuple[str, str] | None = None  # (description, line) of the last finished task

    def print_line(self, line: str) -> None:
        (self._write or emit)(line)

    def flush(self) -> None:
        if self._held is not None:
            line, self._held = self._held[1], None
            self.print_line(line)

    def note(self, text: str) -> None:
        """A line from the caller: appended to the just-finished task's line if it continues it."""
        if self._held is not None and text.startswith(self._held[0] + ":"):
            line, self._held = self._held[1] + " |" + text[len(self._held[0]) + 1:], None
            self.print_line(line)
            return
        self.flush()
        self.print_line(text)

    # -- the Rich API subset ---------------------------------------------------------------
    def add_task(self, description: str, total: float | None = None, completed: float = 0, **fields: Any) -> int:
        self.flush()
        task_id = len(self.tasks)
        self.tasks[task_id] = PlainTask(task_id, description, total, completed, dict(fields),
                                        start_completed=completed)
        self._maybe_finish(self.tasks[task_id])
        return task_id

    def update(self, task_id: int, *, advance: float | None = None, completed: float | None = None,
               total: float | None = None, description: str | None = None, **fields: Any) -> None:
        task = self.tasks[task_id]
        if completed is not None:
            task.completed = completed
        if advance:
            task.completed += advance
        if total is not None:
            task.total = total
        if description is not None:
            task.description = description
        task.fields.update(fields)
        self._maybe_finish(task)

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def start(self) -> None:
        pass

    def stop(self) -> None:
        """Tasks that never reached their total still get their line (e.g. ``max_steps``)."""
        for task in self.tasks.values():
            if not task.finished and task.completed > task.start_completed:
                self._finish(task, stopped=True)
        self.flush()

    def __enter__(self) -> "PlainProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- the lines -------------------------------------------------------------------------
    def _maybe_finish(self, task: PlainTask) -> None:
        if not task.finished and task.total is not None and task.completed >= task.total \
                and task.completed > task.start_completed:
            self._finish(task)

    def _finish(self, task: PlainTask, stopped: bool = False) -> None:
        task.finished = True
        self.flush()
        self._held = (task.description, self.task_line(task, stopped))

    def task_line(self, task: PlainTask, stopped: bool = False) -> str:
        total = f"/{task.total:,.0f}" if task.total is not None else ""
        line = f"{task.description}: {task.completed:,.0f}{total} {self.unit} in {fmt_duration(task.elapsed)}"
        extra = str(task.fields.get("rate") or "")
        if extra:
            line += f" | {extra}"
        elif task.speed:
            line += f" | {task.speed:,.1f} {self.unit}/s"
        return line + (" (stopped early)" if stopped else "")


def make_progress(unit: str = "samples"):
    """A Rich Progress (count, rate, ETA on stderr) or, in ``plain`` mode, a :class:`PlainProgress`.

    The Rich rate is computed when a frame is rendered (~10 Hz), not per item: asking Rich for the
    speed on every advance costs more than the work of a fast loop.
    """
    if current_mode() == "plain":
        return PlainProgress(unit)
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task) -> Text:  # type: ignore[override]
            if task.fields.get("rate"):  # a caller-supplied text (e.g. loss and rate) wins
                return Text(str(task.fields["rate"]))
            speed = task.finished_speed or task.speed
            return Text(f"{speed:,.1f} {unit}/s" if speed else "")

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    )


def track(items: Iterable[T], description: str, total: int | None = None, unit: str = "samples",
          enabled: bool = True) -> Iterator[T]:
    """Iterate with a progress bar (one line at the end in plain mode; nothing when not ``enabled``)."""
    if not enabled:
        yield from items
        return
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with make_progress(unit) as progress:
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task)


class Steps:
    """A job made of named steps (shards, probes) of several items each.

    A bar over all items on a terminal; in plain mode one line per finished step: its name, items,
    time and rate, and the job's position (steps and items done, ETA from the items' rate).
    """

    def __init__(self, description: str, steps: int, total: int | None = None, unit: str = "samples",
                 enabled: bool = True, write: Callable[[str], None] | None = None) -> None:
        self.description, self.steps, self.total, self.unit = description, steps, total, unit
        self.enabled = enabled
        self.plain = write is not None or current_mode() == "plain"
        self._write = write
        self._bar = None
        self._task = None
        self.done_steps = 0
        self.done_items = 0
        self._step_items = 0
        self._t0 = self._step_t0 = time.perf_counter()

    def __enter__(self) -> "Steps":
        if self.enabled and not self.plain:
            self._bar = make_progress(self.unit)
            self._bar.__enter__()
            self._task = self._bar.add_task(self.description, total=self.total or self.steps, rate="")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def advance(self, n: int = 1) -> None:
        """``n`` items of the current step are done."""
        self.done_items += n
        self._step_items += n
        if self._bar is not None and self.total:
            self._bar.update(self._task, advance=n)

    def step_done(self, name: str, note: str = "") -> None:
        """The current step is finished: a line in plain mode (``note`` appended)."""
        self.done_steps += 1
        now = time.perf_counter()
        seconds, items = now - self._step_t0, self._step_items
        self._step_t0, self._step_items = now, 0
        if not self.enabled:
            return
        if self._bar is not None:
            if not self.total:
                self._bar.update(self._task, advance=1)
            return
        line = f"{self.description}: {self.done_steps}/{self.steps} {name}"
        if items:
            rate = items / seconds if seconds > 0 else 0.0
            line += f" | {items:,} {self.unit} in {fmt_duration(seconds)} ({rate:,.1f} {self.unit}/s)"
        else:
            line += f" | {fmt_duration(seconds)}"
        if self.total:
            elapsed = now - self._t0
            left = self.total - self.done_items
            eta = left * elapsed / self.done_items if self.done_items else 0.0
            line += f" | total {self.done_items:,}/{self.total:,}" + (f", ETA {fmt_duration(eta)}" if left > 0 else "")
        if note:
            line += f" | {note}"
        (self._write or emit)(line)


def steps(items: Iterable[T], description: str, name: Callable[[T], str] = str, unit: str = "steps",
          enabled: bool = True) -> Iterator[T]:
    """Iterate over steps (e.g. probes): a bar on a terminal, one line per finished step otherwise."""
    items = list(items)
    with Steps(description, len(items), None, unit, enabled) as job:
        for item in items:
            yield item
            job.step_done(name(item))
