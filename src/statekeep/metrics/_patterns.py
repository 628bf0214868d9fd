"""What the store's advice is drawn from, beyond the registry: which fields
unindexed finds filter on, how saves of each collection come (a loop? the
same entity again and again?), how many calls met a conflict.

Kept per second for the last minute (the metrics ticker closes each
second); recording a save is a clock read and a few dict operations, no
lock, on a path that writes to a database anyway.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

from ._window import Windowed

_monotonic = time.monotonic
SPAN = 60  # seconds of save patterns kept
COALESCE = 0.1  # write-behind's NORMAL window: saves of one id closer than this coalesce
_IDS_KEPT = 50_000  # ids remembered a collection (the last time each was saved)


@dataclass(slots=True)
class SaveSecond:
    second: int = -1
    saves: int = 0
    alone: int = 0  # outside a transaction block: a commit each
    again: int = 0  # of an id saved less than COALESCE seconds before


class Patterns:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.unindexed_fields: dict[tuple[str, tuple[str, ...]], int] = {}
        self._seconds: dict[str, deque[tuple[int, SaveSecond]]] = {}
        # the second being counted and the last save of each id, by collection
        self._saving: dict[str, tuple[SaveSecond, dict[str, float]]] = {}
        self._conflicts: dict[str, Windowed] = {}
        self.batch_limits: tuple[float, int] | None = None  # write-behind's (window, max_batch)

    def unindexed(self, collection: str, fields: tuple[str, ...]) -> None:
        key = (collection, fields)
        with self._lock:
            self.unindexed_fields[key] = self.unindexed_fields.get(key, 0) + 1

    def saved(self, collection: str, id: str, in_block: bool, now: float | None = None) -> None:
        """A save of id in collection (on every save: no lock; under the GIL each
        step is one operation, and a count lost to a race would only blunt advice)."""
        if now is None:
            now = _monotonic()
        kept = self._saving.get(collection)
        if kept is None:
            kept = self._saving_of(collection)
        counts, last = kept
        second = int(now)
        if counts.second != second:
            counts = self._next_second(collection, second)
        counts.saves += 1
        if not in_block:
            counts.alone += 1
        before = last.get(id)
        if before is not None and now - before < COALESCE:
            counts.again += 1
        elif len(last) >= _IDS_KEPT:
            last.clear()  # bounded: the oldest are forgotten together
        last[id] = now

    def _saving_of(self, collection: str) -> tuple[SaveSecond, dict[str, float]]:
        with self._lock:
            kept = self._saving.get(collection)
            if kept is None:
                self._seconds[collection] = deque()
                kept = self._saving[collection] = (SaveSecond(-1), {})
            return kept

    def _next_second(self, collection: str, second: int) -> SaveSecond:
        with self._lock:
            counts, last = self._saving[collection]
            if counts.second == second:
                return counts
            counts = SaveSecond(second)
            self._saving[collection] = (counts, last)
            seconds = self._seconds[collection]
            seconds.append((second, counts))
            while seconds[0][0] <= second - SPAN:
                seconds.popleft()
            return counts

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
        self._saving.clear()
        for window in self._conflicts.values():
            window.forked()

    def tick(self, now: float) -> None:
        for window in list(self._conflicts.values()):
            window.turn(now)
