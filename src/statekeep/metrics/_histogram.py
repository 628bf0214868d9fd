"""Histograms of whole numbers (nanoseconds, rows, bytes): log-linear
buckets, mergeable, quantiles within 1%.

A value n < 128 has a bucket of its own (exact). A larger n has b bits; its
bucket is its top 7 bits, t in [64, 128), at the shift s = b - 7: every
value of the bucket is in [t * 2**s, (t + 1) * 2**s), at most 1/64 of its
lower bound wide, so the bucket's middle is within 0.8% of every value in
it. The key, s * 64 + t, grows with n, so buckets sort as values do.

Recording is two integer operations and an increment under a lock (under
half of prometheus_client's observe, which walks its bucket bounds in
Python; see benchmarks/metrics.py); record_many counts a list in bulk (a
sort and a bisect per bucket present), as a store's timers are counted.
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable

from ..errors import ConfigurationError

SUB = 64  # buckets per power of two above 128
_EXACT = 128  # values below it have a bucket each


def bucket_of(n: int) -> int:
    """The bucket of a whole number >= 0."""
    s = n.bit_length() - 7
    return (s << 6) + (n >> s) if s > 0 else n


def bounds_of(bucket: int) -> tuple[int, int]:
    """The values [low, high) of a bucket."""
    if bucket < _EXACT:
        return bucket, bucket + 1
    s, t = divmod(bucket, SUB)
    t += SUB  # the top bits are 64..127: key = s * 64 + t = (s + 1) * 64 + (t - 64)
    s -= 1
    return t << s, (t + 1) << s


def middle_of(bucket: int) -> float:
    """The middle of a bucket: within 0.8% of every value in it."""
    low, high = bounds_of(bucket)
    return float(low) if high - low == 1 else (low + high - 1) / 2


class Histogram:
    """One distribution of whole numbers: count, sum, min, max and buckets.
    Safe to record into from many threads."""

    __slots__ = ("_lock", "buckets", "count", "max", "min", "sum")

    def __init__(self) -> None:
        self.buckets: defaultdict[int, int] = defaultdict(int)
        self.count = 0
        self.sum = 0
        self.min = 0
        self.max = 0
        self._lock = threading.Lock()

    def record(self, n: int) -> None:
        """Adds a whole number >= 0 (the fast path: no checks beyond the type's)."""
        s = n.bit_length() - 7
        key = (s << 6) + (n >> s) if s > 0 else n
        lock = self._lock
        lock.acquire()
        try:
            self.buckets[key] += 1
            if self.count:
                if n > self.max:
                    self.max = n
                elif n < self.min:
                    self.min = n
            else:
                self.min = self.max = n
            self.count += 1
            self.sum += n
        finally:
            lock.release()

    def record_many(self, values: list[int]) -> None:
        """Adds many whole numbers >= 0 at once (sorts `values` in place):
        a sort and a bisect per bucket present, not Python work per value."""
        if not values:
            return
        values.sort()
        count, low, high, total = len(values), values[0], values[-1], sum(values)
        found: list[tuple[int, int]] = []
        at = 0
        while at < count:
            key = bucket_of(values[at])
            end = bisect_left(values, bounds_of(key)[1], at)
            found.append((key, end - at))
            at = end
        self._add(found, count, total, low, high)

    def _add(
        self, buckets: list[tuple[int, int]], count: int, total: int, low: int, high: int
    ) -> None:
        """Adds counted values: (bucket, how many) pairs and their count, sum, min and max."""
        with self._lock:
            mine = self.buckets
            for key, n in buckets:
                mine[key] += n
            if self.count:
                self.min, self.max = min(self.min, low), max(self.max, high)
            else:
                self.min, self.max = low, high
            self.count += count
            self.sum += total

    def add(self, value: int) -> None:
        """record() with the value checked: ConfigurationError for anything
        but a whole number >= 0."""
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigurationError(f"a histogram takes whole numbers >= 0, not {value!r}")
        self.record(value)

    def merge(self, other: Histogram) -> None:
        """Adds other's values to this one (a window's seconds, processes)."""
        with other._lock:
            buckets, count = list(other.buckets.items()), other.count
            total, low, high = other.sum, other.min, other.max
        if count:
            self._add(buckets, count, total, low, high)

    def subtract(self, other: Histogram) -> None:
        """Takes other's values out again (a second leaving a window's
        running sum); min and max are the caller's to set."""
        with other._lock:
            buckets, count, total = list(other.buckets.items()), other.count, other.sum
        with self._lock:
            mine = self.buckets
            for key, n in buckets:
                left = mine[key] - n
                if left:
                    mine[key] = left
                else:
                    del mine[key]
            self.count -= count
            self.sum -= total

    def quantile(self, q: float) -> float:
        """The value below which a share q of the values fall (NaN when empty),
        within 1% of the exact one."""
        if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0.0 <= q <= 1.0:
            raise ConfigurationError(f"a quantile is between 0 and 1, not {q!r}")
        return self.quantiles((q,))[0]

    def quantiles(self, qs: Iterable[float]) -> list[float]:
        """Several quantiles in one pass over the buckets."""
        with self._lock:
            count, low, high = self.count, self.min, self.max
            buckets = sorted(self.buckets.items())
        wanted = list(qs)
        if not count:
            return [math.nan] * len(wanted)
        ranks = sorted((max(1, math.ceil(q * count)), i) for i, q in enumerate(wanted))
        found = [math.nan] * len(wanted)
        seen, at = 0, 0
        for key, n in buckets:
            seen += n
            while at < len(ranks) and ranks[at][0] <= seen:
                found[ranks[at][1]] = min(high, max(low, middle_of(key)))
                at += 1
        for _, i in ranks[at:]:  # pragma: no cover - the counts add up to count
            found[i] = float(high)
        return found

    @property
    def mean(self) -> float:
        return self.sum / self.count if self.count else math.nan

    def relock(self) -> None:
        """In a forked child: a lock another thread held at the fork stays held."""
        self._lock = threading.Lock()

    def copy(self) -> Histogram:
        result = Histogram()
        result.merge(self)
        return result


def merged(histograms: Iterable[Histogram]) -> Histogram:
    """One histogram of many (the same metric of several processes)."""
    result = Histogram()
    for histogram in histograms:
        result.merge(histogram)
    return result
