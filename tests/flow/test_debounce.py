"""statekeep.flow.Debounce / AsyncDebounce: one invocation per quiet period,
never later than max_wait after the first call it folds, handles that give
the invocation's result, keys, methods, flush / cancel / close, bad input."""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import threading
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statekeep.errors import ConfigurationError, FlowClosedError
from statekeep.flow import AsyncDebounce, Debounce, FakeClock, Handle, debounce


async def _settle() -> None:
    for _ in range(6):
        await asyncio.sleep(0)


Invocation = tuple[float, int, int]  # (moment, arg, how many calls had been made)


def _simulate(
    gaps: list[int], wait: int, max_wait: int | None, leading: bool
) -> tuple[list[Invocation], list[float], list[Any]]:
    """Calls at the integer moments the gaps give, the clock moved one unit
    at a time: (invocations, call moments, handle results)."""

    async def main() -> tuple[list[Invocation], list[float], list[Any]]:
        clock = FakeClock(auto=False)
        invoked: list[Invocation] = []

        async def record(arg: int) -> int:
            invoked.append((clock.now(), arg, len(called)))
            return arg

        debounced = AsyncDebounce(record, wait, max_wait, leading=leading, clock=clock)
        called: list[float] = []
        handles: list[Handle[int]] = []
        for n, gap in enumerate(gaps):
            for _ in range(gap):
                clock.advance(1)
                await _settle()
            called.append(clock.now())
            handles.append(debounced(n))
            await _settle()
        for _ in range(wait + (max_wait or 0) + 2):
            clock.advance(1)
            await _settle()
        results = [await handle for handle in handles]
        await debounced.close()
        return invoked, called, results

    return asyncio.run(main())


@settings(max_examples=120, deadline=None)
@given(
    gaps=st.lists(st.integers(0, 7), min_size=1, max_size=30),
    wait=st.integers(1, 4),
    extra=st.one_of(st.none(), st.integers(0, 8)),
)
def test_trailing_once_per_quiet_period_and_never_after_max_wait(
    gaps: list[int], wait: int, extra: int | None
) -> None:
    max_wait = None if extra is None else wait + extra
    invoked, called, results = _simulate(gaps, wait, max_wait, leading=False)
    # quiet periods: calls split wherever wait units passed without one
    periods = 1 + sum(1 for a, b in itertools.pairwise(called) if b - a >= wait)
    if max_wait is None:
        assert len(invoked) == periods
    else:
        assert len(invoked) >= periods
    folded_first: dict[int, float] = {}
    for n, (moment, result) in enumerate(zip(called, results, strict=True)):
        # a call's handle is the first invocation made after it, with the
        # arguments of the last call made before that invocation
        after = [(at, arg, made) for at, arg, made in invoked if made > n]
        assert after, n
        at, arg, made = after[0]
        assert result == arg == made - 1
        folded_first.setdefault(arg, moment)
    for at, arg, _ in invoked:
        last_call = called[arg]
        assert at <= last_call + wait  # never later than a quiet wait after its last call
        if max_wait is not None:
            assert at - folded_first[arg] <= max_wait


@settings(max_examples=60, deadline=None)
@given(gaps=st.lists(st.integers(0, 6), min_size=1, max_size=25), wait=st.integers(1, 4))
def test_leading_invokes_the_first_call_of_each_period_at_once(gaps: list[int], wait: int) -> None:
    invoked, called, results = _simulate(gaps, wait, None, leading=True)
    starts = [0] + [i + 1 for i, (a, b) in enumerate(itertools.pairwise(called)) if b - a >= wait]
    assert [arg for _, arg, _ in invoked if arg in starts] == starts
    for n in starts:
        assert (called[n], n, n + 1) in invoked and results[n] == n


def test_sync_debounce_folds_a_burst_into_one_call_on_its_thread() -> None:
    seen: list[tuple[int, str]] = []

    def double(x: int) -> int:
        seen.append((x, threading.current_thread().name))
        return x * 2

    debounced = Debounce(double, 0.05)
    handles = [debounced(n) for n in range(20)]
    assert {h.result(5) for h in handles} == {38}
    assert len(seen) == 1 and seen[0][0] == 19
    assert seen[0][1].startswith("statekeep-debounce")
    assert debounced.stats().counts["invocations"] == 1
    assert debounced.stats().counts["calls"] == 20
    debounced.close()


def test_max_wait_is_honoured_on_the_real_clock_loosely() -> None:
    fired: list[float] = []
    debounced = Debounce(lambda: fired.append(time.monotonic()), wait=0.05, max_wait=0.2)
    start = time.monotonic()
    while time.monotonic() - start < 0.5:
        debounced()
        time.sleep(0.005)
    debounced.close()
    assert len(fired) >= 2
    assert fired[0] - start < 0.2 + 0.15  # generous: a loaded machine wakes late


