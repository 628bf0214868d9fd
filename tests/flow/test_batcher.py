# mypy: disable-error-code="var-annotated"
"""statekeep.flow.Batcher / AsyncBatcher: batches never over max_size, no
item lost or processed twice, only failed items retried, max_delay, the
full-queue policies, flush / close, threads and asyncio, bad input."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statekeep.errors import (
    ConfigurationError,
    FlowClosedError,
    QueueFullError,
    TransientBackendError,
)
from statekeep.flow import AsyncBatcher, Batcher, FakeClock, Retry


class Recorder:
    """A process function: doubles each item, fails the items of `flaky`
    once each (as per-item outcomes), and records every batch."""

    def __init__(self, flaky: set[int] | None = None) -> None:
        self.flaky = set(flaky or ())
        self.batches: list[list[int]] = []
        self.lock = threading.Lock()

    def __call__(self, items: list[int]) -> list[Any]:
        with self.lock:
            self.batches.append(list(items))
            out: list[Any] = []
            for item in items:
                if item in self.flaky:
                    self.flaky.discard(item)
                    out.append(TransientBackendError(f"item {item} failed once"))
                else:
                    out.append(item * 2)
            return out


@settings(max_examples=40, deadline=None)
@given(
    items=st.lists(st.integers(0, 10_000), min_size=1, max_size=300, unique=True),
    max_size=st.integers(1, 60),
    flaky_share=st.floats(0, 0.5),
    concurrency=st.integers(1, 3),
)
def test_no_batch_over_max_size_no_item_lost_or_twice_only_failed_ones_again(
    items: list[int], max_size: int, flaky_share: float, concurrency: int
) -> None:
    flaky = set(items[: int(len(items) * flaky_share)])
    process = Recorder(flaky)
    retry = Retry(3, backoff=None, retry_on=TransientBackendError)
    with Batcher(process, max_size, 0.001, 1000, retry=retry, concurrency=concurrency) as batcher:
        handles = batcher.add_many(items)
        assert [h.result(10) for h in handles] == [i * 2 for i in items]
    seen = [item for batch in process.batches for item in batch]
    assert all(1 <= len(batch) <= max_size for batch in process.batches)
    for item in items:
        assert seen.count(item) == (2 if item in flaky else 1)
    stats = batcher.stats().counts
    assert stats["succeeded"] == len(items) and stats["retried"] == len(flaky)
    assert stats["failed"] == 0


def test_a_lone_item_waits_max_delay_on_the_fake_clock() -> None:
    clock = FakeClock(auto=False)
    process = Recorder()
    batcher = Batcher(process, max_size=10, max_delay=1.0, clock=clock)
    handle = batcher.add(3)
    time.sleep(0.1)
    assert not handle.done() and process.batches == []
    clock.advance(0.5)
    time.sleep(0.1)
    assert not handle.done()
    clock.advance(0.5)
    assert handle.result(5) == 6
    batcher.close()


def test_a_full_batch_goes_at_once() -> None:
    process = Recorder()
    batcher = Batcher(process, max_size=5, max_delay=60.0)
    handles = batcher.add_many(range(5))
    assert [h.result(5) for h in handles] == [0, 2, 4, 6, 8]
    assert process.batches == [[0, 1, 2, 3, 4]]
    batcher.close()


def test_process_raising_fails_every_item_and_retry_gives_up_with_the_last_error() -> None:
    calls = 0

    def broken(items: list[int]) -> None:
        nonlocal calls
        calls += 1
        raise TransientBackendError(f"down {calls}")

    retry = Retry(3, backoff=None, retry_on=TransientBackendError)
    with Batcher(broken, 10, 0.001, retry=retry) as batcher:
        handles = batcher.add_many(range(4))
        for handle in handles:
            with pytest.raises(TransientBackendError, match="down 3"):
                handle.result(5)
    assert calls == 3
    assert batcher.stats().counts["failed"] == 4


def test_none_means_every_item_done_and_a_wrong_length_fails_them() -> None:
    with Batcher(lambda items: None, 10, 0.001) as batcher:
        assert batcher.add(1).result(5) is None
    with Batcher(lambda items: [1], 10, 0.001) as batcher:
        handles = batcher.add_many([1, 2])
        with pytest.raises(ConfigurationError, match="2 items"):
            handles[0].result(5)
    wrong: Any = lambda items: "no"  # noqa: E731 - a process with a wrong return
    with (
        Batcher(wrong, 10, 0.001) as batcher,
        pytest.raises(ConfigurationError, match="one outcome per item"),
    ):
        batcher.add(1).result(5)


def _stuck(gate: threading.Event) -> Any:
    def process(items: list[int]) -> None:
        gate.wait(10)

    return process


def test_policy_raise_refuses_at_once_when_full() -> None:
    gate = threading.Event()
    batcher = Batcher(
        _stuck(gate), max_size=2, max_delay=0.0, max_pending=4, policy="raise", caller_runs=False
    )
    batcher.add_many(range(4))
    with pytest.raises(QueueFullError):
        batcher.add(99)
    gate.set()
    assert batcher.close(5)
    assert batcher.stats().counts["added"] == 4


def test_policy_block_waits_for_room_then_times_out() -> None:
    gate = threading.Event()
    batcher = Batcher(_stuck(gate), max_size=2, max_delay=0.0, max_pending=4, caller_runs=False)
    batcher.add_many(range(4))
    started = time.monotonic()
    with pytest.raises(QueueFullError):
        batcher.add(99, timeout=0.2)
    assert time.monotonic() - started >= 0.19
    threading.Timer(0.1, gate.set).start()
    assert batcher.add(100, timeout=5).result(5) is None  # room came
    batcher.close()


def test_policy_shed_oldest_drops_the_oldest_waiting_item() -> None:
    gate = threading.Event()
    process = _stuck(gate)
    batcher = Batcher(
        process, max_size=2, max_delay=60.0, max_pending=3, policy="shed_oldest", caller_runs=False
    )
    first = batcher.add_many([1, 2])  # a full batch: in flight, stuck
    time.sleep(0.05)
    waiting = batcher.add(3)
    newer = batcher.add(4)  # full: 3 is shed
    with pytest.raises(QueueFullError, match="shed"):
        waiting.result(5)
    gate.set()
    assert batcher.flush(5)  # 4 waits for max_delay (60 s) otherwise
    assert [h.result(5) for h in first] == [None, None] and newer.result(5) is None
    assert batcher.stats().counts["shed"] == 1
    batcher.close()


def test_flush_waits_for_everything_and_close_refuses_later_adds() -> None:
    process = Recorder()
    batcher = Batcher(process, max_size=1000, max_delay=60.0)
    handles = batcher.add_many(range(10))
    assert batcher.flush(5)
    assert all(h.done() for h in handles) and batcher.pending == 0
    batcher.add(11)
    assert batcher.close(5)
    assert process.batches[-1] == [11]
    with pytest.raises(FlowClosedError):
        batcher.add(12)
    assert batcher.close()  # twice: nothing more


def test_concurrency_processes_that_many_batches_at_once() -> None:
    inside = most = 0
    lock = threading.Lock()

    def slow(items: list[int]) -> None:
        nonlocal inside, most
        with lock:
            inside += 1
            most = max(most, inside)
        time.sleep(0.02)
        with lock:
            inside -= 1

    with Batcher(slow, 2, 0.0, concurrency=4, caller_runs=False) as batcher:
        batcher.add_many(range(40))
    assert most == 4


def test_threads_adding_at_once_lose_nothing() -> None:
    process = Recorder()
    batcher = Batcher(process, 100, 0.005, 100_000)
    results: list[list[int]] = [[] for _ in range(4)]

    def add(n: int) -> None:
        handles = batcher.add_many(range(n * 10_000, n * 10_000 + 2500))
        results[n] = [h.result(10) for h in handles]

    threads = [threading.Thread(target=add, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    batcher.close()
    for n in range(4):
        assert results[n] == [2 * i for i in range(n * 10_000, n * 10_000 + 2500)]
    assert sum(len(b) for b in process.batches) == 10_000


def test_map_returns_results_in_order_with_a_progress_callback() -> None:
    assert Batcher.map(lambda items: [i + 1 for i in items], range(1000), max_size=64) == list(
        range(1, 1001)
    )
    assert Batcher.map(lambda items: None, [1, 2, 3], progress="saving") == [None] * 3


def test_async_batcher_with_a_coroutine_and_with_a_blocking_function() -> None:
    async def main() -> None:
        loop_thread = threading.get_ident()
        ran_on: list[int] = []

        async def on_loop(items: list[int]) -> list[int]:
            ran_on.append(threading.get_ident())
            return [i * 3 for i in items]

        def blocking(items: list[int]) -> list[int]:
            ran_on.append(threading.get_ident())
            time.sleep(0.01)  # a blocking write: never on the loop
            return [i * 5 for i in items]

        async with AsyncBatcher(on_loop, 10, 0.001) as batcher:
            handles = [await batcher.add(i) for i in range(25)]
            assert [await h for h in handles] == [i * 3 for i in range(25)]
        assert set(ran_on) == {loop_thread}
        ran_on.clear()
        async with AsyncBatcher(blocking, 10, 0.001) as batcher:
            handles = await batcher.add_many(range(25))
            assert [await h for h in handles] == [i * 5 for i in range(25)]
        assert loop_thread not in ran_on

    asyncio.run(main())


def test_async_add_waits_for_room_without_blocking_and_a_cancelled_add_adds_nothing() -> None:
    async def main() -> None:
        gate = threading.Event()
        batcher: AsyncBatcher[int, None] = AsyncBatcher(_stuck(gate), 2, 0.0, 2)
        await batcher.add_many([1, 2])
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.005)

        ticker = asyncio.create_task(tick())
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await batcher.add(3)
        assert ticks >= 10  # the loop ran meanwhile
        with pytest.raises(QueueFullError):
            await batcher.add(4, timeout=0.05)
        gate.set()
        assert await batcher.close(5)
        ticker.cancel()
        assert batcher.stats().counts["added"] == 2

    asyncio.run(main())


@pytest.mark.parametrize(
    "options",
    [
        {"max_size": 0},
        {"max_size": 1.5},
        {"max_delay": -1},
        {"max_delay": "0.1"},
        {"max_pending": 10, "max_size": 20},
        {"policy": "drop"},
        {"retry": 3},
        {"concurrency": 0},
        {"on_progress": "x"},
        {"name": 3},
        {"clock": 1},
    ],
)
def test_bad_options_are_configuration_errors(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        Batcher(print, **options)
    with pytest.raises(ConfigurationError):
        AsyncBatcher(print, **options)
    with pytest.raises(ConfigurationError):
        Batcher(3)  # type: ignore[arg-type]


def test_a_coroutine_process_needs_the_async_batcher() -> None:
    async def process(items: list[int]) -> None:
        pass

    with pytest.raises(ConfigurationError, match="AsyncBatcher"):
        Batcher(process)  # type: ignore[arg-type]


def test_the_add_that_fills_a_batch_processes_it_unless_told_not_to() -> None:
    for caller_runs in (True, False):
        ran_on: list[str] = []

        def process(items: list[int], ran_on: list[str] = ran_on) -> None:
            ran_on.append(threading.current_thread().name)

        with Batcher(process, 10, 60.0, caller_runs=caller_runs) as batcher:
            handles = batcher.add_many(range(30))
            if caller_runs:  # done by the time the adds return
                assert all(h.done() for h in handles)
            assert all(h.result(5) is None for h in handles)
        me = threading.current_thread().name
        assert (ran_on == [me] * 3) is caller_runs
        assert all(name.startswith("statekeep-batcher") for name in ran_on) is not caller_runs
    with pytest.raises(ConfigurationError, match="caller_runs"):
        Batcher(print, caller_runs="yes")  # type: ignore[arg-type]


@settings(max_examples=25, deadline=None)
@given(
    threads=st.integers(1, 4),
    per_thread=st.integers(1, 150),
    close_after=st.floats(0, 0.02),
    max_pending=st.integers(8, 64),
)
def test_close_at_a_random_moment_loses_nothing_that_was_acknowledged(
    threads: int, per_thread: int, close_after: float, max_pending: int
) -> None:
    processed: list[int] = []
    lock = threading.Lock()

    def process(items: list[int]) -> list[int]:
        time.sleep(0.0005)
        with lock:
            processed.extend(items)
        return items

    batcher = Batcher(process, 8, 0.001, max_pending, caller_runs=False)
    acknowledged: list[tuple[int, Any]] = []

    def add(n: int) -> None:
        for i in range(per_thread):
            item = n * 1000 + i
            try:
                handle = batcher.add(item, timeout=5)
            except FlowClosedError:
                return
            with lock:
                acknowledged.append((item, handle))

    workers = [threading.Thread(target=add, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    time.sleep(close_after)
    assert batcher.close(10)
    for worker in workers:
        worker.join(10)
    # every acknowledged item was processed once, with its own result; no other was
    assert all(handle.result(5) == item for item, handle in acknowledged)
    assert sorted(processed) == sorted(item for item, _ in acknowledged)


@settings(max_examples=25, deadline=None)
@given(cancel_after=st.lists(st.floats(0, 0.01), min_size=1, max_size=40))
def test_async_adds_cancelled_at_random_points_add_nothing_and_lose_nothing(
    cancel_after: list[float],
) -> None:
    async def main() -> None:
        processed: list[int] = []

        def process(items: list[int]) -> list[int]:
            time.sleep(0.001)  # slow: the small queue fills, adds wait for room
            processed.extend(items)
            return items

        batcher: AsyncBatcher[int, int] = AsyncBatcher(process, 2, 0.0, 4)
        acknowledged: list[tuple[int, Any]] = []

        async def add(item: int, after: float) -> None:
            try:
                async with asyncio.timeout(after):
                    acknowledged.append((item, await batcher.add(item)))
            except TimeoutError:
                pass

        await asyncio.gather(*(add(n, after) for n, after in enumerate(cancel_after)))
        assert await batcher.close(10)
        assert [await handle for _, handle in acknowledged] == [i for i, _ in acknowledged]
        assert sorted(processed) == sorted(i for i, _ in acknowledged)

    asyncio.run(main())
