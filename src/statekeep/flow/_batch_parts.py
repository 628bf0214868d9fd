"""The batcher's parts that hold no state: what process's return value says of
each item, the progress bar of Batcher.map, and the options' checks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._numbers import is_seconds, is_whole
from ..errors import ConfigurationError
from ._handle import _Failure
from ._retry import Retry

POLICIES = ("block", "raise", "shed_oldest")


def each_outcome(outcome: Any, n: int, name: str) -> list[Any]:
    """process's return value as one outcome per item (_Failure for a failed one)."""
    if isinstance(outcome, _Failure):
        return [outcome] * n
    if outcome is None:
        return [None] * n
    if isinstance(outcome, Sequence) and not isinstance(outcome, (str, bytes)):
        if len(outcome) != n:
            error = ConfigurationError(
                f"{name}: process returned {len(outcome)} outcomes for {n} items"
            )
            return [_Failure(error)] * n
        return [_Failure(o) if isinstance(o, BaseException) else o for o in outcome]
    error = ConfigurationError(
        f"{name}: process must return None or one outcome per item, not {outcome!r}"
    )
    return [_Failure(error)] * n


class Bar:
    """A rich progress bar fed by on_progress."""

    def __init__(self, progress: bool | str, total: int | None) -> None:
        from rich.progress import Progress

        self._progress = Progress()
        label = progress if isinstance(progress, str) else "processing"
        self._task = self._progress.add_task(label, total=total)
        self._progress.start()

    def update(self, settled: int) -> None:
        self._progress.update(self._task, completed=settled)

    def stop(self) -> None:
        self._progress.stop()


def check(
    process: Any,
    max_size: Any,
    max_delay: Any,
    max_pending: Any,
    policy: Any,
    retry: Any,
    concurrency: Any,
    on_progress: Any,
) -> None:
    if not callable(process):
        raise ConfigurationError(f"a batcher takes a callable process, not {process!r}")
    if not is_whole(max_size, 1):
        raise ConfigurationError(f"max_size must be a whole number >= 1, not {max_size!r}")
    if not is_seconds(max_delay):
        raise ConfigurationError(f"max_delay must be seconds >= 0, not {max_delay!r}")
    if not is_whole(max_pending, 1) or max_pending < max_size:
        raise ConfigurationError(
            f"max_pending must be a whole number >= max_size ({max_size!r}), not {max_pending!r}"
        )
    if policy not in POLICIES:
        raise ConfigurationError(f"policy must be one of {', '.join(POLICIES)}; not {policy!r}")
    if retry is not None and not isinstance(retry, Retry):
        raise ConfigurationError(f"retry must be a statekeep.flow.Retry or None, not {retry!r}")
    if not is_whole(concurrency, 1):
        raise ConfigurationError(f"concurrency must be a whole number >= 1, not {concurrency!r}")
    if on_progress is not None and not callable(on_progress):
        raise ConfigurationError(f"on_progress must be callable, not {on_progress!r}")
