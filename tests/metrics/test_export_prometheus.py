"""statekeep.metrics' Prometheus export: the text exposition read back with
prometheus_client's own parser, the same bytes as generate_latest over the
collector, the `le` buckets drawn from ours, the quantile gauges, the ASGI
app, and metrics pooled over processes through a shared directory (real
child processes: alive, dead, and of another run)."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import math
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from starlette.applications import Starlette
from starlette.routing import Mount

import statekeep
import statekeep.aio
from statekeep import Entity
from statekeep.errors import ConfigurationError, NotFoundError
from statekeep.metrics import (
    Histogram,
    Registry,
    exposition,
    metrics_app,
    prometheus_collector,
)
from statekeep.metrics import names as n
from statekeep.metrics._prometheus import POWERS_LE, SECONDS_LE, cumulative

INSTALL = "pip install 'statekeep[metrics]'"


class Note(Entity, collection="export_notes"):
    text: str = ""


@pytest.fixture
def store(tmp_path: Path) -> Iterator[statekeep.Store]:
    opened = statekeep.open("sqlite:///" + str(tmp_path / "x.db"))
    yield opened
    opened.close()


def samples(text: bytes | str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, parsed by prometheus_client: (name, labels) -> value."""
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    body = text.decode() if isinstance(text, bytes) else text
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def families(text: bytes) -> dict[str, tuple[str, list[Sample]]]:
    return {
        f.name: (f.type, list(f.samples)) for f in text_string_to_metric_families(text.decode())
    }


def work(store: statekeep.Store, saves: int = 5) -> None:
    for i in range(saves):
        store.save(Note(text=str(i)))
    with pytest.raises(NotFoundError):
        store.get(Note, "missing")


# -- the exposition --------------------------------------------------------------------


def test_the_exposition_reads_back_as_the_stores_metrics(store: statekeep.Store) -> None:
    work(store)
    text = exposition(store)
    snapshot = store.metrics()
    found = families(text)
    parsed = samples(text)

    kind, _ = found[n.OPERATION]
    assert kind == "histogram"
    save = snapshot.get(n.OPERATION, operation="save")
    assert save is not None and save.histogram is not None
    labels = (("operation", "save"),)
    assert parsed[(n.OPERATION + "_count", labels)] == save.value == 5
    assert parsed[(n.OPERATION + "_sum", labels)] == pytest.approx(save.histogram.sum * 1e-9)
    buckets = [
        parsed[(n.OPERATION + "_bucket", (("le", le), ("operation", "save")))]
        for le in [*(repr(b) for b in SECONDS_LE), "+Inf"]
    ]
    assert buckets == sorted(buckets) and buckets[-1] == 5
    for quantile in ("p50", "p90", "p99"):
        assert parsed[(f"{n.OPERATION}_{quantile}", labels)] == pytest.approx(
            getattr(save.window(60), quantile)
        )
    # a counter keeps its _total; get's NotFoundError is counted by its error
    assert found[n.FAILURES.removesuffix("_total")][0] == "counter"
    failed = (("error", "NotFoundError"), ("operation", "get"))
    assert parsed[(n.FAILURES, failed)] == 1
    assert parsed[(n.TRANSACTIONS, (("outcome", "commit"),))] == snapshot.value(
        n.TRANSACTIONS, outcome="commit"
    )
    assert found[n.ERROR_RATIO][0] == "gauge"
    # every series of the snapshot is there
    for s in snapshot:
        name = s.name + "_count" if s.kind == "histogram" else s.name
        assert parsed[(name, tuple(sorted(s.labels.items())))] == s.value, s


def test_the_exposition_is_generate_latest_over_the_collector(store: statekeep.Store) -> None:
    work(store)
    registry = store.registry
    registry.counter("odd_names", 'help with \\ and\nnewline and "quotes"', why='a"b\\c\nd').inc(3)
    registry.counter("no_suffix", "").inc()
    registry.gauge("temperature_celsius", "a gauge with a unit", unit="celsius").set(-1.5)
    registry.histogram("sizes_bytes", "bytes", unit="bytes", kind="x").record(10**9)
    registry.histogram("rows_seen", "", unit="rows").record(3)
    prometheus = CollectorRegistry()
    prometheus.register(prometheus_collector(store))
    assert exposition(store) == generate_latest(prometheus)
    assert b"no_suffix_total 1.0\n" in exposition(store)
    assert exposition(store, quantiles=False) == generate_latest_of(store, quantiles=False)


