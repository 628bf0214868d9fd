"""statekeep.metrics: what recording costs the store's hot paths, what a
record costs beside prometheus_client and the OpenTelemetry SDK, and what a
scrape costs.

Every timed part runs in rounds (the contenders interleaved, who goes first
rotating, each on fresh objects and files made untimed, after a full garbage
collection: harness.rounds); the median round is judged, the best beside it.
The extra table after the results notes the machine's other load during each
part. Sizes are drawn from the shared ones (see _Counts).

1. Metrics on the store's hot paths: the same workload on a store opened
   with metrics on (the default) and with `metrics=False`, SQLite files in
   WAL, the entities made untimed. `store.get` of distinct random ids from
   a table of Sizes.get_stored entities (both stores read the same file);
   `store.save_many` of new entities into a fresh file each; a loop of
   `store.save` (a commit each) into a fresh file each; a loop of
   `store.enqueue` (the caller's time; the write-behind engine started
   untimed, everything stored after the clock stops). Each round's pair ran
   back to back, so the targets are judged on the median of the rounds'
   paired differences (get: <= 0.5 us added a call) and ratios (save_many:
   <= 3% overhead). The save loop and enqueue are reported, not judged.
2. A histogram record: `statekeep.metrics.Histogram.record(ns)` (a whole
   number of nanoseconds), a registry Timer's `record(ns)` (what a store's
   calls record into) and `Timer.observe(seconds)`, each followed by the
   timed `turn()` that counts what was recorded (the metrics thread's work
   once a second, which a Timer may leave to it), against
   prometheus_client's `Histogram.observe(seconds)` (default buckets, a
   CollectorRegistry of its own) and the OpenTelemetry SDK's
   `Histogram.record(seconds)` (a MeterProvider with an InMemoryMetricReader,
   so the values are aggregated; no exporter). The same pre-generated
   lognormal latencies (median 1 ms) for all; the cost per call is above
   the same loop calling a function that does nothing. Target: statekeep's
   records (Histogram's and the Timer's, each judged) <= 0.5x
   prometheus_client's observe.
3. A scrape of 200 series: 100 timers (two families, labelled, 200 lognormal
   latencies each), 50 counters and 50 gauges, the same in a
   prometheus_client CollectorRegistry. statekeep's own text exposition
   (`statekeep.metrics.exposition(registry)`, and with quantiles=False:
   without the last minute's _p50/_p90/_p99 gauges) and prometheus_client's
   `generate_latest` over statekeep's collector
   (`statekeep.metrics.prometheus_collector(registry)`), against
   prometheus_client's own `generate_latest` of its registry: milliseconds
   a scrape, no target (the ratio is reported). Without the exposition
   module, `registry.snapshot()` is measured instead and the row says so.
   Beside it, the same registry after ten minutes of values (every timer
   recorded into each of the last 600 seconds, on a clock of the
   benchmark's), when a snapshot merges each timer's per-second histograms
   for its windows.
"""

from __future__ import annotations

import math
import os
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import statekeep
import statekeep.metrics as sk_metrics

from . import _models, load
from .harness import (
    CallCosts,
    Cleanup,
    ExtraTable,
    Progress,
    Result,
    Run,
    Sizes,
    Trial,
    micros,
    remove_db,
    rounds,
)

MOST_GET_US = 0.5  # target: microseconds metrics add to a store.get
MOST_SAVE_MANY = 0.03  # target: metrics' overhead on save_many
MOST_RECORD = 0.5  # target: a record's cost, of prometheus_client's observe

ON = "metrics on (the default)"
OFF = "metrics=False (the reference)"


