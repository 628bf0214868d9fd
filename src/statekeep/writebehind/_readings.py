"""What write-behind tells about itself (a part of WriteBehind, which holds
the state it shares: see _engine): its Stats, its dead letters, its batch
window, and each settled batch reported to the store's metrics."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from ..flow import CircuitBreaker
from ._options import DeadLetter, Priority, Stats
from ._records import DeadLetterFile
from ._write import Key, Write

_log = logging.getLogger("statekeep.writebehind")


class Readings:
    _lock: threading.Lock
    _pending: dict[Key, Write]
    _lanes: dict[Priority, dict[Key, Write]]
    _flight: dict[Key, Write]
    _stored: int
    _retried: int
    _dead: int
    _shed: int
    _last_error: str | None
    _circuit: CircuitBreaker
    _window: float
    _dead_letters: list[DeadLetter]
    _dead_file: DeadLetterFile | None

    def stats(self) -> Stats:
        with self._lock:
            now = time.monotonic()
            oldest = min((w.since for w in self._pending.values()), default=now)
            return Stats(
                pending={p.name: len(lane) for p, lane in self._lanes.items()},
                in_flight=len(self._flight),
                stored=self._stored,
                retried=self._retried,
                dead_lettered=self._dead,
                shed=self._shed,
                last_error=self._last_error,
                oldest_pending_age=now - oldest,
                database=self._circuit.state.value,
            )

    @property
    def window(self) -> float:
        """How long a NORMAL write waits for company (the options', or the default)."""
        return self._window

    def dead_letter_count(self) -> int:
        with self._lock:
            return len(self._dead_letters)

    def dead_letters(self) -> list[DeadLetter]:
        with self._lock:
            return list(self._dead_letters)

    def discard(self, letter: DeadLetter) -> bool:
        """Gives a dead-lettered write up for good: it leaves the list (and the
        dead-letter file beside the journal). False if it was not there."""
        with self._lock:
            kept = [d for d in self._dead_letters if d is not letter]
            if len(kept) == len(self._dead_letters):
                return False
            self._dead_letters = kept
            if self._dead_file is not None:
                self._dead_file.rewrite(kept)
            return True


def report_batch(on_batch: Callable[[str, int, int], None], writes: list[Write], took: int) -> None:
    """Reports a settled batch to the store's metrics: (its highest priority,
    rows, nanoseconds); a failure there is logged, never the flusher's."""
    try:
        on_batch(max(write.priority for write in writes).name.lower(), len(writes), took)
    except Exception as error:  # noqa: BLE001 - metrics must not stop the flusher
        _log.error(
            "write-behind: reporting a batch to the metrics failed: %s",
            error,
            extra={
                "statekeep": {
                    "event": "writebehind.on_batch_failed",
                    "writes": len(writes),
                    "error_type": type(error).__name__,
                    "error": str(error),
                }
            },
        )