def generate_latest_of(source: object, **options: Any) -> bytes:
    prometheus = CollectorRegistry()
    prometheus.register(prometheus_collector(source, **options))
    return generate_latest(prometheus)


def test_an_empty_registry_exposes_nothing() -> None:
    assert exposition(Registry()) == b"" == generate_latest_of(Registry())


def test_every_source_kind_is_read_and_anything_else_refused(tmp_path: Path) -> None:
    registry = Registry()
    registry.counter("made_total").inc(2)
    assert samples(exposition(registry))[("made_total", ())] == 2

    async def from_async_store() -> bytes:
        store = await statekeep.aio.open("memory://")
        try:
            await store.save(Note(text="a"))
            return exposition(store)
        finally:
            await store.close()

    text = asyncio.run(from_async_store())
    assert samples(text)[(n.OPERATION + "_count", (("operation", "save"),))] == 1
    for wrong in ("memory://", 3, None, object()):
        with pytest.raises(ConfigurationError, match="Registry, a Store or an AsyncStore"):
            exposition(wrong)
        with pytest.raises(ConfigurationError, match="Registry, a Store or an AsyncStore"):
            prometheus_collector(wrong)
        with pytest.raises(ConfigurationError, match="Registry, a Store or an AsyncStore"):
            metrics_app(wrong)


def test_the_collector_reads_the_registry_at_each_scrape() -> None:
    reads: list[int] = []

    def read() -> float:
        reads.append(1)
        return 2.0

    registry = Registry()
    registry.gauge("read_at_scrape", read=read)
    collector = prometheus_collector(registry)
    prometheus = CollectorRegistry()  # registering collects nothing (describe() is empty)
    prometheus.register(collector)
    assert reads == []
    assert samples(generate_latest(prometheus)) == {("read_at_scrape", ()): 2.0}
    assert reads == [1]
    registry.counter("later_total", "made after").inc()
    assert samples(generate_latest(prometheus))[("later_total", ())] == 1.0
    assert "statekeep prometheus collector" in repr(collector)


def test_without_prometheus_client_the_collector_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.setitem(sys.modules, "prometheus_client.registry", None)
    with pytest.raises(ConfigurationError, match=INSTALL.replace("[", r"\[").replace("]", r"\]")):
        prometheus_collector(Registry())
    # the exposition and the app are ours: they need no extra
    assert exposition(Registry()) == b""


# -- histogram buckets -------------------------------------------------------------------


def test_the_bounds_are_fixed_and_documented() -> None:
    assert len(SECONDS_LE) == len(POWERS_LE) == 25
    assert SECONDS_LE[:4] == (1e-6, 2e-6, 5e-6, 1e-5) and SECONDS_LE[-1] == 100.0
    assert POWERS_LE[0] == 1.0 and POWERS_LE[-1] == 2.0**24


def test_a_bucket_counts_under_the_first_bound_at_or_above_its_largest_value() -> None:
    timer = Histogram()
    for nanoseconds in (0, 999, 1000, 1500, 2001, 10**12):
        timer.record(nanoseconds)
    counts = cumulative(timer, "seconds")
    # 999 is in [992, 1000): under 1 µs; 1000 is in [1000, 1008): under 2 µs, as
    # is 1500; 2001 under 5 µs; 1000 s above every bound (+Inf only)
    assert counts[:4] == [2, 4, 5, 5]
    assert counts[-2:] == [5, 6]
    rows = Histogram()
    for value in (0, 1, 2, 3, 127, 128, 256, 2**30):
        rows.record(value)
    counts = cumulative(rows, "rows")
    # below 128 every value is exact; 128 is in [128, 130) -> under 256, and
    # 256 in [256, 260) -> under 512
    assert counts[:10] == [2, 3, 4, 4, 4, 4, 4, 5, 6, 7]
    assert counts[-1] == 8 and counts[-2] == 7


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=2 * 10**11), min_size=1, max_size=200),
    st.sampled_from(["seconds", "rows"]),
)
def test_a_cumulative_count_is_exact_but_for_values_just_below_a_bound(
    values: list[int], unit: str
) -> None:
    histogram = Histogram()
    for value in values:
        histogram.record(value)
    counts = cumulative(histogram, unit)
    bounds = [
        round(b * 1e9) if unit == "seconds" else int(b)
        for b in (SECONDS_LE if unit == "seconds" else POWERS_LE)
    ]
    assert counts[-1] == len(values)
    for bound, count in zip(bounds, counts, strict=False):
        at_or_below = sum(v <= bound for v in values)
        near = sum(bound - bound / 64 <= v <= bound for v in values) if bound >= 128 else 0
        assert at_or_below - near <= count <= at_or_below


