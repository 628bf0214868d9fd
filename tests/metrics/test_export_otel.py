"""statekeep.metrics' OpenTelemetry export, read by the real SDK
(MeterProvider with an InMemoryMetricReader), and with the API alone (no
SDK set up: nothing is read, nothing breaks)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.metrics import NoOpMeter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import statekeep
from statekeep import Entity
from statekeep.errors import ConfigurationError, NotFoundError
from statekeep.metrics import OtelInstruments, Registry, instrument_otel
from statekeep.metrics import names as n


class Memo(Entity, collection="otel_memos"):
    text: str = ""


@pytest.fixture
def store(tmp_path: Path) -> Iterator[statekeep.Store]:
    opened = statekeep.open("sqlite:///" + str(tmp_path / "x.db"))
    yield opened
    opened.close()


@pytest.fixture
def reader() -> Iterator[InMemoryMetricReader]:
    found = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[found])
    found.provider = provider  # type: ignore[attr-defined]
    yield found
    provider.shutdown()


def meter_of(reader: InMemoryMetricReader) -> Any:
    return reader.provider.get_meter("test")  # type: ignore[attr-defined]


def collected(reader: InMemoryMetricReader) -> dict[str, Any]:
    """name -> the metric (with its data points), from one collection."""
    data = reader.get_metrics_data()
    if data is None:  # nothing observed
        return {}
    return {
        metric.name: metric
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }


def point(metric: Any, **attributes: str) -> Any:
    found = [p for p in metric.data.data_points if dict(p.attributes) == attributes]
    assert len(found) == 1, (metric.name, attributes, metric.data.data_points)
    return found[0]


def test_the_sdk_reads_what_the_store_measures(
    store: statekeep.Store, reader: InMemoryMetricReader
) -> None:
    instruments = instrument_otel(store, meter_of(reader))
    for i in range(4):
        store.save(Memo(text=str(i)))
    with pytest.raises(NotFoundError):
        store.get(Memo, "missing")
    instruments.refresh()  # the failures' family is made by the first failure
    metrics = collected(reader)
    snapshot = store.metrics()
    save = snapshot.get(n.OPERATION, operation="save")
    assert save is not None

    count = metrics[n.OPERATION + "_count"]
    assert count.data.is_monotonic and point(count, operation="save").value == 4
    total = metrics[n.OPERATION + "_sum"]
    assert total.unit == "s"
    assert point(total, operation="save").value == pytest.approx(save.window("total").sum)
    for quantile in ("p50", "p90", "p99"):
        gauge = metrics[f"{n.OPERATION}_{quantile}"]
        assert gauge.unit == "s"
        assert point(gauge, operation="save").value == pytest.approx(
            getattr(save.window(60), quantile)
        )
    # no observation for an operation that did not run in the last minute
    assert not [
        p
        for p in metrics[n.OPERATION + "_p50"].data.data_points
        if dict(p.attributes) == {"operation": "delete"}
    ]
    failures = metrics[n.FAILURES]
    assert point(failures, operation="get", error="NotFoundError").value == 1
    commits = point(metrics[n.TRANSACTIONS], outcome="commit").value
    assert commits == snapshot.value(n.TRANSACTIONS, outcome="commit")
    assert point(metrics[n.ERROR_RATIO]).value == snapshot.value(n.ERROR_RATIO)
    assert set(instruments.names) <= set(metrics)
    assert "OtelInstruments" in repr(instruments)


def test_families_made_later_are_instrumented_on_the_next_tick(
    reader: InMemoryMetricReader,
) -> None:
    registry = Registry()
    registry.counter("early_total", "made first").inc()
    instruments = instrument_otel(registry, meter_of(reader))
    assert instruments.names == ["early_total"]
    registry.gauge("later", "made after", unit="bytes").set(7)
    registry.histogram("later_rows", "made after", unit="rows").record(3)
    deadline = time.monotonic() + 5
    while "later" not in instruments.names and time.monotonic() < deadline:
        time.sleep(0.05)  # the metrics ticker refreshes once a second
    metrics = collected(reader)
    assert point(metrics["later"]).value == 7 and metrics["later"].unit == "By"
    assert point(metrics["later_rows_count"]).value == 1
    assert metrics["later_rows_sum"].unit == "{rows}"
    assert point(metrics["later_rows_p99"]).value == 3
    instruments.close()


def test_a_closed_store_or_closed_export_observes_nothing(
    tmp_path: Path, reader: InMemoryMetricReader
) -> None:
    store = statekeep.open("memory://")
    store.save(Memo())
    instrument_otel(store, meter_of(reader))
    assert point(collected(reader)[n.OPERATION + "_count"], operation="save").value == 1
    store.close()
    metrics = collected(reader)
    assert all(not m.data.data_points for m in metrics.values() if "operation" in m.name)

    registry = Registry()
    registry.counter("kept_total").inc()
    instruments = instrument_otel(registry, meter_of(reader))
    assert point(collected(reader)["kept_total"]).value == 1
    instruments.close()
    kept = collected(reader).get("kept_total")
    assert kept is None or not kept.data.data_points


def test_without_an_sdk_instrumenting_does_nothing_harmful() -> None:
    reads: list[int] = []

    def read() -> float:
        reads.append(1)
        return 1.0

    registry = Registry()
    registry.gauge("watched", "read when observed", read=read)
    registry.timer("timed_seconds").observe(0.01)
    for meter in (None, NoOpMeter("statekeep")):  # the global provider: no SDK set up
        instruments = instrument_otel(registry, meter)
        assert isinstance(instruments, OtelInstruments)
        assert "watched" in instruments.names and "timed_seconds_p99" in instruments.names
        instruments.close()
    assert reads == []  # nothing was observed, so nothing was read


def test_bad_input_is_refused_and_a_missing_api_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ConfigurationError, match="Registry, a Store or an AsyncStore"):
        instrument_otel("memory://")
    with pytest.raises(ConfigurationError, match=r"opentelemetry\.metrics\.Meter"):
        instrument_otel(Registry(), meter="meter")  # type: ignore[arg-type]
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(ConfigurationError, match=r"pip install 'statekeep\[metrics\]'"):
        instrument_otel(Registry())
