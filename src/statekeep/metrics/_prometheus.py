"""Prometheus export: the text exposition (written here, read at scrape time:
the hot path never touches prometheus_client), a prometheus_client
collector, and an ASGI app serving GET /metrics.

Names and types are prometheus_client's: a counter `x_total` (or `x`) is
exposed as `x_total`; gauges as they are; a histogram `x` as `x_bucket{le}`,
`x_count` and `x_sum`, in the family's unit (seconds for timers). Both
exports write the same bytes (the tests compare them with generate_latest).

Histogram buckets: ours are log-linear (1/64 of a power of two wide); the
exported `le` bounds are a fixed set, the same at every scrape and in every
process: for seconds the 1-2-5 series from 1 µs to 100 s (25 bounds), for
any other unit the powers of two from 1 to 2**24 (25 bounds), then +Inf. A
bucket of ours counts under the first bound at or above its largest value,
so a value within 1/64 below a bound may be counted under the next one
(values below 128 recorded units, and so integers below 128, are exact).

Beside each histogram `x`, the gauges `x_p50`, `x_p90` and `x_p99` give its
quantiles over the last minute (within 1%; no sample when nothing was
recorded in that minute): in-process quantiles need no histogram_quantile().
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from ._histogram import Histogram, bounds_of, bucket_of
from ._multiprocess import Reader, Row
from ._series import COUNTER, GAUGE, HISTOGRAM

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
INSTALL = "pip install 'statekeep[metrics]'"

# the exported `le` bounds, in the family's unit (see the module's docstring)
SECONDS_LE = (*(float(f"{m}e{e}") for e in range(-6, 2) for m in (1, 2, 5)), 100.0)
POWERS_LE = tuple(float(2**k) for k in range(25))
QUANTILES = ((0.5, "p50"), (0.9, "p90"), (0.99, "p99"))

_SECONDS_BOUNDS = tuple(round(le * 1e9) for le in SECONDS_LE)  # in nanoseconds
_POWERS_BOUNDS = tuple(int(le) for le in POWERS_LE)


def _go(value: float) -> str:
    """A float as Prometheus writes it (prometheus_client's floatToGoString)."""
    d = float(value)
    if d == _INF:
        return "+Inf"
    if d == -_INF:
        return "-Inf"
    if d != d:
        return "NaN"
    s = repr(d)
    dot = s.find(".")
    if d > 0 and dot > 6:  # Go switches to exponents sooner than Python
        mantissa = f"{s[0]}.{s[1:dot]}{s[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return s


_INF = float("inf")
_SECONDS_LE_TEXT = (*(_go(le) for le in SECONDS_LE), "+Inf")
_POWERS_LE_TEXT = (*(_go(le) for le in POWERS_LE), "+Inf")


def le_of(unit: str) -> tuple[float, ...]:
    """The exported `le` bounds of a histogram in `unit` (+Inf left out)."""
    return SECONDS_LE if unit == "seconds" else POWERS_LE


def _last_key_under(bound: int) -> int:
    """The last bucket whose values are all at or below bound (keys are consecutive)."""
    key = bucket_of(bound)
    return key if bounds_of(key)[1] - 1 == bound else key - 1


_SECONDS_KEYS = tuple(_last_key_under(b) for b in _SECONDS_BOUNDS)
_POWERS_KEYS = tuple(_last_key_under(b) for b in _POWERS_BOUNDS)


def cumulative(histogram: Histogram, unit: str) -> list[int]:
    """The count at or below each `le` bound of le_of(unit), then the total (+Inf):
    a bucket counts under the first bound at or above its largest value."""
    keys = _SECONDS_KEYS if unit == "seconds" else _POWERS_KEYS
    counts = [0] * (len(keys) + 1)
    at, last = 0, len(keys)
    for key, n in sorted(histogram.buckets.items()):
        while at < last and key > keys[at]:
            at += 1
        counts[at] += n
    running = 0
    for i, n in enumerate(counts):
        running += n
        counts[i] = running
    return counts


def _families(rows: Iterable[Row]) -> Iterator[list[Row]]:
    grouped: dict[str, list[Row]] = {}
    for row in rows:
        grouped.setdefault(row.name, []).append(row)
    return iter(grouped.values())


def _recent(row: Row) -> list[float] | None:
    recent = row.recent
    if recent is None or not recent.count:
        return None
    return [q * row.scale for q in recent.quantiles(q for q, _ in QUANTILES)]


# -- the text exposition ----------------------------------------------------------------


def exposition(source: object, *, quantiles: bool = True) -> bytes:
    """The Prometheus text exposition (format 0.0.4) of a Registry, Store or
    AsyncStore, in this process (`metrics_app(...).scrape()` gives the text
    pooled over processes). quantiles=False leaves out the `_p50/_p90/_p99`
    gauges."""
    return render(Reader(source, False, recent=quantiles).rows(), quantiles=quantiles)


def render(rows: Iterable[Row], *, quantiles: bool = True) -> bytes:
    out: list[str] = []
    write = out.append
    for family in _families(rows):
        first = family[0]
        name, kind = first.name, first.kind
        help = _help(first.help)
        if kind == COUNTER:
            name = name.removesuffix("_total") + "_total"
        write(f"# HELP {name} {help}\n# TYPE {name} {kind}\n")
        if kind != HISTOGRAM:
            for row in family:
                write(f"{name}{_labels(row.labels)} {_go(row.value)}\n")
            continue
        texts = _SECONDS_LE_TEXT if first.unit == "seconds" else _POWERS_LE_TEXT
        for row in family:
            head, tail = _around_le(row.labels)
            total = row.total or Histogram()
            for le, count in zip(texts, cumulative(total, row.unit), strict=True):
                write(f'{name}_bucket{{{head}le="{le}"{tail}}} {_go(count)}\n')
            labels = _labels(row.labels)
            write(f"{name}_count{labels} {_go(total.count)}\n")
            write(f"{name}_sum{labels} {_go(total.sum * row.scale)}\n")
        if quantiles:
            found = [(row, _recent(row)) for row in family]
            for i, (q, suffix) in enumerate(QUANTILES):
                gauge = f"{name}_{suffix}"
                write(f"# HELP {gauge} {_quantile_help(help, q)}\n# TYPE {gauge} gauge\n")
                for row, values in found:
                    if values is not None:
                        write(f"{gauge}{_labels(row.labels)} {_go(values[i])}\n")
    return "".join(out).encode()


def _help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _quantile_help(help: str, q: float) -> str:
    return (f"{help}: " if help else "") + f"{q:g} quantile over the last minute"


def _value(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_value(v)}"' for k, v in labels) + "}"


