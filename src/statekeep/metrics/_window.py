"""A histogram over sliding windows: the last 10 s, 1 min, 10 min, and all
time.

`Windowed` is a Histogram (recording is the same fast path: no clock is
read) whose contents are the values since it was last turned. Turning it
(`turn()`, once a second by the registry's ticker, and before every read)
moves those values into the ring of past seconds, stamped with the second
of the turn, and into the all-time histogram (`total`); seconds older than
the span are dropped from the ring. A window of k seconds is
the merge of the ring's last k seconds.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from ..errors import ConfigurationError
from ._histogram import Histogram, merged

WINDOWS = (10, 60, 600)  # the windows a snapshot reads, in seconds


class Windowed(Histogram):
    """A histogram kept per second for the last `span` seconds (600)."""

    __slots__ = ("_all", "_clock", "_ring", "_turning", "span")

    def __init__(self, span: int = 600, clock: Callable[[], float] = time.monotonic) -> None:
        if isinstance(span, bool) or not isinstance(span, int) or span < 1:
            raise ConfigurationError(f"span is a whole number of seconds >= 1, not {span!r}")
        super().__init__()
        self.span = span
        self._clock = clock
        self._ring: deque[tuple[int, Histogram]] = deque()
        self._all = Histogram()  # every second turned so far
        self._turning = threading.Lock()

    def turn(self, now: float | None = None) -> None:
        """Closes the values recorded since the last turn as the second `now`."""
        second = int(self._clock() if now is None else now)
        with self._turning:
            taken = self.take()
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