def test_the_quantile_gauges_cover_the_last_minute_only() -> None:
    now = [1000.0]
    registry = Registry(clock=lambda: now[0])
    timer = registry.timer("call_seconds", "a call")
    for ms in range(1, 101):
        timer.observe(ms / 1000)
    parsed = samples(exposition(registry))
    assert parsed[("call_seconds_p50", ())] == pytest.approx(0.050, rel=0.01)
    assert parsed[("call_seconds_p99", ())] == pytest.approx(0.099, rel=0.01)
    now[0] += 61
    parsed = samples(exposition(registry))
    assert ("call_seconds_p50", ()) not in parsed  # nothing in the last minute
    assert parsed[("call_seconds_count", ())] == 100  # all time
    assert ("call_seconds_p50", ()) not in samples(exposition(registry, quantiles=False))
    assert "call_seconds_p50" not in families(exposition(registry, quantiles=False))


# -- the ASGI app ------------------------------------------------------------------------


def get(app: Any, path: str, method: str = "GET", **headers: str) -> httpx.Response:
    """One request to an ASGI app (in-process, through httpx), its body read raw."""

    async def request() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://test") as client,
            client.stream(method, path, headers=headers) as answer,
        ):
            answer._content = b"".join([chunk async for chunk in answer.aiter_raw()])
            return answer

    return asyncio.run(request())


def test_the_app_serves_get_metrics_and_nothing_else(store: statekeep.Store) -> None:
    work(store)
    app = metrics_app(store)
    answer = get(app, "/metrics", **{"accept-encoding": "identity"})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "content-encoding" not in answer.headers
    assert samples(answer.content)[(n.OPERATION + "_count", (("operation", "save"),))] == 5
    head = get(app, "/metrics", "HEAD")
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) > 0
    assert get(app, "/").status_code == 404
    assert get(app, "/metrics/x").status_code == 404
    posted = get(app, "/metrics", "POST")
    assert posted.status_code == 405 and posted.headers["allow"] == "GET, HEAD"


def test_the_app_gzips_for_a_scraper_that_accepts_it(store: statekeep.Store) -> None:
    work(store)
    answer = get(metrics_app(store), "/metrics", **{"accept-encoding": "gzip"})
    assert answer.headers["content-encoding"] == "gzip"
    assert int(answer.headers["content-length"]) == len(answer.content)
    text = gzip.decompress(answer.content)
    assert samples(text)[(n.OPERATION + "_count", (("operation", "save"),))] == 5


def test_the_app_answers_at_its_mount_point(store: statekeep.Store) -> None:
    work(store, saves=2)
    app = Starlette(routes=[Mount("/metrics", app=metrics_app(store))])
    for path in ("/metrics/", "/metrics/metrics"):
        answer = get(app, path, **{"accept-encoding": "identity"})
        assert answer.status_code == 200, path
        assert samples(answer.content)[(n.OPERATION + "_count", (("operation", "save"),))] == 2
    elsewhere = Starlette(routes=[Mount("/internal", app=metrics_app(store))])
    assert get(elsewhere, "/internal/").status_code == 200
    assert get(elsewhere, "/internal/metrics").status_code == 200
    assert get(elsewhere, "/internal/other").status_code == 404


