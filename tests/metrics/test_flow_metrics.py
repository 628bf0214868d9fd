"""statekeep.flow's parts report into the process-wide registry: what their
stats() say, by part, name and figure, read at each snapshot."""

from __future__ import annotations

import gc
import math

from statekeep.flow import Retry, Throttle
from statekeep.flow._stats import Timings
from statekeep.metrics import default
from statekeep.metrics import names as n


def test_a_throttle_and_a_retry_show_in_the_default_registry() -> None:
    throttle = Throttle(1000, burst=1000, name="metrics-test-api")
    retry = Retry(3, backoff=None, retry_on=ValueError, name="metrics-test-retry")
    for _ in range(5):
        throttle.call(lambda: None)
    failures = iter([ValueError("once"), None])

    def flaky() -> None:
        error = next(failures)
        if error is not None:
            raise error

    retry.call(flaky)
    snapshot = default().snapshot()
    admitted = throttle.stats().counts
    for figure, value in admitted.items():
        assert (
            snapshot.value(n.FLOW_EVENTS, part="throttle", name="metrics-test-api", figure=figure)
            == value
        )
    assert (
        snapshot.value(n.FLOW_EVENTS, part="retry", name="metrics-test-retry", figure="retries")
        == 1
    )
    assert (
        snapshot.get(
            n.FLOW_TIMING, part="throttle", name="metrics-test-api", figure="wait", stat="p99"
        )
        is not None
        or not throttle.stats().timings["wait"].count
    )


def test_parts_of_one_kind_and_name_add_up_and_gone_parts_are_not_read() -> None:
    first = Retry(2, backoff=None, name="metrics-test-twins")
    second = Retry(2, backoff=None, name="metrics-test-twins")
    first.call(lambda: None)
    second.call(lambda: None)
    second.call(lambda: None)
    registry = default()
    calls = {"part": "retry", "name": "metrics-test-twins", "figure": "calls"}
    assert registry.snapshot().value(n.FLOW_EVENTS, **calls) == 3
    del first, second
    gc.collect()
    third = Retry(2, backoff=None, name="metrics-test-twins")
    third.call(lambda: None)
    assert registry.snapshot().value(n.FLOW_EVENTS, **calls) == 1  # only the live one's


def test_flow_timings_are_metrics_histograms_within_one_percent() -> None:
    timings = Timings()
    values = [0.0001 * (1 + (k * 7919) % 1000) for k in range(1000)]  # 0.1 ms to 100 ms
    for value in values:
        timings.record(value)
    summary = timings.summary()
    ordered = sorted(values)
    assert summary.count == 1000 and abs(summary.max - ordered[-1]) <= 1e-9
    for q, found in ((0.5, summary.p50), (0.99, summary.p99)):
        exact = ordered[math.ceil(q * 1000) - 1]
        assert abs(found - exact) <= 0.01 * exact
