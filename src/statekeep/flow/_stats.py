"""What a flow part reports: counters, gauges and latency histograms.

`Timings` keeps durations in log-spaced buckets (40 a decade, so a percentile
is within 3% of the truth) from 100 ns to 100,000 s: recording is a log10 and
an increment under a lock. `FlowStats` is one part's
snapshot, in the shape a metrics registry collects (counters, gauges,
histograms by name).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

_PER_DECADE = 40
_LOWEST = -7  # 1e-7 s
_BUCKETS = 12 * _PER_DECADE + 2  # up to 1e5 s; the first and last catch the rest


def _index(seconds: float) -> int:
    if not seconds > 1e-7:
        return 0
    index = int((math.log10(seconds) - _LOWEST) * _PER_DECADE) + 1
    return index if index < _BUCKETS else _BUCKETS - 1


def _upper(index: int) -> float:
    """The upper bound of bucket index (its value in a percentile)."""
    return float(10.0 ** (_LOWEST + index / _PER_DECADE))


@dataclass(frozen=True, slots=True)
class Percentiles:
    """A histogram's summary, in seconds (0.0 when it holds nothing)."""

    count: int = 0
    mean: float = 0.0
    p50: float = 0.0
    p90: float = 0.0
    p99: float = 0.0
    p999: float = 0.0
    max: float = 0.0


class Timings:
    """Durations in seconds; thread-safe."""

    __slots__ = ("_buckets", "_lock", "count", "max", "total")

    def __init__(self) -> None:
        self._buckets = [0] * _BUCKETS
        self._lock = threading.Lock()
        self.count = 0
        self.total = 0.0
        self.max = 0.0

    def record(self, seconds: float) -> None:
        index = _index(seconds)
        with self._lock:
            self._buckets[index] += 1
            self.count += 1
            self.total += seconds
            if seconds > self.max:
                self.max = seconds

    def _percentile(self, q: float) -> float:
        if not self.count:
            return 0.0
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for index, n in enumerate(self._buckets):
            seen += n
            if seen >= rank:
                return min(_upper(index), self.max)
        return self.max

    def summary(self) -> Percentiles:
        with self._lock:
            if not self.count:
                return Percentiles()
            p = self._percentile
            mean = self.total / self.count
            return Percentiles(self.count, mean, p(0.5), p(0.9), p(0.99), p(0.999), self.max)


@dataclass(frozen=True, slots=True)
class FlowStats:
    """One flow part's figures at one moment: `counts` only grow, `gauges` are
    what is true now (in flight, waiting, state), `timings` are histograms'
    summaries in seconds."""

    kind: str
    name: str
    counts: Mapping[str, int] = field(default_factory=dict)
    gauges: Mapping[str, float] = field(default_factory=dict)
    timings: Mapping[str, Percentiles] = field(default_factory=dict)

    def rows(self) -> list[tuple[str, str]]:
        """(figure, value) for each count, gauge and timing, as text."""
        rows = [(key, f"{count:,}") for key, count in self.counts.items()]
        rows += [(key, f"{gauge:,.3g}") for key, gauge in self.gauges.items()]
        for key, summary in self.timings.items():
            if summary.count:
                rows.append(
                    (
                        f"{key} p50 / p99 / max ms",
                        f"{summary.p50 * 1e3:.3g} / {summary.p99 * 1e3:.3g} / "
                        f"{summary.max * 1e3:.3g}",
                    )
                )
        return rows

    def table(self) -> object:
        """A rich Table of these figures."""
        from rich.table import Table

        table = Table(title=f"{self.kind} {self.name}")
        table.add_column("figure")
        table.add_column("value", justify="right")
        for figure, value in self.rows():
            table.add_row(figure, value)
        return table


class PerSecond:
    """Events a second over the last `seconds` whole seconds: one counter
    for the current second, the finished ones kept in a short ring. Callers
    hold their own lock around count()."""

    __slots__ = ("_done", "_now", "_second", "_seconds")

    def __init__(self, seconds: int = 10) -> None:
        self._seconds = seconds
        self._second = -1
        self._now = 0
        self._done: list[tuple[int, int]] = []  # (second, count), oldest first

    def count(self, moment: float, n: int = 1) -> None:
        second = int(moment)
        if second != self._second:
            if self._now:
                self._done.append((self._second, self._now))
                if len(self._done) > self._seconds:
                    del self._done[0]
            self._second, self._now = second, 0
        self._now += n

    def rate(self, moment: float) -> float:
        """Events a second over the finished seconds of the window (0 if none)."""
        first = int(moment) - self._seconds
        kept = [n for second, n in self._done if second >= first]
        if self._second >= first and self._second < int(moment) and self._now:
            kept.append(self._now)
        return sum(kept) / self._seconds if kept else 0.0
