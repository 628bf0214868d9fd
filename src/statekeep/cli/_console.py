"""What the commands share: click's settings, progress bars, sizes and ages."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
Progress = Callable[[str, int, int], None]


def err_console() -> Console:
    """stderr, where progress and notes go (stdout may be a dump)."""
    from rich.console import Console

    return Console(stderr=True)


@contextmanager
def progress_bars(verb: str, *, single: bool = False) -> Iterator[Progress | None]:
    """A bar per name (a collection) on stderr while the block runs, or with
    single one bar whose text is the latest name (a step), when stderr is a
    terminal (FORCE_COLOR=1 forces it); None otherwise."""
    console = err_console()
    if not console.is_terminal:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskID,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn(f"{verb} [bold]{{task.description}}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as bars:
        tasks: dict[str, TaskID] = {}

        def update(name: str, done: int, total: int) -> None:
            key = "" if single else name
            if key not in tasks:
                tasks[key] = bars.add_task(name, total=total)
            bars.update(tasks[key], description=name, completed=done, total=total)

        yield update


def size(count: int | None) -> str:
    if count is None:
        return "-"
    value = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"


def age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
