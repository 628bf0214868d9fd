"""statekeep.metrics: counters, gauges and latency histograms (log-linear,
mergeable, quantiles within 1%, over the last 10 s, 1 min and 10 min), with
alerts and advice on top. A leaf: it imports only the standard library and
statekeep.errors (rich only to draw a table, prometheus_client and
opentelemetry only inside the exporters' functions).

Every store has a Registry (`store.metrics()` reads it); parts used without
a store report into `default()`. See docs/metrics.md.
"""

from . import _names as names
from ._advice import Advice, advise
from ._alerts import AlertRule, Alerts, Firing
from ._flow import unwatch_flow, watch_flow
from ._histogram import SUB, Histogram, bounds_of, bucket_of, merged, middle_of
from ._otel import OtelInstruments, instrument_otel
from ._patterns import Patterns
from ._prometheus import MetricsApp, exposition, metrics_app, prometheus_collector
from ._registry import Registry, default
from ._rules import default_alerts
from ._series import Counter, Family, Gauge, Timer
from ._snapshot import Series, Snapshot, Summary
from ._ticker import TICKER
from ._window import WINDOWS, Windowed

__all__ = [
    "SUB",
    "TICKER",
    "WINDOWS",
    "Advice",
    "AlertRule",
    "Alerts",
    "Counter",
    "Family",
    "Firing",
    "Gauge",
    "Histogram",
    "MetricsApp",
    "OtelInstruments",
    "Patterns",
    "Registry",
    "Series",
    "Snapshot",
    "Summary",
    "Timer",
    "Windowed",
    "advise",
    "bounds_of",
    "bucket_of",
    "default",
    "default_alerts",
    "exposition",
    "instrument_otel",
    "merged",
    "metrics_app",
    "middle_of",
    "names",
    "unwatch_flow",
    "prometheus_collector",
    "watch_flow",
]
