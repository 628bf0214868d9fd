"""When pending writes are due, and which the next batch takes (a part of
WriteBehind, which holds the state it shares: see _engine).

CRITICAL writes are taken at once; NORMAL ones once the oldest has waited
the window (or a lane holds a full batch); LOW ones when no NORMAL write
waits, or once the oldest is low_max_age old; a deadline brings a write
forward to half a window before it. flush() and close() take everything.
"""

from __future__ import annotations

import heapq

from ._options import Priority, WriteBehindOptions
from ._write import Key, Write


class Scheduling:
    """The flusher's choice of batches."""

    options: WriteBehindOptions
    _window: float
    _pending: dict[Key, Write]
    _lanes: dict[Priority, dict[Key, Write]]
    _flight: dict[Key, Write]
    _deadlines: list[tuple[float, int, Key]]
    _flushing: int
    _state: str

    def _take(self, now: float) -> list[Write]:
        o = self.options
        window = self._window
        everything = self._flushing > 0 or self._state == "closing"
        keys: dict[Key, None] = {}
        critical = self._lanes[Priority.CRITICAL]
        normal, low = self._lanes[Priority.NORMAL], self._lanes[Priority.LOW]
        keys.update(dict.fromkeys(_first(critical, o.max_batch)))
        while self._deadlines and self._deadlines[0][0] - window / 2 <= now:
            _, _, key = heapq.heappop(self._deadlines)
            if key in self._pending and len(keys) < o.max_batch:
                keys[key] = None
        if normal and (
            everything
            or len(normal) >= o.max_batch
            or next(iter(normal.values())).since + window <= now
        ):
            keys.update(dict.fromkeys(_first(normal, o.max_batch - len(keys))))
        if low and (
            everything
            or next(iter(low.values())).since + (window if not normal else o.low_max_age) <= now
        ):
            keys.update(dict.fromkeys(_first(low, o.max_batch - len(keys))))
        return self._move(keys)

    def _move(self, keys: dict[Key, None]) -> list[Write]:
        """The writes of keys, from pending to in flight."""
        pending, lanes = self._pending, self._lanes
        taken = {key: pending.pop(key) for key in keys}
        for lane in lanes.values():
            if len(lane) == len(taken) and lane.keys() == taken.keys():
                lane.clear()  # a whole lane (a paced caller's batch)
                break
        else:
            for key, write in taken.items():
                del lanes[write.priority][key]
        self._flight.update(taken)
        return list(taken.values())

    def _due(self, write: Write, now: float) -> float:
        """When the flusher should take this pending write."""
        o = self.options
        window = self._window
        if write.priority is Priority.CRITICAL:
            due = now
        elif write.priority is Priority.NORMAL:
            due = write.since + window
        else:
            due = write.since + (o.low_max_age if self._lanes[Priority.NORMAL] else window)
        if write.deadline is not None:
            due = min(due, write.deadline - window / 2)
        return due

    def _next_due(self, now: float) -> float | None:
        window = self._window
        if self._lanes[Priority.CRITICAL]:
            return now
        times = []
        normal, low = self._lanes[Priority.NORMAL], self._lanes[Priority.LOW]
        if normal:
            times.append(next(iter(normal.values())).since + window)
        if low:
            wait = self.options.low_max_age if normal else window
            times.append(next(iter(low.values())).since + wait)
        if self._deadlines:
            times.append(self._deadlines[0][0] - window / 2)
        return min(times) if times else None


def _first(lane: dict[Key, Write], count: int) -> list[Key]:
    """The first count keys of a lane."""
    keys: list[Key] = []
    for key in lane:
        if len(keys) >= count:
            break
        keys.append(key)
    return keys
