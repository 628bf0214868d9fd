"""statekeep.metrics' histograms: quantiles within 1% of the exact ones,
merging, sliding windows on a clock the test moves, and many threads."""

from __future__ import annotations

import math
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statekeep.metrics import SUB, Histogram, Windowed, bucket_of, merged, middle_of

VALUES = st.lists(
    st.floats(min_value=1e-9, max_value=1e6, allow_nan=False, allow_infinity=False),
    min_size=1,
    max_size=300,
)
QUANTILES = st.sampled_from([0.0, 0.01, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0])


def exact(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


@settings(max_examples=300, deadline=None)
@given(VALUES, QUANTILES)
def test_a_quantile_is_within_one_percent_of_the_exact_one(values: list[float], q: float) -> None:
    histogram = Histogram()
    for value in values:
        histogram.record(value)
    assert histogram.count == len(values)
    assert histogram.min == min(values) and histogram.max == max(values)
    assert math.isclose(histogram.sum, math.fsum(values), rel_tol=1e-9)
    assert abs(histogram.quantile(q) - exact(values, q)) <= 0.01 * exact(values, q)


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=1e-12, max_value=1e12, allow_nan=False, allow_infinity=False))
def test_a_bucket_is_narrow_enough(value: float) -> None:
    middle = middle_of(bucket_of(value))
    assert abs(middle - value) <= value / SUB / 2 + 1e-300  # within 0.8% of it


@given(VALUES, VALUES)
def test_merging_is_recording_both(first: list[float], second: list[float]) -> None:
    a, b, both = Histogram(), Histogram(), Histogram()
    for value in first:
        a.record(value)
        both.record(value)
    for value in second:
        b.record(value)
        both.record(value)
    together = merged([a, b])
    assert together.buckets == both.buckets and together.count == both.count
    assert (together.min, together.max) == (both.min, both.max)
    assert together.quantile(0.5) == both.quantile(0.5)


def test_zeros_and_an_empty_histogram() -> None:
    histogram = Histogram()
    assert math.isnan(histogram.quantile(0.5)) and math.isnan(histogram.mean)
    for value in (0.0, 0.0, 0.0, 2.0):
        histogram.record(value)
    assert histogram.zeros == 3 and histogram.quantile(0.5) == 0.0
    assert abs(histogram.quantile(1.0) - 2.0) <= 0.02 and histogram.mean == 0.5
    with pytest.raises(ValueError, match="between 0 and 1"):
        histogram.quantile(1.5)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_windows_forget_what_is_older_than_them() -> None:
    clock = Clock()
    windowed = Windowed(span=600, clock=clock)
    for second in range(700):  # one value a second: the value is its second
        clock.now = 1000.0 + second
        windowed.record(float(second + 1))
    assert windowed.window(10).count == 10 and windowed.window(10).min == 691.0
    assert windowed.window(60).count == 60 and windowed.window(60).min == 641.0
    assert windowed.window(600).count == 600 and windowed.window(600).min == 101.0
    assert windowed.total.count == 700  # since it was made
    clock.now += 30  # nothing for 30 s
    assert windowed.window(10).count == 0 and windowed.window(60).count == 30
    clock.now += 1000
    assert windowed.window(600).count == 0


def test_windows_refuse_what_they_cannot_answer() -> None:
    windowed = Windowed(span=60, clock=Clock())
    for bad in (0, 61, 1.5, True):
        with pytest.raises(ValueError, match="a window is"):
            windowed.window(bad)  # type: ignore[arg-type]
    for span in (0, -1, 2.5, False):
        with pytest.raises(ValueError, match="span"):
            Windowed(span=span)  # type: ignore[arg-type]


def test_threads_lose_no_value() -> None:
    windowed = Windowed()
    start = threading.Barrier(8)

    def work() -> None:
        start.wait()
        for n in range(5_000):
            windowed.record(0.001 * (n % 50 + 1))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert windowed.total.count == 40_000
    assert sum(h.count for _, h in windowed._seconds) == 40_000
    assert sum(windowed.total.buckets.values()) == 40_000
