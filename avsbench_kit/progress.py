"""Rich progress bars with throughput and ETA, shared by every long job."""

from __future__ import annotations

from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


def make_progress(unit: str = "samples"):
    """A Rich Progress showing count, rate (items/s) and ETA; writes to stderr.

    The rate is computed when a frame is rendered (~10 Hz), not per item: asking Rich for the
    speed on every advance costs more than the work of a fast loop.
    """
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
    """Iterate with a progress bar (a plain iterator when ``enabled`` is False)."""
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
