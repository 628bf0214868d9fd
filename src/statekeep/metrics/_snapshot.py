"""What a registry holds at one moment: plain values, safe to keep and pass on.

`Snapshot.get("statekeep_operation_seconds", operation="save")` finds one
series; a histogram's `windows` map 10, 60, 600 (seconds) and "total" to a
`Summary` (count, rate, mean, p50, p90, p99, p999, max, in the family's
unit: seconds for timers). `table()` draws it with rich.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from ._histogram import Histogram
from ._series import COUNTER, GAUGE, HISTOGRAM, Counter, Family, Gauge, Labels
from ._window import WINDOWS, Windowed

if TYPE_CHECKING:
    from rich.table import Table

QUANTILES = (0.5, 0.9, 0.99, 0.999)


@dataclass(frozen=True, slots=True)
class Summary:
    """A histogram over one window, in its family's unit."""

    count: int = 0
    sum: float = 0.0
    rate: float = 0.0  # values a second over the window (0 for "total")
    mean: float = math.nan
    p50: float = math.nan
    p90: float = math.nan
    p99: float = math.nan
    p999: float = math.nan
    max: float = math.nan

    @classmethod
    def of(cls, histogram: Histogram, scale: float, seconds: int | None) -> Summary:
        if not histogram.count:
            return cls()
        p50, p90, p99, p999 = histogram.quantiles(QUANTILES)
        return cls(
            count=histogram.count,
            sum=histogram.sum * scale,
            rate=histogram.count / seconds if seconds else 0.0,
            mean=histogram.mean * scale,
            p50=p50 * scale,
            p90=p90 * scale,
            p99=p99 * scale,
            p999=p999 * scale,
            max=histogram.max * scale,
        )


@dataclass(frozen=True, slots=True)
class Series:
    """One series: a counter's or gauge's value, or a histogram's windows."""

    name: str
    kind: str
    help: str
    unit: str
    labels: dict[str, str]
    value: float = 0.0  # counters and gauges; a histogram's count
    windows: dict[int | str, Summary] = field(default_factory=dict)
    histogram: Histogram | None = field(default=None, repr=False)  # all time, for export
    scale: float = 1.0

    def window(self, seconds: int | str) -> Summary:
        """The summary over 10, 60 or 600 seconds, or "total" (all time); an
        empty one where nothing was recorded. ConfigurationError for another."""
        if self.windows:
            found = self.windows.get(seconds)
            if found is not None:
                return found
        if seconds not in (*WINDOWS, "total"):
            raise ConfigurationError(
                f"a snapshot's windows are {', '.join(map(str, WINDOWS))} and 'total', "
                f"not {seconds!r}"
            )
        return Summary()


def series_of(
    family: Family,
    labels: Labels,
    series: Counter | Gauge | Windowed,
    now: float,
    windows: tuple[int, ...] = WINDOWS,
) -> Series:
    named = dict(labels)
    if family.kind == COUNTER:
        assert isinstance(series, Counter)
        value = float(series.get())
        return Series(family.name, family.kind, family.help, family.unit, named, value)
    if family.kind == GAUGE:
        assert isinstance(series, Gauge)
        value = series.get()
        return Series(family.name, family.kind, family.help, family.unit, named, value)
    assert isinstance(series, Windowed)
    series.turn(now)
    scale = family.scale
    summaries: dict[int | str, Summary] = {
        seconds: Summary.of(series.window(seconds), scale, seconds)
        for seconds in windows
        if seconds <= series.span
    }
    total = series.total
    if windows:  # windows=(): the histograms alone (an exporter's read), no summaries
        summaries["total"] = Summary.of(total, scale, None)
    return Series(
        family.name,
        family.kind,
        family.help,
        family.unit,
        named,
        float(total.count),
        summaries,
        total,
        scale,
    )