def test_errors_reach_the_handle_and_the_next_period_works() -> None:
    clock = FakeClock(auto=False)

    def boom(x: int) -> int:
        if x == 1:
            raise ValueError("no")
        return x

    debounced = Debounce(boom, 1.0, clock=clock)
    first = debounced(1)
    clock.advance(1)
    with pytest.raises(ValueError, match="no"):
        first.result(5)
    second = debounced(2)
    clock.advance(1)
    assert second.result(5) == 2
    assert debounced.stats().counts["failures"] == 1
    debounced.close()


def test_flush_cancel_and_close() -> None:
    clock = FakeClock(auto=False)
    seen: list[int] = []
    debounced = Debounce(seen.append, 10.0, clock=clock)
    assert debounced.flush() is None and not debounced.pending
    debounced(1)
    assert debounced.pending
    assert debounced.flush() is not None and seen == [1]
    handle = debounced(2)
    debounced.cancel()
    assert handle.cancelled() and seen == [1]
    with pytest.raises(concurrent.futures.CancelledError):
        handle.result(1)
    debounced(3)
    debounced.for_key("k")(4)
    debounced.close()
    assert sorted(seen) == [1, 3, 4]  # close invoked what was pending
    with pytest.raises(FlowClosedError):
        debounced(5)
    with pytest.raises(FlowClosedError):
        debounced.for_key("other")
    debounced.close()  # twice: nothing more


def test_keys_debounce_apart_and_idle_keys_are_forgotten() -> None:
    clock = FakeClock(auto=False)
    seen: list[tuple[str, int]] = []
    debounced = Debounce(lambda key, n: seen.append((key, n)), 1.0, max_keys=10, clock=clock)
    for n in range(3):
        debounced.for_key("a")("a", n)
        debounced.for_key("b")("b", n)
    clock.advance(1)
    deadline = time.monotonic() + 5
    while len(seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.002)
    assert sorted(seen) == [("a", 2), ("b", 2)]
    for n in range(100):
        debounced.for_key(n)
    assert debounced.stats().gauges["keys"] <= 10
    with pytest.raises(ConfigurationError):
        debounced.for_key([1])  # type: ignore[arg-type]
    debounced.close()


def test_a_method_debounces_per_instance() -> None:
    class Editor:
        def __init__(self, name: str) -> None:
            self.name = name
            self.saved: list[str] = []

        @debounce(wait=0.05)
        def save(self, text: str) -> str:
            self.saved.append(text)
            return f"{self.name}:{text}"

    one, two = Editor("one"), Editor("two")
    a = [one.save(t) for t in ("a", "b", "c")]
    b = [two.save(t) for t in ("x", "y")]
    assert {h.result(5) for h in a} == {"one:c"}
    assert {h.result(5) for h in b} == {"two:y"}
    assert one.saved == ["c"] and two.saved == ["y"]
    Editor.save.close()


def test_threads_calling_at_once_lose_no_call() -> None:
    debounced = Debounce(lambda n: n, 0.02)
    handles: list[Handle[int]] = []
    lock = threading.Lock()

    def call() -> None:
        for n in range(200):
            handle = debounced(n)
            with lock:
                handles.append(handle)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(isinstance(h.result(5), int) for h in handles)
    assert debounced.stats().counts["calls"] == 1600
    debounced.close()


def test_async_debounce_belongs_to_its_loop_and_is_called_on_one() -> None:
    async def work() -> None:
        pass

    debounced = AsyncDebounce(work, 0.01)
    with pytest.raises(ConfigurationError, match="event loop"):
        debounced()

    async def main() -> None:
        await debounced()

    asyncio.run(main())
    asyncio.run(main())  # the first loop closed: a new one may take over


@pytest.mark.parametrize(
    "options",
    [
        {"wait": -1},
        {"wait": "1"},
        {"wait": 1, "max_wait": 0.5},
        {"max_wait": 0},
        {"leading": "yes"},
        {"leading": False, "trailing": False},
        {"max_keys": 0},
        {"name": 3},
    ],
)
def test_bad_options_are_configuration_errors(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        Debounce(print, **options)
    with pytest.raises(ConfigurationError):
        debounce(**options)(print)


def test_the_wrong_kind_of_function_is_refused() -> None:
    async def coro() -> None:
        pass

    with pytest.raises(ConfigurationError):
        Debounce(coro)
    with pytest.raises(ConfigurationError):
        AsyncDebounce(print)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        Debounce(3)  # type: ignore[arg-type]