def test_the_app_takes_part_in_the_lifespan_and_closes_websockets() -> None:
    app = metrics_app(Registry())
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: Any) -> None:
        sent.append(message)

    asyncio.run(app({"type": "lifespan"}, receive, send))
    assert [m["type"] for m in sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    sent.clear()
    asyncio.run(app({"type": "websocket", "path": "/metrics"}, receive, send))
    assert sent == [{"type": "websocket.close", "code": 1000}]


# -- pooled over processes ----------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys
    from statekeep.metrics import Registry, metrics_app

    directory, count, stay = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "stay"
    registry = Registry()
    registry.counter("jobs_total", "jobs done").inc(count)
    registry.gauge("busy", "busy now").set(count)
    timer = registry.timer("job_seconds", "a job")
    for _ in range(count):
        timer.observe(2.0)  # far above the parent's: the quantiles tell them apart
    app = metrics_app(registry, multiprocess_dir=directory)
    app.scrape()  # writes this process's file
    print("ready", flush=True)
    if stay:
        sys.stdin.read()  # until the test closes it
    """
)


class Child:
    def __init__(self, directory: Path, count: int, *, stay: bool, new_run: bool = False) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(directory), str(count), "stay" if stay else "go"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=new_run,
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "ready"
        if not stay:
            self.process.wait(timeout=30)

    @property
    def pid(self) -> int:
        return self.process.pid

    def end(self) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()  # a child that stays ends when its stdin does
        self.process.wait(timeout=30)
        self.process.stdout.close()


def parent(directory: Path) -> tuple[Registry, Any]:
    registry = Registry()
    registry.counter("jobs_total", "jobs done").inc(2)
    registry.gauge("busy", "busy now").set(1)
    timer = registry.timer("job_seconds", "a job")
    for _ in range(100):
        timer.observe(0.001)
    return registry, metrics_app(registry, multiprocess_dir=directory)


def test_processes_pool_counters_histograms_and_live_gauges(tmp_path: Path) -> None:
    registry, app = parent(tmp_path)
    live = Child(tmp_path, 3, stay=True)
    try:
        found = samples(app.scrape())
        assert found[("jobs_total", ())] == 5
        assert found[("job_seconds_count", ())] == 103
        assert found[("job_seconds_sum", ())] == pytest.approx(0.1 + 6.0)
        assert found[("busy", (("pid", str(os.getpid())),))] == 1
        assert found[("busy", (("pid", str(live.pid)),))] == 3
        assert found[("job_seconds_p99", ())] == pytest.approx(2.0, rel=0.01)
    finally:
        live.end()
    # the child is gone: its counts stay, its gauge and its last minute go
    found = samples(app.scrape())
    assert found[("jobs_total", ())] == 5
    assert found[("job_seconds_count", ())] == 103
    assert ("busy", (("pid", str(live.pid)),)) not in found
    assert found[("job_seconds_p99", ())] == pytest.approx(0.001, rel=0.01)
    # and the text is prometheus_client's, through its collector too
    assert samples(generate_latest_of(registry, multiprocess_dir=tmp_path)) == found


def test_a_dead_process_of_the_same_run_keeps_counting(tmp_path: Path) -> None:
    gone = Child(tmp_path, 4, stay=False)
    _, app = parent(tmp_path)
    found = samples(app.scrape())
    assert found[("jobs_total", ())] == 6
    assert ("busy", (("pid", str(gone.pid)),)) not in found
    gone.end()


def test_another_runs_files_are_ignored_and_removed_once_dead(tmp_path: Path) -> None:
    other_live = Child(tmp_path, 7, stay=True, new_run=True)
    other_gone = Child(tmp_path, 11, stay=False, new_run=True)
    try:
        assert len(list(tmp_path.glob("*.json"))) == 2
        _, app = parent(tmp_path)
        found = samples(app.scrape())
        assert found[("jobs_total", ())] == 2  # ours only
        names = {p.name.partition("-")[0] for p in tmp_path.glob("*.json")}
        assert names == {str(os.getpid()), str(other_live.pid)}  # the dead one's file is gone
    finally:
        other_live.end()
        other_gone.end()


def test_one_registry_counts_once_however_many_apps_export_it(tmp_path: Path) -> None:
    registry, first = parent(tmp_path)
    second = metrics_app(registry, multiprocess_dir=tmp_path)
    collector = prometheus_collector(registry, multiprocess_dir=tmp_path)
    prometheus = CollectorRegistry()
    prometheus.register(collector)
    del first
    assert samples(second.scrape())[("jobs_total", ())] == 2
    assert samples(generate_latest_of(registry, multiprocess_dir=tmp_path))[("jobs_total", ())] == 2
    assert samples(generate_latest(prometheus))[("jobs_total", ())] == 2
    assert len(list(tmp_path.glob("*.json"))) == 1


def test_a_broken_file_is_left_out_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _, app = parent(tmp_path)
    (tmp_path / "1-1.json").write_text("{not json")
    (tmp_path / "2-2.json").write_text(json.dumps({"format": 99}))
    (tmp_path / ".3-3.json.123").write_text("half a file")  # a write in progress
    with caplog.at_level(logging.WARNING, logger="statekeep.metrics"):
        assert samples(app.scrape())[("jobs_total", ())] == 2
    assert sorted(r.getMessage().split()[1] for r in caplog.records) == [
        str(tmp_path / "1-1.json"),
        str(tmp_path / "2-2.json"),
    ]


def test_the_directory_comes_from_the_argument_the_environment_or_the_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STATEKEEP_METRICS_DIR", raising=False)
    registry = Registry()
    assert metrics_app(registry).reader.pool is None  # this process only
    assert metrics_app(registry, multiprocess_dir=False).reader.pool is None
    pool = metrics_app(registry, multiprocess_dir=str(tmp_path / "a" / "b")).reader.pool
    assert pool is not None and pool.directory == tmp_path / "a" / "b"
    assert (tmp_path / "a" / "b").is_dir()

    store = statekeep.open("memory://")
    try:
        pool = metrics_app(store, multiprocess_dir=True).reader.pool
        assert pool is not None and pool.directory.name.startswith("statekeep-metrics-")
        again = metrics_app(store, multiprocess_dir=True).reader.pool
        assert again is pool
        monkeypatch.setenv("STATEKEEP_METRICS_DIR", str(tmp_path / "env"))
        for asked in (None, True):
            pool = metrics_app(store, multiprocess_dir=asked).reader.pool
            assert pool is not None and pool.directory == tmp_path / "env"
        assert metrics_app(store, multiprocess_dir=False).reader.pool is None
    finally:
        store.close()


def test_a_bad_directory_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STATEKEEP_METRICS_DIR", raising=False)
    afile = tmp_path / "file"
    afile.write_text("")
    with pytest.raises(ConfigurationError, match="is a file, not a directory"):
        metrics_app(Registry(), multiprocess_dir=afile)
    with pytest.raises(ConfigurationError, match="is a file, not a directory"):
        metrics_app(Registry(), multiprocess_dir=afile / "below")
    with pytest.raises(ConfigurationError, match="has none: pass multiprocess_dir"):
        metrics_app(Registry(), multiprocess_dir=True)
    for wrong in (3, b"bytes", ["a"], ""):
        with pytest.raises(ConfigurationError, match="multiprocess_dir="):
            metrics_app(Registry(), multiprocess_dir=wrong)
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(ConfigurationError, match="not writable"):
            metrics_app(Registry(), multiprocess_dir=locked)


def test_nan_and_infinite_gauges_are_written_as_prometheus_reads_them() -> None:
    registry = Registry()
    registry.gauge("odd", "odd values", which="nan").set(math.nan)
    registry.gauge("odd", "odd values", which="inf").set(math.inf)
    registry.gauge("odd", "odd values", which="-inf").set(-math.inf)
    registry.gauge("odd", "odd values", which="big").set(12345678.5)
    found = samples(exposition(registry))
    assert math.isnan(found[("odd", (("which", "nan"),))])
    assert found[("odd", (("which", "inf"),))] == math.inf
    assert found[("odd", (("which", "-inf"),))] == -math.inf
    assert found[("odd", (("which", "big"),))] == 12345678.5
    assert exposition(registry) == generate_latest_of(registry)
