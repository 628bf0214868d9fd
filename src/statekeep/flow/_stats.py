"""What a flow part reports: counters, gauges and latency histograms.

`Timings` keeps durations in a statekeep.metrics Histogram (log-linear, a
percentile within 1% of the truth): recording is two integer operations and
an increment under a lock. `FlowStats` is one part's
snapshot, in the shape a metrics registry collects (counters, gauges,
histograms by name).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..metrics import Histogram


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
    """Durations in seconds, in one of statekeep.metrics' histograms
    (quantiles within 1%); thread-safe."""

    __slots__ = ("_histogram",)

    def __init__(self) -> None:
        self._histogram = Histogram()

    def record(self, seconds: float) -> None:
        self._histogram.record(int(seconds * 1e9) if seconds > 0 else 0)

    def summary(self) -> Percentiles:
        histogram = self._histogram.copy()
        if not histogram.count:
            return Percentiles()
        p50, p90, p99, p999 = (q * 1e-9 for q in histogram.quantiles((0.5, 0.9, 0.99, 0.999)))
        return Percentiles(
            histogram.count, histogram.mean * 1e-9, p50, p90, p99, p999, histogram.max * 1e-9
        )


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
