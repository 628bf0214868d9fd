"""A registry of metrics: families by name, series by labels.

One per store (`store.metrics()` reads it), plus a process-wide default for
parts used without a store (`statekeep.metrics.default()`). Asking for a
series twice gives the same object, so a hot path asks once and keeps it.
Series are made on first use; a family's kind, unit and label names are
fixed by its first series (asking otherwise is a ConfigurationError).
"""

from __future__ import annotations

import os
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import TypeVar

from ..errors import ConfigurationError
from ._series import COUNTER, GAUGE, HISTOGRAM, Counter, Family, Gauge, Labels, Timer
from ._snapshot import Snapshot, series_of
from ._ticker import TICKER
from ._window import WINDOWS, Windowed

_NAME = re.compile(r"[a-z_][a-z0-9_]*\Z")
S = TypeVar("S", Counter, Gauge, Windowed)


class Registry:
    """Counters, gauges and windowed histograms, read as a Snapshot."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, span: int = 600) -> None:
        self._clock = clock
        self._span = span
        self._families: dict[str, Family] = {}
        self._label_names: dict[str, tuple[str, ...]] = {}
        self._series: dict[str, dict[Labels, Counter | Gauge | Windowed]] = {}
        self._lock = threading.Lock()
        self._before_read: list[Callable[[], None]] = []
        self._ticked = False
        _LIVE.add(self)

    # -- making series -------------------------------------------------------
    def counter(
        self,
        name: str,
        help: str = "",
        /,
        *,
        read: Callable[[], float] | None = None,
        **labels: str,
    ) -> Counter:
        """A counter; with read=, its value is read from it at each snapshot
        (a total kept elsewhere, which only goes up)."""
        counter = self._get(name, COUNTER, help, "", labels, Counter, Counter)
        if read is not None:
            counter.read = _callable(name, read)
        return counter

    def gauge(
        self,
        name: str,
        help: str = "",
        /,
        *,
        read: Callable[[], float] | None = None,
        unit: str = "",
        **labels: str,
    ) -> Gauge:
        """A gauge; with read=, its value is read from it at each snapshot."""
        gauge = self._get(name, GAUGE, help, unit, labels, Gauge, Gauge)
        if read is not None:
            gauge.read = _callable(name, read)
        return gauge

    def timer(self, name: str, help: str = "", /, **labels: str) -> Timer:
        """A histogram of durations (records nanoseconds, reads as seconds)."""
        made = self._get(
            name, HISTOGRAM, help, "seconds", labels, Timer, lambda: self._window(Timer)
        )
        if not isinstance(made, Timer):
            raise ConfigurationError(f"metric {name!r} is a histogram of {made!r}, not a timer")
        return made

    def histogram(self, name: str, help: str = "", /, *, unit: str = "", **labels: str) -> Windowed:
        """A histogram of whole numbers (rows, bytes) in `unit`."""
        if unit == "seconds":
            raise ConfigurationError(f"metric {name!r}: a histogram of seconds is a timer()")
        return self._get(
            name, HISTOGRAM, help, unit, labels, Windowed, lambda: self._window(Windowed)
        )

    def _window(self, cls: type[Windowed]) -> Windowed:
        if not self._ticked:  # the metrics thread counts its histograms' values each second
            self._ticked = True
            TICKER.add(self)
        return cls(self._span, self._clock)

    def tick(self, now: float) -> None:
        self.turn()  # on its own clock (a test's may not be the ticker's)

    def _get(
        self,
        name: str,
        kind: str,
        help: str,
        unit: str,
        labels: dict[str, str],
        cls: type[S],
        make: Callable[[], S],
    ) -> S:
        if not isinstance(name, str):
            raise ConfigurationError(f"a metric's name is a str, not {name!r}")
        key = tuple(sorted(labels.items()))
        series = self._series.get(name)
        if series is not None:
            found = series.get(key)
            made = self._families[name]
            if found is not None and made.kind == kind and made.unit == unit:
                return found  # type: ignore[return-value]
        with self._lock:
            family = self._families.get(name)
            if family is None:
                _check(name, kind, unit, help, labels)
                clash = _exported(name, kind) & {
                    n for f in self._families.values() for n in _exported(f.name, f.kind)
                }
                if clash:
                    raise ConfigurationError(
                        f"metric {name!r} would be exported as {sorted(clash)}, as another "
                        "metric of this registry is: choose another name"
                    )
                self._families[name] = Family(name, kind, help, unit)
                self._label_names[name] = tuple(sorted(labels))
                series = self._series[name] = {}
            else:
                if family.kind != kind or family.unit != unit:
                    raise ConfigurationError(
                        f"metric {name!r} is a {family.kind}"
                        + (f" of {family.unit}" if family.unit else "")
                        + f", not a {kind}"
                        + (f" of {unit}" if unit else "")
                    )
                if tuple(sorted(labels)) != self._label_names[name]:
                    raise ConfigurationError(
                        f"metric {name!r} has the labels {list(self._label_names[name])}, "
                        f"not {sorted(labels)}"
                    )
                series = self._series[name]
            for value in labels.values():
                if not isinstance(value, str):
                    raise ConfigurationError(f"a label's value is a str, not {value!r}")
            found = series.get(key)
            if found is None:
                found = series[key] = make()
            if not isinstance(found, cls):  # pragma: no cover - kinds are checked above
                raise ConfigurationError(f"metric {name!r} is not a {kind}")
            return found

    # -- reading -------------------------------------------------------------
    def before_read(self, refresh: Callable[[], None]) -> None:
        """refresh runs before each snapshot (to set gauges kept elsewhere)."""
        self._before_read.append(refresh)

    def forked(self) -> None:
        """In a forked child: fresh locks, and counters and histograms from
        zero (the parent's calls are the parent's; gauges keep their values)."""
        self._lock = threading.Lock()
        for series in self._series.values():
            for one in series.values():
                if isinstance(one, (Counter, Windowed)):
                    one.forked()

    def families(self) -> list[Family]:
        with self._lock:
            return list(self._families.values())

    def turn(self, now: float | None = None) -> None:
        """Closes the second for every histogram (the ticker, once a second)."""
        now = self._clock() if now is None else now
        with self._lock:
            windows = [
                s for f in self._series.values() for s in f.values() if isinstance(s, Windowed)
            ]
        for window in windows:
            window.turn(now)

    def snapshot(
        self, names: Iterable[str] | None = None, windows: tuple[int, ...] = WINDOWS
    ) -> Snapshot:
        """Every series as it is now (or those of `names`): counters, gauges,
        and each histogram over `windows` (the last 10 s, 1 min, 10 min) and
        all time."""
        for refresh in list(self._before_read):
            refresh()
        now = self._clock()
        wanted = None if names is None else set(names)
        with self._lock:
            families = [
                (self._families[n], dict(s))
                for n, s in self._series.items()
                if wanted is None or n in wanted
            ]
        taken = [
            series_of(family, labels, series, now, windows)
            for family, all_series in families
            for labels, series in sorted(all_series.items())
        ]
        return Snapshot(time.time(), taken)


# label names a registry refuses: Prometheus's own (le on a histogram's buckets,
# quantile, __-prefixed), and help, which is the second argument, not a keyword
_RESERVED_LABELS = frozenset({"le", "quantile", "help", "pid"})
_HISTOGRAM_PARTS = ("", "_bucket", "_count", "_sum", "_p50", "_p90", "_p99")


def _exported(name: str, kind: str) -> set[str]:
    """The names a family takes in the Prometheus exposition (see _prometheus)."""
    if kind == COUNTER:
        base = name.removesuffix("_total")
        return {base, base + "_total"}
    if kind == HISTOGRAM:
        return {name + part for part in _HISTOGRAM_PARTS}
    return {name}


def _check(name: str, kind: str, unit: str, help: str, labels: dict[str, str]) -> None:
    if not _NAME.match(name):
        raise ConfigurationError(
            f"a metric's name is lower-case letters, digits and _ (not first a digit), not {name!r}"
        )
    if not isinstance(unit, str) or not isinstance(help, str):
        raise ConfigurationError(f"metric {name!r}: unit= and help are str")
    for label in labels:
        if not _NAME.match(label) or label.startswith("__") or label in _RESERVED_LABELS:
            raise ConfigurationError(
                f"a label's name is like a metric's, not __-prefixed and none of "
                f"{sorted(_RESERVED_LABELS)}, not {label!r}"
            )


def _callable(name: str, read: object) -> Callable[[], float]:
    if not callable(read):
        raise ConfigurationError(f"metric {name!r}: read= is a function of no arguments")
    return read


_LIVE: weakref.WeakSet[Registry] = weakref.WeakSet()


def _forked() -> None:
    for registry in list(_LIVE):
        registry.forked()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)

_DEFAULT: Registry | None = None
_DEFAULT_LOCK = threading.Lock()


def default() -> Registry:
    """The process-wide registry, for parts used without a store."""
    global _DEFAULT
    if _DEFAULT is None:
        with _DEFAULT_LOCK:
            if _DEFAULT is None:
                _DEFAULT = Registry()
    return _DEFAULT
