"""Latency histograms: log-linear buckets, mergeable, quantiles within 1%.

A value v > 0 is v = m * 2**e with m in [0.5, 1) (math.frexp, in C); its
bucket is e * 64 + the 1/128th of [0.5, 1) that m falls in. A bucket is at
most 1/64 of its lower bound wide, so its middle is within 0.8% of every
value in it: a quantile read as the middle of the bucket that holds it is
within 1% of the exact one (and clamped to the exact min and max). Values
<= 0 are counted apart (a zero latency, a gauge at zero).

Histogram is one distribution; Windowed keeps one per second of the last
`span` seconds, so the last 10 s, 1 min and 10 min are merges of the
seconds they cover. Both are safe to record into from many threads.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

SUB = 64  # buckets per power of two
_frexp = math.frexp


def bucket_of(value: float) -> int:
    """The bucket of a value > 0."""
    m, e = _frexp(value)
    return e * SUB + int((m - 0.5) * 2 * SUB)


def middle_of(bucket: int) -> float:
    """The middle of a bucket: within 0.8% of every value in it."""
    e, k = divmod(bucket, SUB)
    return math.ldexp(0.5 + (k + 0.5) / (2 * SUB), e)


class Histogram:
    """One distribution of values (seconds, sizes): count, sum, min, max, and
    quantiles from log-linear buckets."""

    __slots__ = ("_lock", "buckets", "count", "max", "min", "sum", "zeros")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.zeros = 0  # values <= 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf
        self._lock = threading.Lock()

    def record(self, value: float) -> None:
        with self._lock:
            self.count += 1
            self.sum += value
            if value < self.min:
                self.min = value
            if value > self.max:
                self.max = value
            if value > 0:
                m, e = _frexp(value)
                key = e * SUB + int((m - 0.5) * 2 * SUB)
                buckets = self.buckets
                buckets[key] = buckets.get(key, 0) + 1
            else:
                self.zeros += 1

    def merge(self, other: Histogram) -> None:
        """Adds other's values to this one (a window's seconds, processes)."""
        with other._lock:
            buckets, count, zeros = dict(other.buckets), other.count, other.zeros
            total, low, high = other.sum, other.min, other.max
        with self._lock:
            for key, n in buckets.items():
                self.buckets[key] = self.buckets.get(key, 0) + n
            self.count += count
            self.zeros += zeros
            self.sum += total
            self.min = min(self.min, low)
            self.max = max(self.max, high)

    def quantile(self, q: float) -> float:
        """The value below which a share q of the values fall (NaN when empty)."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"a quantile is between 0 and 1, not {q!r}")
        with self._lock:
            if not self.count:
                return math.nan
            rank = max(1, math.ceil(q * self.count))  # the rank-th smallest value
            if rank <= self.zeros:
                return min(self.max, max(self.min, 0.0)) if self.zeros else 0.0
            seen = self.zeros
            for key in sorted(self.buckets):
                seen += self.buckets[key]
                if seen >= rank:
                    return min(self.max, max(self.min, middle_of(key)))
            return self.max  # pragma: no cover - the counts add up to count

    @property
    def mean(self) -> float:
        return self.sum / self.count if self.count else math.nan


class Windowed:
    """A histogram per second of the last `span` seconds (600: ten minutes),
    read over any window up to it: `window(10)`, `window(60)`, `window(600)`."""

    __slots__ = ("_clock", "_lock", "_retired", "_seconds", "span")

    def __init__(self, span: int = 600, clock: Callable[[], float] = time.monotonic) -> None:
        if isinstance(span, bool) or not isinstance(span, int) or span < 1:
            raise ValueError(f"span is a whole number of seconds >= 1, not {span!r}")
        self.span = span
        self._clock = clock
        self._seconds: deque[tuple[int, Histogram]] = deque()
        self._retired = Histogram()  # the seconds older than the span, merged
        self._lock = threading.Lock()

    def record(self, value: float) -> None:
        second = int(self._clock())
        seconds = self._seconds
        if not seconds or seconds[-1][0] != second:
            with self._lock:
                if not seconds or seconds[-1][0] != second:
                    seconds.append((second, Histogram()))
                    while seconds[0][0] <= second - self.span:
                        self._retired.merge(seconds.popleft()[1])
        seconds[-1][1].record(value)

    @property
    def total(self) -> Histogram:
        """Every value since it was made (the retired seconds and the kept ones)."""
        with self._lock:
            parts = [self._retired, *(h for _, h in self._seconds)]
        return merged(parts)

    def window(self, seconds: int) -> Histogram:
        """The values of the last `seconds` seconds (this one included), merged."""
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int)
            or not 1 <= seconds <= self.span
        ):
            raise ValueError(f"a window is 1 to {self.span} seconds, not {seconds!r}")
        now = int(self._clock())
        merged = Histogram()
        with self._lock:
            kept = [h for second, h in self._seconds if second > now - seconds]
        for histogram in kept:
            merged.merge(histogram)
        return merged


def merged(histograms: Iterable[Histogram]) -> Histogram:
    """One histogram of many (the same metric of several processes)."""
    result = Histogram()
    for histogram in histograms:
        result.merge(histogram)
    return result
