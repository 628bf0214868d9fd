"""statekeep.flow.Throttle: the rate, the first burst, the cap in flight,
cool-downs, keys, waiters' order, and bad input."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statekeep.errors import ConfigurationError, ThrottledError
from statekeep.flow import FakeClock, Throttle


def _never_more_than(times: list[float], burst: int, rate: float, per: float, slack: float) -> None:
    """In any stretch [times[i], times[j]], at most burst + rate * t / per calls."""
    times = sorted(times)
    for i in range(len(times)):
        for j in range(i, len(times)):
            allowed = burst + rate * (times[j] - times[i]) / per + slack
            assert j - i + 1 <= allowed, (i, j, times[i], times[j])


@settings(max_examples=150, deadline=None)
@given(
    rate=st.integers(1, 50),
    per=st.sampled_from([0.5, 1.0, 2.0]),
    burst=st.integers(1, 8),
    steps=st.lists(
        st.tuples(st.floats(0, 0.5), st.integers(0, 6), st.booleans()), min_size=1, max_size=40
    ),
)
def test_never_more_than_burst_plus_rate_times_t(
    rate: int, per: float, burst: int, steps: list[tuple[float, int, bool]]
) -> None:
    clock = FakeClock()
    throttle = Throttle(rate, per, burst=burst, clock=clock)
    admitted: list[float] = []
    for pause, calls, waiting in steps:
        clock.advance(pause)
        for _ in range(calls):
            if waiting:
                throttle.acquire()  # the fake clock jumps to the caller's moment
                admitted.append(clock.now())
            elif throttle.try_acquire():
                admitted.append(clock.now())
    _never_more_than(admitted, burst, rate, per, slack=1e-6)
    assert throttle.stats().counts["admitted"] == len(admitted)


@pytest.mark.parametrize("burst", [1, 2, 7, 100])
def test_an_idle_throttle_admits_exactly_its_burst_then_one_per_interval(burst: int) -> None:
    clock = FakeClock()
    throttle = Throttle(rate=10, burst=burst, clock=clock)
    assert sum(throttle.try_acquire() for _ in range(burst + 5)) == burst
    clock.advance(0.1)
    assert throttle.try_acquire()
    assert not throttle.try_acquire()
    times = []
    for _ in range(3):
        throttle.acquire()
        times.append(round(clock.now(), 9))
    assert times == [0.2, 0.3, 0.4]


def test_a_timeout_refuses_with_retry_after_and_takes_nothing() -> None:
    clock = FakeClock()
    throttle = Throttle(rate=1, clock=clock)
    throttle.acquire()
    with pytest.raises(ThrottledError) as refused:
        throttle.acquire(timeout=0.5)
    assert refused.value.retry_after == pytest.approx(1.0)
    assert isinstance(refused.value, TimeoutError)
    assert clock.now() == 0.0  # it did not wait
    throttle.acquire(timeout=1.0)  # the refused call took no slot
    assert clock.now() == 1.0
    assert throttle.stats().counts == {"admitted": 2, "waits": 1, "refused": 1, "cooled_down": 0}


def test_cool_down_admits_nothing_then_resumes_without_a_burst() -> None:
    clock = FakeClock()
    throttle = Throttle(rate=10, burst=5, cooldown=3.0, clock=clock)
    throttle.cool_down()
    assert not throttle.try_acquire()
    clock.advance(2.9)
    assert not throttle.try_acquire()
    clock.advance(0.1)
    assert throttle.try_acquire()
    assert not throttle.try_acquire()  # no burst after a cool-down
    clock.advance(0.1)
    assert throttle.try_acquire()
    throttle.cool_down(0.0)  # a zero cool-down changes nothing
    with pytest.raises(ConfigurationError):
        throttle.cool_down(-1)


def test_a_caller_waiting_when_a_cool_down_starts_waits_for_its_end() -> None:
    throttle = Throttle(rate=20)
    throttle.acquire()
    ended: list[float] = []

    def waiter() -> None:
        throttle.acquire()
        ended.append(time.monotonic())

    thread = threading.Thread(target=waiter)
    start = time.monotonic()
    thread.start()
    time.sleep(0.01)  # it sleeps until 0.05 s
    throttle.cool_down(0.3)
    thread.join(5)
    assert ended and ended[0] - start >= 0.29


def test_max_concurrent_caps_threads_and_tasks_together() -> None:
    throttle = Throttle(max_concurrent=3)
    lock = threading.Lock()
    inside = most = 0

    def enter() -> None:
        nonlocal inside, most
        with lock:
            inside += 1
            most = max(most, inside)

    def leave() -> None:
        nonlocal inside
        with lock:
            inside -= 1

    def thread_work() -> None:
        for _ in range(20):
            with throttle:
                enter()
                time.sleep(0.001)
                leave()

    async def task_work() -> None:
        for _ in range(20):
            async with throttle:
                enter()
                await asyncio.sleep(0.001)
                leave()

    async def tasks() -> None:
        await asyncio.gather(*(task_work() for _ in range(6)))

    threads = [threading.Thread(target=thread_work) for _ in range(6)]
    threads.append(threading.Thread(target=asyncio.run, args=(tasks(),)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert most == 3
    assert throttle.stats().gauges["in_flight"] == 0
    assert throttle.stats().counts["admitted"] == 240


def test_waiters_for_a_slot_go_in_the_order_they_came() -> None:
    throttle = Throttle(max_concurrent=1)
    order: list[int] = []
    throttle.acquire()

    def waiter(n: int) -> None:
        with throttle:
            order.append(n)

    threads = []
    for n in range(6):
        thread = threading.Thread(target=waiter, args=(n,))
        thread.start()
        threads.append(thread)
        while throttle.stats().gauges["waiting"] < n + 1:
            time.sleep(0.001)
    throttle.release()
    for thread in threads:
        thread.join(10)
    assert order == [0, 1, 2, 3, 4, 5]


def test_a_cancelled_waiter_hands_its_moment_back() -> None:
    async def main() -> None:
        throttle = Throttle(rate=10)
        await throttle.acquire_async()
        waiting = asyncio.create_task(throttle.acquire_async())
        await asyncio.sleep(0.01)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        with pytest.raises(ThrottledError) as refused:
            await throttle.acquire_async(timeout=0)
        assert refused.value.retry_after is not None
        assert refused.value.retry_after < 0.15  # the first's interval, not two

    asyncio.run(main())


def test_a_cancelled_slot_waiter_loses_no_slot() -> None:
    async def main() -> None:
        throttle = Throttle(max_concurrent=1)
        await throttle.acquire_async()
        waiters = [asyncio.create_task(throttle.acquire_async()) for _ in range(3)]
        await asyncio.sleep(0.01)
        waiters[0].cancel()
        throttle.release()  # to waiter 1 (0 left the line)
        await asyncio.sleep(0.01)
        assert waiters[1].done() and not waiters[2].done()
        waiters[2].cancel()
        throttle.release()
        await asyncio.sleep(0)
        assert throttle.try_acquire()  # the slot came back, not lost to a cancelled one
        throttle.release()

    asyncio.run(main())


def test_decorates_functions_and_coroutine_functions() -> None:
    clock = FakeClock()
    throttle = Throttle(rate=2, clock=clock)

    @throttle
    def double(x: int) -> int:
        return 2 * x

    @throttle
    async def triple(x: int) -> int:
        return 3 * x

    assert [double(i) for i in range(3)] == [0, 2, 4]
    assert clock.now() == pytest.approx(1.0)
    assert asyncio.run(triple(2)) == 6
    assert clock.now() == pytest.approx(1.5)
    assert double.__name__ == "double" and triple.__name__ == "triple"


def test_keys_have_their_own_budget_and_memory_stays_bounded() -> None:
    clock = FakeClock()
    throttle = Throttle(rate=1, burst=2, max_keys=100, clock=clock)
    assert throttle.for_key("a") is throttle.for_key("a")
    assert sum(throttle.for_key("a").try_acquire() for _ in range(5)) == 2
    assert sum(throttle.for_key("b").try_acquire() for _ in range(5)) == 2
    for n in range(1000):
        throttle.for_key(n)
    assert 50 <= throttle.stats().gauges["keys"] <= 100
    with pytest.raises(ConfigurationError):
        throttle.for_key(["not", "hashable"])  # type: ignore[arg-type]


def test_an_idle_key_goes_before_a_busy_one() -> None:
    clock = FakeClock()
    throttle = Throttle(rate=1, max_keys=2, clock=clock)
    assert throttle.for_key("busy").try_acquire()  # its bucket is spent: state to keep
    throttle.for_key("idle")
    throttle.for_key("new")  # one must go: the idle one
    assert not throttle.for_key("busy").try_acquire()  # still remembered


def test_on_throttle_hears_the_queue_length() -> None:
    heard: list[int] = []
    clock = FakeClock()
    throttle = Throttle(rate=1, clock=clock, on_throttle=heard.append)
    throttle.acquire()
    throttle.acquire()
    assert heard == [1]


def test_threads_hammering_one_throttle_keep_the_rate() -> None:
    throttle = Throttle(rate=400, burst=5)
    times: list[float] = []
    lock = threading.Lock()

    def hammer() -> None:
        for _ in range(25):
            throttle.acquire()
            now = time.monotonic()
            with lock:
                times.append(now)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(times) == 200
    assert times[-1] - start >= (200 - 5) / 400 * 0.95
    # wake-ups come late, never early: allow two more for scheduling jitter
    _never_more_than(times, 5, 400, 1.0, slack=2)


def test_release_without_acquire_and_a_closed_form_are_refused() -> None:
    throttle = Throttle(rate=1, max_concurrent=1)
    with pytest.raises(ConfigurationError, match="release"):
        throttle.release()
    Throttle(rate=1).release()  # rate only: nothing held, nothing to check


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"rate": 0},
        {"rate": -1},
        {"rate": float("inf")},
        {"rate": float("nan")},
        {"rate": "10"},
        {"rate": True},
        {"rate": 1, "per": 0},
        {"rate": 1, "burst": 0},
        {"rate": 1, "burst": 1.5},
        {"max_concurrent": 0},
        {"max_concurrent": True},
        {"rate": 1, "cooldown": -1},
        {"rate": 1, "fair": "yes"},
        {"rate": 1, "on_throttle": 3},
        {"rate": 1, "max_keys": 0},
        {"rate": 1, "clock": time.monotonic},
        {"rate": 1, "name": 3},
    ],
)
def test_bad_options_are_configuration_errors(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        Throttle(**options)


@pytest.mark.parametrize("timeout", [-1, float("nan"), "1", True])
def test_bad_timeouts_are_configuration_errors(timeout: Any) -> None:
    throttle = Throttle(rate=1)
    with pytest.raises(ConfigurationError):
        throttle.acquire(timeout=timeout)
    with pytest.raises(ConfigurationError):
        asyncio.run(throttle.acquire_async(timeout=timeout))
    assert throttle.try_acquire()  # nothing was taken
    with pytest.raises(ConfigurationError):
        throttle(3)  # type: ignore[call-overload]


def test_unfair_waiters_still_keep_the_rate() -> None:
    clock = FakeClock()
    throttle = Throttle(rate=5, burst=2, fair=False, clock=clock)
    admitted = []
    for _ in range(12):
        throttle.acquire()
        admitted.append(clock.now())
    _never_more_than(admitted, 2, 5, 1.0, slack=1e-6)
    assert admitted[-1] == pytest.approx(2.0)


def test_stats_say_how_many_were_admitted_a_second_lately() -> None:
    clock = FakeClock()
    throttle = Throttle(rate=20, clock=clock)
    for _ in range(200):  # 10 s at 20 a second
        throttle.acquire()
    assert throttle.stats().gauges["admitted_per_s"] == pytest.approx(20, abs=2)
    clock.advance(30)  # quiet since
    assert throttle.stats().gauges["admitted_per_s"] == 0


def test_call_and_call_async_run_the_function_once_admitted() -> None:
    from rich.console import Console

    clock = FakeClock()
    throttle = Throttle(rate=2, clock=clock, name="api")
    assert throttle.call(lambda x: x + 1, 1) == 2
    assert throttle.call(lambda x: x + 1, 2) == 3
    assert clock.now() == pytest.approx(0.5)

    async def double(x: int) -> int:
        return 2 * x

    assert asyncio.run(throttle.call_async(double, 4)) == 8
    assert clock.now() == pytest.approx(1.0)
    console = Console(record=True, width=100)
    console.print(throttle.stats().table())
    text = console.export_text()
    assert "throttle api" in text and "admitted" in text and "wait p50 / p99 / max ms" in text
