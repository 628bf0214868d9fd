"""A histogram over sliding windows: the last 10 s, 1 min, 10 min, and all
time.

Recording is one `list.append` (`Windowed.record` *is* the append of the
list of values not yet counted): no clock read, no lock, no bucket work on
the caller's thread. Turning it (`turn()`, once a second by the metrics
thread, and before every read) counts those values into a histogram in
bulk (a sort and a bisect per bucket present: Histogram.record_many),
stamped with the second of the turn, kept in the ring of past seconds and
merged into the all-time histogram (`total`); seconds older than the span
leave the ring. A window of k seconds merges the ring's last k seconds.

No value is lost to a turn while other threads append: the list is never
replaced; a turn copies its first n values and deletes just those (each
one operation on the list), so an append that lands meanwhile stays for
the next turn.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from ..errors import ConfigurationError
from ._histogram import Histogram, merged

WINDOWS = (10, 60, 600)  # the windows a snapshot reads, in seconds
_FOLD_AT = 100_000  # values waiting: a turn counts them in chunks of this many


class Windowed:
    """Whole numbers kept per second for the last `span` seconds (600)."""

    __slots__ = ("_all", "_clock", "_fresh", "_ring", "_turning", "record", "span")

    def __init__(self, span: int = 600, clock: Callable[[], float] = time.monotonic) -> None:
        if isinstance(span, bool) or not isinstance(span, int) or span < 1:
            raise ConfigurationError(f"span is a whole number of seconds >= 1, not {span!r}")
        self.span = span
        self._clock = clock
        self._fresh: list[int] = []  # recorded, not yet counted
        self.record: Callable[[int], None] = self._fresh.append
        self._ring: deque[tuple[int, Histogram]] = deque()
        self._all = Histogram()  # every second turned so far
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
                taken.record_many(values)
            ring = self._ring
            if taken.count:
                self._all.merge(taken)
                if ring and ring[-1][0] >= second:
                    ring[-1][1].merge(taken)  # a second turn within the second
                else:
                    ring.append((second, taken))
            while ring and ring[0][0] <= second - self.span:
                ring.popleft()

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
