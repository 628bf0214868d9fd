"""OpenTelemetry export through opentelemetry-api's observable instruments:
the SDK's reader calls back at each collection and the registry is read
then (the hot path never touches OpenTelemetry).

One instrument a family; its series' labels are the attributes:

- a counter: an ObservableCounter of the same name;
- a gauge: an ObservableGauge;
- a histogram `x`: ObservableCounters `x_count` and `x_sum` (all time, in
  the unit), and ObservableGauges `x_p50`, `x_p90` and `x_p99` (over the last
  minute, within 1%; no observation when nothing was recorded in it). The API
  has no observable histogram, so the buckets stay home; the quantiles are
  the ones the Prometheus export gives too.

Units: seconds -> "s", bytes -> "By", any other as an annotation ("{rows}").
A family made after instrument_otel() gets its instruments on the metrics
ticker's next second. With no SDK installed (or none set up), the API's
meter does nothing and the registry is never read. Once a store is closed,
its instruments observe nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from ..errors import ConfigurationError
from ._multiprocess import registry_of
from ._registry import Registry
from ._series import COUNTER, GAUGE, Family
from ._ticker import TICKER

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Meter, Observation

    Callback = Callable[[CallbackOptions], Iterable[Observation]]

INSTALL = "pip install 'statekeep[metrics]'"
QUANTILES = ("p50", "p90", "p99")
WINDOW = 60


def otel_unit(unit: str) -> str:
    """A unit as OpenTelemetry (UCUM) writes it."""
    return {"": "", "seconds": "s", "bytes": "By"}.get(unit, "{" + unit + "}")


class OtelInstruments:
    """The instruments instrument_otel() made (`names`), kept up to date with
    the registry's families until close()."""

    def __init__(self, source: object, registry: Registry, meter: Meter) -> None:
        self._source = source
        self.registry = registry
        self.meter = meter
        self.names: list[str] = []
        self._done: set[str] = set()
        self._lock = threading.Lock()
        self._closed = False
        self.refresh()
        TICKER.add(self)

    def __repr__(self) -> str:
        return f"<OtelInstruments of {self.registry!r}: {len(self.names)} instruments>"

    def tick(self, now: float) -> None:
        if self._stopped():
            TICKER.remove(self)
            return
        self.refresh()

    def close(self) -> None:
        """Stops observing (OpenTelemetry cannot take instruments back: theirs
        observe nothing from now on)."""
        self._closed = True
        TICKER.remove(self)

    def refresh(self) -> None:
        """Makes the instruments of families made since the last refresh."""
        with self._lock:
            for family in self.registry.families():
                if family.name not in self._done and not self._stopped():
                    self._done.add(family.name)
                    self._instrument(family)

    def _stopped(self) -> bool:
        return self._closed or getattr(self._source, "closed", False) is True

    def _instrument(self, family: Family) -> None:
        meter, name, help = self.meter, family.name, family.help
        unit = otel_unit(family.unit)
        if family.kind == COUNTER:
            meter.create_observable_counter(name, [self._values(name)], unit, help)
            self.names.append(name)
        elif family.kind == GAUGE:
            meter.create_observable_gauge(name, [self._values(name)], unit, help)
            self.names.append(name)
        else:
            meter.create_observable_counter(
                f"{name}_count", [self._values(name)], "", f"{help} (values recorded)"
            )
            meter.create_observable_counter(
                f"{name}_sum", [self._sums(name)], unit, f"{help} (sum of the values)"
            )
            self.names += [f"{name}_count", f"{name}_sum"]
            for quantile in QUANTILES:
                meter.create_observable_gauge(
                    f"{name}_{quantile}",
                    [self._quantiles(name, quantile)],
                    unit,
                    f"{help} ({quantile} over the last minute)",
                )
                self.names.append(f"{name}_{quantile}")

    def _values(self, name: str) -> Callback:
        from opentelemetry.metrics import Observation

        def observe(options: CallbackOptions) -> Iterable[Observation]:
            if self._stopped():
                return []
            found = self.registry.snapshot(names=[name], windows=())
            return [Observation(s.value, s.labels) for s in found]

        return observe

    def _sums(self, name: str) -> Callback:
        from opentelemetry.metrics import Observation

        def observe(options: CallbackOptions) -> Iterable[Observation]:
            if self._stopped():
                return []
            found = self.registry.snapshot(names=[name], windows=())
            return [
                Observation(s.histogram.sum * s.scale if s.histogram else 0.0, s.labels)
                for s in found
            ]

        return observe

    def _quantiles(self, name: str, quantile: str) -> Callback:
        from opentelemetry.metrics import Observation

        def observe(options: CallbackOptions) -> Iterable[Observation]:
            if self._stopped():
                return []
            found = self.registry.snapshot(names=[name], windows=(WINDOW,))
            return [
                Observation(getattr(s.window(WINDOW), quantile), s.labels)
                for s in found
                if s.window(WINDOW).count
            ]

        return observe


def instrument_otel(source: object, meter: Meter | None = None) -> OtelInstruments:
    """Observable OpenTelemetry instruments for a Registry, Store or
    AsyncStore, on `meter` (by default the global provider's meter
    "statekeep": a no-op until an SDK is set up)."""
    try:
        from opentelemetry import metrics
    except ImportError as exc:
        raise ConfigurationError(
            f"the OpenTelemetry export needs opentelemetry-api: {INSTALL}"
        ) from exc
    registry = registry_of(source)
    if meter is None:
        meter = metrics.get_meter("statekeep")
    elif not isinstance(meter, metrics.Meter):
        raise ConfigurationError(
            f"meter= takes an opentelemetry.metrics.Meter (or None), not {meter!r}"
        )
    return OtelInstruments(source, registry, meter)
