"""statekeep.metrics' histograms: quantiles within 1% of the exact ones,
merging, sliding windows on a clock the test moves, and many threads."""

from __future__ import annotations

import math
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statekeep.errors import ConfigurationError
from statekeep.metrics import Histogram, Windowed, bounds_of, bucket_of, merged, middle_of

VALUES = st.lists(st.integers(min_value=0, max_value=10**15), min_size=1, max_size=300)
QUANTILES = st.sampled_from([0.0, 0.01, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0])


def exact(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


@settings(max_examples=300, deadline=None)
@given(VALUES, QUANTILES)
def test_a_quantile_is_within_one_percent_of_the_exact_one(values: list[int], q: float) -> None:
    histogram = Histogram()
    for value in values:
        histogram.record(value)
    assert histogram.count == len(values)
    assert histogram.min == min(values) and histogram.max == max(values)
    assert histogram.sum == sum(values)
    assert abs(histogram.quantile(q) - exact(values, q)) <= 0.01 * exact(values, q)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=2**63))
def test_a_bucket_holds_its_value_and_is_narrow_enough(value: int) -> None:
    low, high = bounds_of(bucket_of(value))
    assert low <= value < high
    assert high - low == 1 or high - low <= low / 64  # at most 1/64 of its lower bound wide
    assert abs(middle_of(bucket_of(value)) - value) <= value * 0.008


def test_buckets_sort_as_values_do() -> None:
    keys = [bucket_of(n) for n in range(0, 1 << 16)]
    assert keys == sorted(keys)
    assert bucket_of(127) == 127 and bucket_of(128) == 128


@given(VALUES, VALUES)
def test_merging_is_recording_both(first: list[int], second: list[int]) -> None:
    a, b, both = Histogram(), Histogram(), Histogram()
    for value in first:
        a.record(value)
        both.record(value)
    for value in second:
        b.record(value)
        both.record(value)
    together = merged([a, b])
    assert together.buckets == both.buckets and together.count == both.count
    assert (together.min, together.max, together.sum) == (both.min, both.max, both.sum)
    assert together.quantiles([0.5, 0.99]) == both.quantiles([0.5, 0.99])


def test_an_empty_histogram_and_bad_input() -> None:
    histogram = Histogram()
    assert math.isnan(histogram.quantile(0.5)) and math.isnan(histogram.mean)
    for value in (0, 0, 0, 2):
        histogram.add(value)
    assert histogram.quantile(0.5) == 0.0 and histogram.quantile(1.0) == 2.0
    assert histogram.mean == 0.5
    for q in (1.5, -0.1, float("nan"), "0.5", True):
        with pytest.raises(ConfigurationError, match="between 0 and 1"):
            histogram.quantile(q)  # type: ignore[arg-type]
    for bad in (-1, 1.5, "3", None, True):
        with pytest.raises(ConfigurationError, match="whole numbers >= 0"):
            histogram.add(bad)  # type: ignore[arg-type]
    assert histogram.count == 4  # nothing bad was counted


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
        windowed.record(second + 1)
        windowed.turn()
    assert windowed.window(10).count == 10 and windowed.window(10).min == 691
    assert windowed.window(60).count == 60 and windowed.window(60).min == 641
    assert windowed.window(600).count == 600 and windowed.window(600).min == 101
    assert windowed.count_in(60) == 60
    assert windowed.total.count == 700  # since it was made
    clock.now += 30  # nothing for 30 s
    assert windowed.window(10).count == 0 and windowed.window(60).count == 30
    clock.now += 1000
    assert windowed.window(600).count == 0 and windowed.total.count == 700


def test_values_not_yet_turned_count_as_the_second_of_the_read() -> None:
    clock = Clock()
    windowed = Windowed(span=60, clock=clock)
    windowed.record(5)
    windowed.record(7)
    assert windowed.window(1).count == 2  # the read turns first
    clock.now += 2
    assert windowed.window(1).count == 0 and windowed.window(3).count == 2


def test_windows_refuse_what_they_cannot_answer() -> None:
    windowed = Windowed(span=60, clock=Clock())
    for bad in (0, 61, 1.5, True):
        with pytest.raises(ConfigurationError, match="a window is"):
            windowed.window(bad)  # type: ignore[arg-type]
    for span in (0, -1, 2.5, False):
        with pytest.raises(ConfigurationError, match="span"):
            Windowed(span=span)  # type: ignore[arg-type]


def test_threads_lose_no_value() -> None:
    windowed = Windowed()
    start = threading.Barrier(9)
    stop = threading.Event()

    def work() -> None:
        start.wait()
        for n in range(5_000):
            windowed.record(1000 * (n % 50 + 1))

    def turner() -> None:  # the ticker closing seconds meanwhile
        start.wait()
        while not stop.is_set():
            windowed.turn()

    threads = [threading.Thread(target=work) for _ in range(8)]
    turning = threading.Thread(target=turner)
    turning.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    turning.join()
    total = windowed.total
    assert total.count == 40_000 and sum(total.buckets.values()) == 40_000
    assert total.sum == 8 * 100 * sum(1000 * (k + 1) for k in range(50))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 40), st.lists(st.integers(0, 10**9), max_size=5)), max_size=60
    )
)
def test_running_window_sums_equal_merging_the_seconds(steps: list[tuple[int, list[int]]]) -> None:
    clock = Clock()
    windowed = Windowed(span=600, clock=clock)
    for advance, values in steps:
        clock.now += advance
        for value in values:
            windowed.record(value)
        if advance % 3 == 0:
            windowed.turn()  # sometimes twice in a second, sometimes not for a while
        for seconds in (10, 60, 600):
            now = int(clock.now)
            summed = windowed.window(seconds)
            kept = merged(h for second, h in windowed._ring if second > now - seconds)
            assert (summed.count, summed.sum, dict(summed.buckets)) == (
                kept.count,
                kept.sum,
                dict(kept.buckets),
            )
            if kept.count:
                assert (summed.min, summed.max) == (kept.min, kept.max)


WITHOUT_RICH = """
import sys
sys.modules["rich"] = None  # as if rich were not installed
sys.modules["rich.table"] = None
from statekeep.errors import ConfigurationError
from statekeep.metrics import Registry
registry = Registry()
registry.counter("x_total").inc()
try:
    registry.snapshot().table()
except ConfigurationError as error:
    print(error)
"""


def test_a_table_without_rich_names_the_extra() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_RICH], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'statekeep[metrics]'" in done.stdout
