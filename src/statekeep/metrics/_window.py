"""A histogram over sliding windows: the last 10 s, 1 min, 10 min, and all
time.

Recording is one `list.append` (`Windowed.record` *is* the append of the
list of values not yet counted): no clock read, no lock, no bucket work on
the caller's thread. Turning it (`turn()`, once a second by the metrics
thread, and before every read) counts those values into a histogram in
bulk (a sort and a bisect per bucket present: Histogram.record_many),
stamped with the second of the turn, kept in the ring of past seconds and
merged into the all-time histogram (`total`) and into a running sum for each
of WINDOWS (taken out again when it leaves that window), so a read of 10 s,
1 min or 10 min copies one histogram; any other window merges the ring's
seconds it covers.

No value is lost to a turn while other threads append: the list is never
replaced; a turn copies its first n values and deletes just those (each
one operation on the list), so an append that lands meanwhile stays for
the next turn.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from ..errors import ConfigurationError
from ._histogram import Histogram, merged

log = logging.getLogger("statekeep.metrics")

WINDOWS = (10, 60, 600)  # the windows a snapshot reads, in seconds
_FOLD_AT = 100_000  # values waiting: a turn counts them in chunks of this many


class Windowed:
    """Whole numbers kept per second for the last `span` seconds (600)."""

    __slots__ = ("_all", "_clock", "_fresh", "_ring", "_sums", "_turning", "record", "span")

    def __init__(self, span: int = 600, clock: Callable[[], float] = time.monotonic) -> None:
        if isinstance(span, bool) or not isinstance(span, int) or span < 1:
            raise ConfigurationError(f"span is a whole number of seconds >= 1, not {span!r}")
        self.span = span
        self._clock = clock
        self._fresh: list[int] = []  # recorded, not yet counted
        self.record: Callable[[int], None] = self._fresh.append
        self._ring: deque[tuple[int, Histogram]] = deque()
        self._all = Histogram()  # every second turned so far
        # a running sum of the ring's last w seconds, for each of WINDOWS within the span,
        # with the seconds it holds: a read of those windows copies one histogram
        self._sums: dict[int, tuple[Histogram, deque[tuple[int, Histogram]]]] = {
            w: (Histogram(), deque()) for w in WINDOWS if w <= span
        }
        self._turning = threading.Lock()

    def add(self, value: int) -> None:
        """record() with the value checked: ConfigurationError for anything
        but a whole number >= 0."""
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigurationError(f"a histogram takes whole numbers >= 0, not {value!r}")
        self.record(value)

    def turn(self, now: float | None = None) -> None:
        """Counts the values recorded since the last turn as the second `now`."""
        second = int(self._clock() if now is None else now)
        with self._turning:
            fresh = self._fresh
            taken = Histogram()
            while fresh:
                values = fresh[:_FOLD_AT]
                del fresh[: len(values)]
                _count_into(taken, values)
            ring = self._ring
            if taken.count:
                self._all.merge(taken)
                if ring and ring[-1][0] >= second:
                    ring[-1][1].merge(taken)  # a second turn within the second
                    stamped = ring[-1][0]
                else:
                    ring.append((second, taken))
                    stamped = second
                for total, held in self._sums.values():
                    total.merge(taken)
                    if not held or held[-1][0] != stamped:
                        held.append((stamped, ring[-1][1]))
            while ring and ring[0][0] <= second - self.span:
                ring.popleft()
            for w, (total, held) in self._sums.items():
                while held and held[0][0] <= second - w:  # it left the window
                    total.subtract(held.popleft()[1])

    def _summed(self, seconds: int) -> Histogram | None:
        """A copy of the running sum of the last `seconds` seconds (lock held)."""
        found = self._sums.get(seconds)
        if found is None:
            return None
        total, held = found
        result = total.copy()
        if result.count:  # min and max are not subtracted: the seconds held have them
            result.min = min(h.min for _, h in held if h.count)
            result.max = max(h.max for _, h in held if h.count)
        return result

    def forked(self) -> None:
        """In a forked child: starts empty (what the parent recorded is the
        parent's: pooled, the processes' histograms add up), with fresh locks.
        The list of values is emptied, not replaced: `record` stays bound to it."""
        self._turning = threading.Lock()
        del self._fresh[:]
        self._ring.clear()
        self._all = Histogram()
        for seconds in list(self._sums):
            self._sums[seconds] = (Histogram(), deque())

    def window(self, seconds: int) -> Histogram:
        """The values of the last `seconds` seconds (this one included), merged."""
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int)
            or not 1 <= seconds <= self.span
        ):
            raise ConfigurationError(f"a window is 1 to {self.span} seconds, not {seconds!r}")
        now = int(self._clock())
        self.turn(now)
        with self._turning:
            summed = self._summed(seconds)
            if summed is not None:
                return summed
            kept = [h for second, h in self._ring if second > now - seconds]
        return merged(kept)

    def count_in(self, seconds: int) -> int:
        """How many values the last `seconds` seconds hold (no buckets merged)."""
        now = int(self._clock())
        self.turn(now)
        with self._turning:
            return sum(h.count for second, h in self._ring if second > now - seconds)

    @property
    def total(self) -> Histogram:
        """Every value since it was made."""
        self.turn()
        return self._all.copy()


def _count_into(histogram: Histogram, values: list[int]) -> None:
    """record_many, keeping the good values of a chunk that holds bad ones
    (record() takes anything: a float, a negative) and reporting the rest."""
    try:
        if values and min(values) >= 0:
            histogram.record_many(values)
            return
    except (TypeError, AttributeError):
        pass
    good = [v for v in values if type(v) is int and v >= 0]
    histogram.record_many(good)
    dropped = len(values) - len(good)
    if dropped:
        log.warning(
            "statekeep.metrics: %d values that are not whole numbers >= 0 were left out",
            dropped,
            extra={
                "statekeep": {
                    "event": "metrics.values_dropped",
                    "dropped": dropped,
                    "example": repr(next(v for v in values if not (type(v) is int and v >= 0))),
                }
            },
        )
