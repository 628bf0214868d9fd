"""The event loop keeps running during heavy operations: a task sleeping 1 ms
in a loop records its overshoot, and the worst one stays far below the
operation's length (and below what one blocking call would cost)."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

import statekeep
import statekeep.aio
from _backends import Backend
from conformance.models import Todo

from .conftest import LagProbe, with_store

# entities per heavy operation: 100k where it takes seconds, not minutes
SIZES = {"sqlite-file": 100_000, "files": 3_000}
SIZE = 20_000


def size_for(backend: Backend) -> int:
    return SIZES.get(backend.name, SIZE)


def report(what: str, probe: LagProbe, seconds: float) -> None:
    lags = sorted(probe.lags)
    p99 = lags[int(len(lags) * 0.99)] if lags else 0.0
    print(
        f"{what}: {seconds * 1000:.0f} ms, {len(lags)} wake-ups, loop lag "
        f"p99 {p99 * 1000:.1f} ms, worst {probe.worst * 1000:.1f} ms "
        f"({probe.worst_overall * 1000:.1f} ms with garbage collections, the longest "
        f"{probe.gc_worst * 1000:.1f} ms)"
    )


def assert_far_below(probe: LagProbe, seconds: float) -> None:
    assert probe.lags, "the probe never woke up: the loop was blocked throughout"
    assert probe.worst < min(0.1, seconds / 5), f"worst lag {probe.worst * 1000:.1f} ms"


def test_save_many_and_find_and_count_leave_the_loop_running(
    store_url: str, backend: Backend
) -> None:
    n = size_for(backend)

    async def body(store: statekeep.aio.AsyncStore) -> None:
        todos = [Todo(title=f"t{i}", priority=i % 5) for i in range(n)]
        async with LagProbe() as probe:
            start = time.perf_counter()
            assert await store.save_many(todos) == n
            seconds = time.perf_counter() - start
        report(f"save_many {n:,} ({backend.name})", probe, seconds)
        assert_far_below(probe, seconds)

        async with LagProbe() as probe:
            start = time.perf_counter()
            found = 0
            async for _ in store.find(Todo, order_by="-title"):
                found += 1
            seconds = time.perf_counter() - start
        assert found == n
        report(f"find over {n:,} ({backend.name})", probe, seconds)
        assert_far_below(probe, seconds)

        async with LagProbe() as probe:
            start = time.perf_counter()
            assert await store.count(Todo, Todo.f.priority >= 1) == n - n // 5
            seconds = time.perf_counter() - start
        assert probe.worst < 0.1

    with_store(store_url, body)


def test_a_full_write_behind_queue_blocks_no_loop(store_url: str, backend: Backend) -> None:
    """enqueue never waits on the loop (QueueFullError when full under policy
    "block"); enqueue_wait waits for room on a thread while the loop runs."""
    n = min(size_for(backend), 5_000)

    async def body(store: statekeep.aio.AsyncStore) -> None:
        async with LagProbe() as probe:
            start = time.perf_counter()
            receipts = [await store.enqueue_wait(Todo(title=str(i))) for i in range(n)]
            refused = 0
            for _ in range(100):
                try:
                    receipts.append(store.enqueue(Todo(title="more")))
                except statekeep.QueueFullError:
                    refused += 1
            await asyncio.gather(*receipts)
            seconds = time.perf_counter() - start
        report(f"enqueue_wait {n:,} into max_pending=50 ({backend.name})", probe, seconds)
        assert await store.count(Todo) == n + 100 - refused
        assert_far_below(probe, seconds)

    options = {"writebehind": {"max_pending": 50, "window": 0.005}}
    with_store(store_url, body, **options)


def test_enqueue_on_a_loop_thread_refuses_rather_than_wait_for_room(store_url: str) -> None:
    async def body(store: statekeep.aio.AsyncStore) -> None:
        receipts = []  # LOW writes wait for idle time (or low_max_age): they stay pending
        with pytest.raises(statekeep.QueueFullError, match="enqueue_wait"):
            for i in range(1000):
                receipts.append(store.enqueue(Todo(title=str(i)), statekeep.Priority.LOW))
        await asyncio.gather(*receipts)

    options = {"writebehind": {"max_pending": 3, "low_max_age": 2.0}}
    with_store(store_url, body, **options)


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_postgresql_fails_typed_without_blocking_the_loop() -> None:
    url = f"postgresql://postgres@127.0.0.1:{_unused_port()}/test?connect_timeout=1"

    async def main() -> None:
        async with LagProbe() as probe:
            start = time.perf_counter()
            with pytest.raises(statekeep.BackendError):
                await statekeep.aio.open(url)
            seconds = time.perf_counter() - start
        report("open of an unreachable PostgreSQL", probe, seconds)
        assert probe.worst < 0.1

    asyncio.run(main())