class Snapshot:
    """Every series of a registry at one moment."""

    def __init__(self, taken_at: float, series: list[Series]) -> None:
        self.taken_at = taken_at  # time.time()
        self.series = series

    def __iter__(self) -> Iterator[Series]:
        return iter(self.series)

    def __len__(self) -> int:
        return len(self.series)

    def select(self, name: str, /, **labels: str) -> list[Series]:
        """The series of a metric whose labels include these."""
        return [
            s
            for s in self.series
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        ]

    def get(self, name: str, /, **labels: str) -> Series | None:
        found = self.select(name, **labels)
        return found[0] if found else None

    def value(self, name: str, /, **labels: str) -> float:
        """The sum of the matching counters or gauges (a histogram's count); 0 if none."""
        return sum(s.value for s in self.select(name, **labels))

    def to_dict(self) -> dict[str, Any]:
        """Plain data for strict JSON: {name: [{labels, value, windows}]}
        (an empty window's mean and quantiles are None)."""
        result: dict[str, Any] = {}
        for s in self.series:
            item: dict[str, Any] = {"labels": s.labels, "value": _plain(s.value)}
            if s.windows:
                item["windows"] = {
                    str(k): {f: _plain(getattr(v, f)) for f in v.__dataclass_fields__}
                    for k, v in s.windows.items()
                }
            result.setdefault(s.name, []).append(item)
        return result

    def table(
        self,
        window: int | str = 60,
        *,
        zeros: bool = False,
        kinds: Iterable[str] = (COUNTER, GAUGE, HISTOGRAM),
    ) -> Table:
        """A rich table: counters and gauges (those at 0 only with zeros=True),
        and each histogram's count, rate and percentiles over `window` (10,
        60, 600 or "total"); `kinds` picks which of the three it shows."""
        try:
            from rich.table import Table
        except ModuleNotFoundError as missing:
            raise ConfigurationError(
                "Snapshot.table() draws with rich: pip install 'statekeep[metrics]'"
            ) from missing

        if window not in (*WINDOWS, "total"):
            raise ConfigurationError(
                f"a table's window is one of {', '.join(map(str, WINDOWS))} or 'total', "
                f"not {window!r}"
            )
        shown = set(kinds)
        timed = window != "total"
        table = Table(title=f"statekeep metrics (histograms over {_window_name(window)})")
        table.add_column("metric (labels)", no_wrap=True, max_width=32, overflow="ellipsis")
        columns = (
            ("count", "rate/s", "p50", "p99", "max") if timed else ("count", "p50", "p99", "max")
        )
        for column in columns:
            table.add_column(column, justify="right", no_wrap=True, min_width=8)
        for s in self.series:
            if s.kind not in shown:
                continue
            name = s.name.removeprefix("statekeep_").removesuffix("_total").removesuffix("_seconds")
            metric = " ".join([name, *(s.labels[k] for k in sorted(s.labels))])
            if s.kind in (COUNTER, GAUGE):
                if s.value or zeros:
                    table.add_row(metric, _number(s.value), *[""] * (len(columns) - 1))
                continue
            w = s.window(window)
            if not w.count:
                continue
            rate = [f"{w.rate:,.1f}" if w.rate else ""] if timed else []
            table.add_row(
                metric,
                f"{w.count:,}",
                *rate,
                _in(w.p50, s.unit),
                _in(w.p99, s.unit),
                _in(w.max, s.unit),
            )
        return table


def _plain(value: float) -> float | None:
    """A number for strict JSON: None for NaN (an empty window's quantiles)
    and for an infinity (a gauge set so)."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _window_name(window: int | str) -> str:
    names: dict[int | str, str] = {
        10: "the last 10 s",
        60: "the last minute",
        600: "the last 10 minutes",
    }
    return names.get(window, "all time")


def _number(value: float) -> str:
    return f"{int(value):,}" if value == int(value) else f"{value:,.3f}"


def _in(value: float, unit: str) -> str:
    if math.isnan(value):
        return ""
    if unit != "seconds":
        return f"{value:,.0f}"  # rows, entities, bytes: the metric's name says
    for limit, factor, name in ((1e-6, 1e9, "ns"), (1e-3, 1e6, "µs"), (1.0, 1e3, "ms")):
        if value < limit:
            return f"{value * factor:.3g} {name}"
    return f"{value:,.2f} s"