@dataclass(frozen=True)
class _Counts:
    """This module's sizes, drawn from the shared ones (quick runs shrink them)."""

    get: int  # distinct random ids read per round
    stored: int  # rows in the table the gets read from
    save_many: int  # entities per save_many
    save: int  # save() calls per round
    enqueue: int  # enqueue() calls per round
    records: int  # record calls per round (a quarter for the OpenTelemetry SDK)
    scrapes: int  # scrapes per round (a quarter of them of the aged registry)
    seconds: int  # seconds of values of the aged registry
    rounds: int  # rounds of parts 1 and 2
    scrape_rounds: int  # rounds of part 3

    @classmethod
    def of(cls, sizes: Sizes) -> _Counts:
        return cls(
            get=sizes.get,
            stored=sizes.get_stored,
            save_many=sizes.save_many // 5,
            save=sizes.save // 2,
            enqueue=sizes.enqueue_many // 5,
            records=sizes.flow_calls,
            scrapes=max(sizes.save // 1_000, 2),
            seconds=600 if sizes.save >= 10_000 else 30,
            rounds=2 * sizes.repeats + 1,  # paired figures want more rounds than best-of
            scrape_rounds=sizes.repeats,
        )


def run(sizes: Sizes, workdir: str, progress: Progress) -> list[Result | ExtraTable]:
    counts = _Counts.of(sizes)
    parts: tuple[tuple[str, Callable[[], list[Result]]], ...] = (
        ("1. hot paths, metrics on vs off", lambda: _hot_paths(counts, workdir, progress)),
        ("2. histogram record", lambda: _record(counts, progress)),
        ("3. scrape of 200 series", lambda: _scrape(counts, progress)),
    )
    results: list[Result | ExtraTable] = []
    loads: list[tuple[str, load.Load]] = []
    first = load.snapshot()
    for name, part in parts:
        before = load.snapshot()
        results += part()
        loads.append((name, load.between(before, load.snapshot())))
    loads.append(("all of statekeep.metrics", load.between(first, load.snapshot())))
    results.append(
        load.load_table("statekeep.metrics: the machine's other load during each part", loads)
    )
    return results


def _signedmicros(seconds: float) -> str:
    return f"{seconds * 1e6:+.2f} us"


def _nothing(value: object) -> None:
    return None


# -- 1. hot paths, metrics on vs off ---------------------------------------------------


def _open(path: str, metrics: bool, **options: Any) -> statekeep.Store:
    return statekeep.open(f"sqlite:///{path}", metrics=metrics, **options)


def _hot_paths(counts: _Counts, workdir: str, progress: Progress) -> list[Result]:
    rows: list[Result] = []
    rows += _get(counts, workdir, progress)
    rows += _save_many(counts, workdir, progress)
    rows += _save_loop(counts, workdir, progress)
    rows += _enqueue(counts, workdir, progress)
    return rows


def _on_off(
    label: str,
    times: dict[str, list[float]],
    n: int,
    unit: str,
    target: tuple[str, Callable[[float, float], bool]] | None = None,
) -> list[Result]:
    """The rows of a workload timed with metrics on and off: the reference,
    and metrics on with the median of the rounds' paired differences (a
    call) and ratios; target: (text, passed(added seconds a call, overhead))."""
    on, off = times[ON], times[OFF]
    median_on, median_off = statistics.median(on), statistics.median(off)
    added = sorted((a - b) / n for a, b in zip(on, off, strict=True))
    ratios = sorted(a / b for a, b in zip(on, off, strict=True))
    added_median, overhead = statistics.median(added), statistics.median(ratios) - 1
    judged: dict[str, Any] = {}
    if target is not None:
        judged = {"target": target[0], "passed": target[1](added_median, overhead)}
    return [
        Result(
            label,
            OFF,
            n / median_off,
            1.0,
            detail=f"{micros(median_off / n)} {unit} (best {micros(min(off) / n)})",
        ),
        Result(
            label,
            ON,
            n / median_on,
            median_off / median_on,
            detail=f"{_signedmicros(added_median)} {unit}, {overhead:+.1%} (medians of "
            f"{len(added)} paired rounds: {_signedmicros(added[0])} to {_signedmicros(added[-1])}, "
            f"{ratios[0] - 1:+.1%} to {ratios[-1] - 1:+.1%}; best / best "
            f"{min(on) / min(off) - 1:+.1%}); {micros(median_on / n)} {unit}",
            **judged,
        ),
    ]


def _get(counts: _Counts, workdir: str, progress: Progress) -> list[Result]:
    n, stored = counts.get, counts.stored
    progress(f"metrics get: storing {stored:,} entities to read")
    path = os.path.join(workdir, "metrics_get.db")
    remove_db(path)
    ids = _models.new_ids(stored)
    with _open(path, False) as store:
        store.save_many(_models.entities(_models.field_rows(stored, seed=3), ids))
    wanted = random.Random(4).sample(ids, n)
    model = _models.BenchTodo

    def trial(metrics: bool) -> Trial:
        def make() -> tuple[Run, Cleanup]:
            store = _open(path, metrics)
            store.count(model)  # the table checked once, untimed
            get = store.get

            def read() -> None:
                for id in wanted:
                    get(model, id)

            return read, store.close

        return make

    try:
        times = rounds({ON: trial(True), OFF: trial(False)}, counts.rounds, progress, "metrics get")
    finally:
        remove_db(path)
    return _on_off(
        f"metrics cost: get {n:,} random of {stored:,} (SQLite file, WAL)",
        times,
        n,
        "a get",
        (f"<= {MOST_GET_US:g} us added a get", lambda added, _: added * 1e6 <= MOST_GET_US),
    )


def _fresh_store(path: str, metrics: bool, **options: Any) -> statekeep.Store:
    """A store on a new file, its table made (one entity saved), untimed."""
    remove_db(path)
    store = _open(path, metrics, **options)
    store.save(_models.BenchTodo(**_models.field_rows(1, seed=2)[0]))
    return store


def _writes(
    n: int,
    path: str,
    counts: _Counts,
    progress: Progress,
    label: str,
    write: Callable[[statekeep.Store, list[_models.BenchTodo]], object],
) -> dict[str, list[float]]:
    """Rounds of `write` of n new entities into a fresh store, metrics on and off."""
    rows = _models.field_rows(n)

    def trial(metrics: bool) -> Trial:
        def make() -> tuple[Run, Cleanup]:
            store = _fresh_store(path, metrics)
            entities = _models.entities(rows)

            def run() -> None:
                write(store, entities)

            def cleanup() -> None:
                assert store.count(_models.BenchTodo) == n + 1
                store.close()
                remove_db(path)

            return run, cleanup

        return make

    return rounds({ON: trial(True), OFF: trial(False)}, counts.rounds, progress, label)


def _save_many(counts: _Counts, workdir: str, progress: Progress) -> list[Result]:
    n = counts.save_many
    path = os.path.join(workdir, "metrics_save_many.db")
    times = _writes(
        n, path, counts, progress, "metrics save_many", lambda store, es: store.save_many(es)
    )
    return _on_off(
        f"metrics cost: save_many of {n:,} new entities (SQLite file, WAL)",
        times,
        n,
        "an entity",
        (
            f"overhead <= {MOST_SAVE_MANY:.0%}",
            lambda _, overhead: overhead <= MOST_SAVE_MANY,
        ),
    )


def _save_loop(counts: _Counts, workdir: str, progress: Progress) -> list[Result]:
    n = counts.save
    path = os.path.join(workdir, "metrics_save.db")

    def loop(store: statekeep.Store, entities: list[_models.BenchTodo]) -> None:
        save = store.save
        for entity in entities:
            save(entity)

    times = _writes(n, path, counts, progress, "metrics save loop", loop)
    return _on_off(
        f"metrics cost: a loop of save, {n:,} new entities, a commit each (SQLite file)",
        times,
        n,
        "a save",
    )


def _enqueue(counts: _Counts, workdir: str, progress: Progress) -> list[Result]:
    n = counts.enqueue
    path = os.path.join(workdir, "metrics_enqueue.db")
    rows = _models.field_rows(n)
    # room for every write: the caller never waits for the engine
    options = statekeep.WriteBehindOptions(max_pending=2 * n + 10)

    def trial(metrics: bool) -> Trial:
        def make() -> tuple[Run, Cleanup]:
            store = _fresh_store(path, metrics, writebehind=options)
            store.enqueue(_models.BenchTodo(**_models.field_rows(1, seed=5)[0]))
            store.flush()  # the engine started, untimed
            entities = _models.entities(rows)
            enqueue = store.enqueue

            def run() -> None:
                for entity in entities:
                    enqueue(entity)

            def cleanup() -> None:
                assert store.flush(60.0)
                assert store.count(_models.BenchTodo) == n + 2
                store.close()
                remove_db(path)

            return run, cleanup

        return make

    times = rounds({ON: trial(True), OFF: trial(False)}, counts.rounds, progress, "metrics enqueue")
    return _on_off(
        f"metrics cost: enqueue of {n:,} new entities, the caller's time (SQLite file)",
        times,
        n,
        "a call",
    )


# -- 2. histogram record ---------------------------------------------------------------

SK_RECORD = "statekeep Histogram.record(ns)"
SK_TIMER = "statekeep Timer.record(ns) (a store's calls), the turn that counts them included"
SK_OBSERVE = "statekeep Timer.observe(seconds), the turn included"
PROM = "prometheus_client Histogram.observe(seconds), default buckets"
OTEL = "OpenTelemetry SDK Histogram.record(seconds), InMemoryMetricReader"
NOOP = "a function doing nothing (the loop's own cost)"


def _latencies(n: int, seed: int = 7) -> list[float]:
    """n lognormal latencies in seconds: median 1 ms, a long right tail."""
    rng = random.Random(seed)
    return [rng.lognormvariate(math.log(1e-3), 1.0) for _ in range(n)]


def _record(counts: _Counts, progress: Progress) -> list[Result]:
    import prometheus_client
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    n = counts.records
    seconds = _latencies(n)
    nanoseconds = [int(value * 1e9) for value in seconds]
    calls = {SK_RECORD: n, SK_TIMER: n, SK_OBSERVE: n, PROM: n, OTEL: n // 4, NOOP: n}

    def loop(record: Callable[[Any], object], values: list[Any]) -> Run:
        def run() -> None:
            for value in values:
                record(value)

        return run

    def sk_record() -> tuple[Run, Cleanup]:
        histogram = sk_metrics.Histogram()

        def cleanup() -> None:
            assert histogram.count == n

        return loop(histogram.record, nanoseconds), cleanup

    def timer_trial(observe: bool) -> Trial:
        def make() -> tuple[Run, Cleanup]:
            timer = sk_metrics.Registry().timer("bench_latency_seconds", "A latency")
            recorded = loop(timer.observe, seconds) if observe else loop(timer.record, nanoseconds)

            def run() -> None:
                recorded()
                timer.turn()  # what the metrics thread does with them, timed too

            def cleanup() -> None:
                assert timer.total.count == n

            return run, cleanup

        return make

    def prom() -> tuple[Run, Cleanup]:
        registry = prometheus_client.CollectorRegistry()
        histogram = prometheus_client.Histogram(
            "bench_latency_seconds", "A latency", registry=registry
        )
        return loop(histogram.observe, seconds), lambda: None

    def otel() -> tuple[Run, Cleanup]:
        reader = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[reader])
        histogram = provider.get_meter("bench").create_histogram("bench_latency", unit="s")

        def cleanup() -> None:
            assert reader.get_metrics_data() is not None
            provider.shutdown()

        return loop(histogram.record, seconds[: calls[OTEL]]), cleanup

    def noop() -> tuple[Run, Cleanup]:
        return loop(_nothing, seconds), lambda: None

    trials: dict[str, Trial] = {
        SK_RECORD: sk_record,
        SK_TIMER: timer_trial(observe=False),
        SK_OBSERVE: timer_trial(observe=True),
        PROM: prom,
        OTEL: otel,
        NOOP: noop,
    }
    times = rounds(trials, counts.rounds, progress, "metrics histogram record")
    costs = CallCosts(times, calls, NOOP)
    median, best, cost, text = costs.median, costs.best, costs.cost, costs.text

    label = "metrics: a histogram record, lognormal latencies (cost above the loop's)"
    rows = []
    for name in (SK_RECORD, SK_TIMER):  # both of statekeep's records are judged
        ratio = cost(name) / cost(PROM)
        rows.append(
            Result(
                label,
                name,
                1 / median[name],
                cost(PROM) / cost(name),
                target=f"cost <= {MOST_RECORD:g}x prometheus_client's",
                passed=ratio <= MOST_RECORD,
                detail=f"{text(name)}; {ratio:.2f}x prometheus_client's "
                f"(best / best {cost(name, True) / cost(PROM, True):.2f}x)",
            )
        )
    for name in (SK_OBSERVE, PROM, OTEL):
        rows.append(
            Result(
                label,
                name,
                1 / median[name],
                cost(PROM) / cost(name),
                detail=f"{text(name)}; {cost(name) / cost(PROM):.2f}x prometheus_client's"
                + ("; " + _versions() if name == PROM else ""),
            )
        )
    rows.append(
        Result(
            label,
            NOOP,
            1 / median[NOOP],
            detail=f"{micros(median[NOOP])} a call (best {micros(best[NOOP])}): "
            "taken off every other row",
        )
    )
    return rows


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in ("prometheus-client", "opentelemetry-sdk"):
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:  # pragma: no cover - the dev extra installs both
            found.append(f"{name} (not installed)")
    return ", ".join(found)


# -- 3. scrape -------------------------------------------------------------------------

OPERATIONS = 50  # series of bench_operation_seconds{operation}
FINDS = 50  # ... of bench_find_seconds{collection, index}
COUNTERS = 50
GAUGES = 50
VALUES = 200  # latencies recorded into each timer

PROM_NATIVE = "prometheus_client generate_latest of its own registry (the reference)"
SK_TEXT = "statekeep exposition(registry), its own text format"
SK_TEXT_BARE = "statekeep exposition(registry, quantiles=False): no _p50/_p90/_p99 gauges"
SK_COLLECTOR = "prometheus_client generate_latest over statekeep's prometheus_collector"
SK_SNAPSHOT = "statekeep registry.snapshot() (no exposition function yet: the snapshot only)"


class _Clock:
    """A registry's clock the benchmark moves (the aged registry's ten minutes)."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _series_labels() -> tuple[list[str], list[tuple[str, str]], list[str], list[str]]:
    operations = [f"op{i:02d}" for i in range(OPERATIONS)]
    finds = [(f"collection{i // 2:02d}", ("yes", "no")[i % 2]) for i in range(FINDS)]
    kinds = [f"kind{i:02d}" for i in range(COUNTERS)]
    queues = [f"queue{i:02d}" for i in range(GAUGES)]
    return operations, finds, kinds, queues


def _sk_registry(values: list[float], seconds: int = 0) -> sk_metrics.Registry:
    """statekeep's 200 series; seconds > 0: the values spread over that many
    past seconds (the registry turned each second), as in a process that
    has run that long."""
    clock = _Clock()
    registry = sk_metrics.Registry(clock=clock)
    operations, finds, kinds, queues = _series_labels()
    timers = [
        registry.timer("bench_operation_seconds", "A call's time", operation=operation)
        for operation in operations
    ] + [
        registry.timer("bench_find_seconds", "A find's time", collection=c, index=i)
        for c, i in finds
    ]
    nanoseconds = [int(value * 1e9) for value in values]
    if seconds:
        per_second = max(len(nanoseconds) // seconds, 1)
        for second in range(seconds):
            clock.now = 1_000_000.0 - seconds + second
            chunk = nanoseconds[second * per_second : (second + 1) * per_second] or nanoseconds[:1]
            for timer in timers:
                for value in chunk:
                    timer.record(value)
            registry.turn(clock.now)
        clock.now = 1_000_000.0
    else:
        for timer in timers:
            for value in nanoseconds:
                timer.record(value)
    for i, kind in enumerate(kinds):
        registry.counter("bench_events_total", "Events seen", kind=kind).inc(i * 7 + 1)
    for i, queue in enumerate(queues):
        registry.gauge("bench_queue_depth", "Items waiting", queue=queue).set(i * 3.5)
    return registry


def _prom_registry(values: list[float]) -> Any:
    import prometheus_client

    registry = prometheus_client.CollectorRegistry()
    operations, finds, kinds, queues = _series_labels()
    operation = prometheus_client.Histogram(
        "bench_operation_seconds", "A call's time", ["operation"], registry=registry
    )
    find = prometheus_client.Histogram(
        "bench_find_seconds", "A find's time", ["collection", "index"], registry=registry
    )
    children = [operation.labels(o) for o in operations] + [find.labels(c, i) for c, i in finds]
    for child in children:
        for value in values:
            child.observe(value)
    events = prometheus_client.Counter("bench_events", "Events seen", ["kind"], registry=registry)
    for i, kind in enumerate(kinds):
        events.labels(kind).inc(i * 7 + 1)
    depth = prometheus_client.Gauge(
        "bench_queue_depth", "Items waiting", ["queue"], registry=registry
    )
    for i, queue in enumerate(queues):
        depth.labels(queue).set(i * 3.5)
    return registry


def _scrapers(registry: sk_metrics.Registry) -> dict[str, Callable[[], object]]:
    """statekeep's ways to scrape registry: the exposition module's two, or
    the snapshot when that module is not there."""
    import prometheus_client

    exposition = getattr(sk_metrics, "exposition", None)
    collector_of = getattr(sk_metrics, "prometheus_collector", None)
    found: dict[str, Callable[[], object]] = {}
    if exposition is not None:
        found[SK_TEXT] = lambda: exposition(registry)
        found[SK_TEXT_BARE] = lambda: exposition(registry, quantiles=False)
    if collector_of is not None:
        collected = prometheus_client.CollectorRegistry(auto_describe=False)
        collected.register(collector_of(registry))
        found[SK_COLLECTOR] = lambda: prometheus_client.generate_latest(collected)
    if not found:
        found[SK_SNAPSHOT] = registry.snapshot
    return found


def _scrape(counts: _Counts, progress: Progress) -> list[Result]:
    values = _latencies(VALUES, seed=11)
    rows: list[Result] = []
    progress("metrics scrape: filling the registries")
    prom = _prom_registry(values)
    fresh = _sk_registry(values)
    aged_values = _latencies(counts.seconds * 2, seed=13)  # two values a second a timer
    aged = _sk_registry(aged_values, seconds=counts.seconds)
    prom_aged = _prom_registry(aged_values)
    for registry, native, title, k in (
        (fresh, prom, f"{VALUES} latencies each, recorded in one second", counts.scrapes),
        (
            aged,
            prom_aged,
            f"two latencies a second each for {counts.seconds} s",
            max(counts.scrapes // 4, 1),
        ),
    ):
        scrapers = _scrapers(registry)
        scrapers[PROM_NATIVE] = _generate_latest(native)
        sizes = {name: _size(scrape()) for name, scrape in scrapers.items()}

        label = (
            f"metrics: a scrape of 200 series (100 timers: {title}; "
            f"{COUNTERS} counters, {GAUGES} gauges)"
        )
        times = rounds(
            {name: _scrapes(scrape, k) for name, scrape in scrapers.items()},
            counts.scrape_rounds,
            progress,
            f"metrics scrape ({title})",
        )
        median = {name: statistics.median(t) / k for name, t in times.items()}
        best = {name: min(t) / k for name, t in times.items()}
        for name in [PROM_NATIVE, *[s for s in scrapers if s != PROM_NATIVE]]:
            ratio = median[PROM_NATIVE] / median[name]
            size = f"; {sizes[name]:,} bytes" if sizes[name] is not None else ""
            rows.append(
                Result(
                    label,
                    name,
                    1 / median[name],
                    ratio,
                    detail=f"{micros(median[name])} a scrape (best {micros(best[name])}); "
                    f"{median[name] / median[PROM_NATIVE]:.2f}x prometheus_client's time{size}",
                )
            )
    return rows


def _generate_latest(registry: Any) -> Callable[[], object]:
    import prometheus_client

    return lambda: prometheus_client.generate_latest(registry)


def _scrapes(scrape: Callable[[], object], k: int) -> Trial:
    """k scrapes a round."""

    def make() -> tuple[Run, Cleanup]:
        def run() -> None:
            for _ in range(k):
                scrape()

        return run, lambda: None

    return make


def _size(scraped: object) -> int | None:
    return len(scraped) if isinstance(scraped, (bytes, str)) else None
