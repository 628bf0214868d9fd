# mypy: disable-error-code="comparison-overlap"
"""statekeep.flow.CircuitBreaker on a fake clock: it opens exactly at its
threshold, fails fast while open, lets exactly half_open_max probes through,
closes on a good probe and opens again on a bad one; and under threads."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from statekeep.errors import CircuitOpenError, ConfigurationError, TransientBackendError
from statekeep.flow import CircuitBreaker, CircuitState, FakeClock


def _fail() -> None:
    raise TransientBackendError("down")


def _ok() -> str:
    return "ok"


def _failures(breaker: CircuitBreaker, n: int) -> None:
    for _ in range(n):
        with pytest.raises(TransientBackendError):
            breaker.call(_fail)


@pytest.mark.parametrize("threshold", [1, 2, 5, 9])
def test_it_opens_exactly_at_the_threshold(threshold: int) -> None:
    breaker = CircuitBreaker(threshold, window=10, clock=FakeClock())
    _failures(breaker, threshold - 1)
    assert breaker.state is CircuitState.CLOSED
    assert breaker.call(_ok) == "ok"  # successes do not reset a count mode breaker's window
    _failures(breaker, 1)
    assert breaker.state is CircuitState.OPEN


def test_failures_older_than_the_window_do_not_count() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(3, window=10, clock=clock)
    _failures(breaker, 2)
    clock.advance(10.5)
    _failures(breaker, 2)
    assert breaker.state is CircuitState.CLOSED
    _failures(breaker, 1)
    assert breaker.state is CircuitState.OPEN


def test_open_it_fails_fast_then_probes_then_closes() -> None:
    clock = FakeClock()
    changes: list[tuple[str, str]] = []
    breaker = CircuitBreaker(
        2, reset_timeout=5, clock=clock, on_change=lambda a, b: changes.append((a, b))
    )
    _failures(breaker, 2)
    calls = 0

    def counted() -> str:
        nonlocal calls
        calls += 1
        return "ok"

    with pytest.raises(CircuitOpenError) as fast:
        breaker.call(counted)
    assert calls == 0 and fast.value.retry_after == 5.0
    assert breaker.probe_at == 5.0  # opened at 0 on the fake clock
    clock.advance(4.9)
    with pytest.raises(CircuitOpenError):
        breaker.call(counted)
    clock.advance(0.1)
    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.call(counted) == "ok"
    assert breaker.state is CircuitState.CLOSED and calls == 1
    assert breaker.probe_at is None
    assert changes == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_a_failed_probe_opens_it_again_for_a_whole_reset_timeout() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(1, reset_timeout=5, clock=clock)
    _failures(breaker, 1)
    clock.advance(5)
    _failures(breaker, 1)  # the probe
    assert breaker.state is CircuitState.OPEN
    clock.advance(4.9)
    assert breaker.state is CircuitState.OPEN
    clock.advance(0.1)
    assert breaker.state is CircuitState.HALF_OPEN
    stats = breaker.stats()
    assert stats.counts["opened"] == 2 and stats.counts["failures"] == 2


@pytest.mark.parametrize("half_open_max", [1, 3])
def test_under_threads_no_more_probes_than_allowed(half_open_max: int) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(1, reset_timeout=1, half_open_max=half_open_max, clock=clock)
    _failures(breaker, 1)
    clock.advance(1)
    release = threading.Event()
    entered: list[int] = []
    rejected: list[int] = []
    lock = threading.Lock()

    def probe(n: int) -> None:
        def slow() -> None:
            with lock:
                entered.append(n)
            release.wait(10)

        try:
            breaker.call(slow)
        except CircuitOpenError:
            with lock:
                rejected.append(n)

    threads = [threading.Thread(target=probe, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while len(entered) + len(rejected) < 8 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert len(entered) == half_open_max and len(rejected) == 8 - half_open_max
    release.set()
    for thread in threads:
        thread.join(10)
    assert breaker.state is CircuitState.CLOSED


def test_failure_rate_needs_min_calls_and_the_share() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_rate=0.5, min_calls=10, window=10, clock=clock)
    _failures(breaker, 6)
    assert breaker.state is CircuitState.CLOSED  # 6 calls: fewer than min_calls
    for _ in range(3):
        breaker.call(_ok)
    assert breaker.state is CircuitState.CLOSED
    breaker.call(_ok)  # 10 calls, 6 failed
    assert breaker.state is CircuitState.OPEN
    breaker.reset()
    for _ in range(20):
        breaker.call(_ok)
    _failures(breaker, 10)
    assert breaker.state is CircuitState.CLOSED  # 10 of 30
    clock.advance(11)  # the successes leave the window
    _failures(breaker, 10)
    assert breaker.state is CircuitState.OPEN


def test_fallback_answers_while_open_sync_and_async() -> None:
    breaker = CircuitBreaker(1, fallback=lambda *args, **kwargs: ("cached", args, kwargs))
    _failures(breaker, 1)
    assert breaker.call(_ok, 1, x=2) == ("cached", (1,), {"x": 2})

    async def fallback(key: str) -> str:
        return f"stale {key}"

    async_breaker = CircuitBreaker(1, fallback=fallback)

    @async_breaker
    async def fetch(key: str) -> str:
        raise TransientBackendError(key)

    async def main() -> None:
        with pytest.raises(TransientBackendError):
            await fetch("a")
        assert await fetch("b") == "stale b"

    asyncio.run(main())
    assert async_breaker.stats().counts["fallbacks"] == 1


def test_ignored_errors_and_cancellation_are_not_failures() -> None:
    breaker = CircuitBreaker(1, ignore=(KeyError,))
    empty: dict[str, int] = {}
    with pytest.raises(KeyError):
        breaker.call(lambda: empty["x"])
    assert breaker.state is CircuitState.CLOSED

    async def cancelled() -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(breaker.call_async(cancelled))
    assert breaker.state is CircuitState.CLOSED
    only = CircuitBreaker(1, failure_on=TransientBackendError)
    with pytest.raises(ValueError):
        only.call(lambda: int("x"))
    assert only.state is CircuitState.CLOSED


def test_context_managers_sync_async_and_nested() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(2, reset_timeout=1, clock=clock)
    with pytest.raises(TransientBackendError), breaker:
        with breaker:
            pass
        raise TransientBackendError("x")
    assert breaker.state is CircuitState.CLOSED  # one failure, one success

    async def main() -> None:
        with pytest.raises(TransientBackendError):
            async with breaker:
                raise TransientBackendError("y")
        with pytest.raises(CircuitOpenError):
            async with breaker:
                pass

    asyncio.run(main())
    clock.advance(1)
    with breaker:  # the probe
        pass
    assert breaker.state is CircuitState.CLOSED


def test_trip_and_reset_by_hand() -> None:
    breaker = CircuitBreaker(clock=FakeClock())
    breaker.trip()
    with pytest.raises(CircuitOpenError):
        breaker.call(_ok)
    breaker.reset()
    assert breaker.call(_ok) == "ok"


@pytest.mark.parametrize(
    "options",
    [
        {"failure_threshold": 0},
        {"failure_threshold": 1.5},
        {"window": 0},
        {"reset_timeout": -1},
        {"half_open_max": 0},
        {"failure_rate": 0},
        {"failure_rate": 1.5},
        {"min_calls": 0},
        {"failure_on": "Exception"},
        {"ignore": (3,)},
        {"fallback": 3},
        {"on_change": "x"},
        {"clock": object()},
    ],
)
def test_bad_options_are_configuration_errors(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        CircuitBreaker(**options)
    with pytest.raises(ConfigurationError):
        CircuitBreaker()(3)  # type: ignore[call-overload]
