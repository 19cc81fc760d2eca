"""Progress of many jobs on stderr: done/total, rate, ETA (rich)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

__all__ = ["job_progress"]


class _RateColumn(ProgressColumn):
    """Jobs per second, as rich estimates it."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("- jobs/s" if speed is None else f"{speed:.1f} jobs/s")


@contextmanager
def job_progress(label: str, total: int) -> Iterator[Callable[[], None]]:
    """A progress display on stderr; yields the function that counts one job done."""
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        _RateColumn(), TextColumn("eta"), TimeRemainingColumn(),
                        TimeElapsedColumn(), console=Console(stderr=True))
    with progress:
        task = progress.add_task(label, total=total)

        def advance() -> None:
            progress.advance(task)

        yield advance
