"""What the store's advice is drawn from, beyond the registry: which fields
unindexed finds filter on, how saves of each collection come (a loop? the
same entity again and again?), how many calls met a conflict.

Kept per second for the last minute (the metrics ticker closes each
second); recording is a lock and a few dict operations, on paths that
write to a database anyway.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

from ._window import Windowed

SPAN = 60  # seconds of save patterns kept
COALESCE = 0.1  # write-behind's NORMAL window: saves of one id closer than this coalesce
_IDS_KEPT = 50_000  # ids remembered a collection (the last time each was saved)


@dataclass
class SaveSecond:
    saves: int = 0
    alone: int = 0  # outside a transaction block: a commit each
    again: int = 0  # of an id saved less than COALESCE seconds before


class Patterns:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.unindexed_fields: dict[tuple[str, tuple[str, ...]], int] = {}
        self._seconds: dict[str, deque[tuple[int, SaveSecond]]] = {}
        self._last: dict[str, dict[str, float]] = {}
        self._conflicts: dict[str, Windowed] = {}
        self.batch_limits: tuple[float, int] | None = None  # write-behind's (window, max_batch)

    def unindexed(self, collection: str, fields: tuple[str, ...]) -> None:
        key = (collection, fields)
        with self._lock:
            self.unindexed_fields[key] = self.unindexed_fields.get(key, 0) + 1

    def saved(self, collection: str, id: str, in_block: bool, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        second = int(now)
        with self._lock:
            seconds = self._seconds.get(collection)
            if seconds is None:
                seconds = self._seconds[collection] = deque()
            if not seconds or seconds[-1][0] != second:
                seconds.append((second, SaveSecond()))
                while seconds[0][0] <= second - SPAN:
                    seconds.popleft()
            counts = seconds[-1][1]
            counts.saves += 1
            if not in_block:
                counts.alone += 1
            last = self._last.get(collection)
            if last is None:
                last = self._last[collection] = {}
            before = last.get(id)
            if before is not None and now - before < COALESCE:
                counts.again += 1
            elif len(last) >= _IDS_KEPT:
                last.clear()  # bounded: the oldest are forgotten together
            last[id] = now

    def saves(self, collection: str, now: float | None = None) -> list[SaveSecond]:
        """The seconds of the last minute with saves of a collection."""
        second = int(time.monotonic() if now is None else now)
        with self._lock:
            kept = self._seconds.get(collection, ())
            return [counts for s, counts in kept if s > second - SPAN]

    def collections(self) -> list[str]:
        with self._lock:
            return list(self._seconds)

    def conflict(self, operation: str) -> None:
        with self._lock:
            window = self._conflicts.get(operation)
            if window is None:
                window = self._conflicts[operation] = Windowed(SPAN)
        window.record(1)

    def conflicts(self, operation: str) -> int:
        """Calls of an operation that met a ConflictError in the last minute."""
        window = self._conflicts.get(operation)
        return window.count_in(SPAN) if window is not None else 0

    def forked(self) -> None:
        """In a forked child: a fresh lock, and what the parent saw forgotten."""
        self._lock = threading.Lock()
        self._seconds.clear()
        self._last.clear()
        for window in self._conflicts.values():
            window.forked()

    def tick(self, now: float) -> None:
        for window in list(self._conflicts.values()):
            window.turn(now)
