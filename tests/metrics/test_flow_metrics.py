"""statekeep.flow's parts report into the process-wide registry: what their
stats() say, by part, name and figure, read at each snapshot."""

from __future__ import annotations

import gc

import pytest

from statekeep.flow import Retry, Throttle
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
    assert snapshot.value(n.FLOW_EVENTS, part="retry", name="metrics-test-retry", figure="retries") == 1
    assert snapshot.get(
        n.FLOW_TIMING, part="throttle", name="metrics-test-api", figure="wait", stat="p99"
    ) is not None or not throttle.stats().timings["wait"].count


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


def test_flow_timings_are_metrics_histograms() -> None:
    retry = Retry(2, backoff=None, retry_on=KeyError, name="metrics-test-timings")
    with pytest.raises(KeyError):
        retry.call(lambda: {}["missing"])
    assert retry.stats().counts["gave_up"] == 1