def _around_le(labels: tuple[tuple[str, str], ...]) -> tuple[str, str]:
    """The labels before and after `le` (sorted, as prometheus_client writes them)."""
    before = "".join(f'{k}="{_value(v)}",' for k, v in labels if k < "le")
    after = "".join(f',{k}="{_value(v)}"' for k, v in labels if k > "le")
    return before, after


# -- prometheus_client ------------------------------------------------------------------


def prometheus_collector(
    source: object, *, multiprocess_dir: object = None, quantiles: bool = True
) -> Collector:
    """A prometheus_client collector of a Registry, Store or AsyncStore, read
    at each scrape: `prometheus_client.REGISTRY.register(prometheus_collector(store))`.
    Same families as exposition() (multiprocess_dir: see metrics_app)."""
    try:
        from prometheus_client.registry import Collector
    except ImportError as exc:
        raise ConfigurationError(
            f"the Prometheus collector needs prometheus_client: {INSTALL}"
        ) from exc
    reader = Reader(source, multiprocess_dir, recent=quantiles)

    class StatekeepCollector(Collector):
        def collect(self) -> Iterable[Metric]:
            return families_of(reader.rows(), quantiles=quantiles)

        def describe(self) -> Iterable[Metric]:
            return []  # the families change as series are made: nothing to check up front

        def __repr__(self) -> str:
            return f"<statekeep prometheus collector of {reader.registry!r}>"

    return StatekeepCollector()


def families_of(rows: Iterable[Row], *, quantiles: bool = True) -> list[Metric]:
    """The rows as prometheus_client metric families, in render()'s order."""
    from prometheus_client.metrics_core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )

    result: list[Metric] = []
    for family in _families(rows):
        first = family[0]
        names = [k for k, _ in first.labels]
        unit = first.unit if first.unit and first.name.endswith("_" + first.unit) else ""
        if first.kind == COUNTER:
            counter = CounterMetricFamily(first.name, first.help, labels=names)
            for row in family:
                counter.add_metric([v for _, v in row.labels], row.value)
            result.append(counter)
        elif first.kind == GAUGE:
            gauge = GaugeMetricFamily(first.name, first.help, labels=names, unit=unit)
            for row in family:
                gauge.add_metric([v for _, v in row.labels], row.value)
            result.append(gauge)
        else:
            histogram = HistogramMetricFamily(first.name, first.help, labels=names, unit=unit)
            texts = _SECONDS_LE_TEXT if first.unit == "seconds" else _POWERS_LE_TEXT
            for row in family:
                total = row.total or Histogram()
                buckets = list(zip(texts, cumulative(total, row.unit), strict=True))
                histogram.add_metric(
                    [v for _, v in row.labels], buckets, sum_value=total.sum * row.scale
                )
            result.append(histogram)
            if quantiles:
                found = [(row, _recent(row)) for row in family]
                for i, (q, suffix) in enumerate(QUANTILES):
                    gauge = GaugeMetricFamily(
                        f"{first.name}_{suffix}", _quantile_help(first.help, q), labels=names
                    )
                    for row, values in found:
                        if values is not None:
                            gauge.add_metric([v for _, v in row.labels], values[i])
                    result.append(gauge)
    return result


# -- the ASGI app -----------------------------------------------------------------------

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class MetricsApp:
    """An ASGI app: GET (or HEAD) /metrics answers the text exposition
    (gzipped when the scraper accepts it); another path is 404, another
    method 405. Mounted (root_path set, as Starlette's Mount does), its mount
    point answers too. The scrape runs on a worker thread, off the loop."""

    def __init__(self, reader: Reader, quantiles: bool) -> None:
        self.reader = reader
        self.quantiles = quantiles

    def scrape(self) -> bytes:
        """The text exposition, pooled over processes when a directory is shared."""
        return render(self.reader.rows(), quantiles=self.quantiles)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if kind == "websocket":
            await send({"type": "websocket.close", "code": 1000})
            return
        if kind != "http":
            return
        path, root = scope.get("path", ""), scope.get("root_path", "")
        relative = path[len(root) :] if root and path.startswith(root) else path
        if relative != "/metrics" and not (root and relative in ("", "/")):
            await _answer(send, 404, b"Not Found\n")
            return
        method = scope.get("method", "GET")
        if method not in ("GET", "HEAD"):
            await _answer(send, 405, b"Method Not Allowed\n", [(b"allow", b"GET, HEAD")])
            return
        body = await asyncio.to_thread(self.scrape)
        headers = [(b"content-type", CONTENT_TYPE.encode())]
        if _accepts_gzip(scope):
            body = gzip.compress(body, compresslevel=5)
            headers.append((b"content-encoding", b"gzip"))
        headers.append((b"vary", b"Accept-Encoding"))
        await _answer(send, 200, b"" if method == "HEAD" else body, headers, len(body))


def _accepts_gzip(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"accept-encoding":
            return b"gzip" in value.lower()
    return False


async def _answer(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
    length: int | None = None,
) -> None:
    headers = headers or [(b"content-type", b"text/plain; charset=utf-8")]
    size = len(body) if length is None else length
    headers = [*headers, (b"content-length", str(size).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def metrics_app(
    source: object, *, multiprocess_dir: object = None, quantiles: bool = True
) -> MetricsApp:
    """An ASGI app serving GET /metrics for a Registry, Store or AsyncStore.

    multiprocess_dir pools the metrics of every process that names the same
    directory (gunicorn's workers): a path; True for one named after the
    store's URL (or $STATEKEEP_METRICS_DIR); None (the default) for
    $STATEKEEP_METRICS_DIR when set, else this process only; False for this
    process only. The rules: statekeep.metrics._multiprocess, docs/metrics.md."""
    return MetricsApp(Reader(source, multiprocess_dir, recent=quantiles), quantiles)
