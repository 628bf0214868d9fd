"""The threads behind an AsyncStore: blocks and find iterations keep one of
their own pool, single calls borrow one of theirs, and what must end a
block or a cursor runs even when its task is cancelled first."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator
from typing import TypeVar

import pytest

import statekeep
import statekeep.aio
from conformance.models import Note, Todo
from statekeep.aio._block import own_block
from statekeep.aio._threads import call_to_end

from .conftest import with_store

T = TypeVar("T")


def test_a_task_started_inside_a_block_runs_with_one_thread(store_url: str) -> None:
    """With one pool, threads=1 deadlocked: the block kept the only thread."""

    async def body(store: statekeep.aio.AsyncStore) -> None:
        await store.save(Note(id="seen", text="committed"))
        async with asyncio.timeout(10), store.transaction():
            await store.save(Todo(id="mine", title="in the block"))
            child = asyncio.create_task(store.get(Note, "seen"))
            counted = asyncio.create_task(store.count(Note))
            assert (await child).text == "committed"
            assert await counted == 1
        assert await store.count(Todo) == 1

    with_store(store_url, body, threads=1)


def test_calls_inside_a_find_iteration_run_with_one_thread(store_url: str) -> None:
    async def body(store: statekeep.aio.AsyncStore) -> None:
        await store.save_many([Note(id=f"n{i:03}", text="x") for i in range(150)])
        seen = 0
        async with asyncio.timeout(10):
            async for note in store.find(Note, order_by="id"):
                assert (await store.get(Note, note.id)).id == note.id
                if seen % 50 == 0:
                    assert await store.count(Note) == 150
                seen += 1
            # two iterations side by side, each on a thread it keeps
            left, right = store.find(Note, order_by="id"), store.find(Note, order_by="id")
            pairs = [(a.id, b.id) async for a, b in _zip(left, right)]
        assert seen == 150
        assert len(pairs) == 150
        assert all(a == b for a, b in pairs)

    with_store(store_url, body, threads=1, blocks=2)


async def _zip(left: AsyncIterable[T], right: AsyncIterable[T]) -> AsyncIterator[tuple[T, T]]:
    lefts, rights = aiter(left), aiter(right)
    while True:
        try:
            a = await anext(lefts)
            b = await anext(rights)
        except StopAsyncIteration:
            return
        yield a, b


def test_request_style_blocks_gathering_reads_all_end(store_url: str) -> None:
    """Eight concurrent requests, each a block that gathers reads in child
    tasks: with one pool they stalled until the write lock timed out."""

    async def request(store: statekeep.aio.AsyncStore, n: int) -> None:
        async with store.transaction():
            await store.save(Todo(id=f"t{n}", title="request"))
            notes = await asyncio.gather(*(store.get(Note, f"n{i}") for i in range(3)))
            assert [note.text for note in notes] == ["x"] * 3
            await store.save(Note(id=f"r{n}", text="done"))

    async def body(store: statekeep.aio.AsyncStore) -> None:
        await store.save_many([Note(id=f"n{i}", text="x") for i in range(3)])
        async with asyncio.timeout(20):
            await asyncio.gather(*(request(store, n) for n in range(8)))
        assert await store.count(Todo) == 8
        assert await store.count(Note) == 11

    with_store(store_url, body, threads=2, blocks=8)


def test_blocks_beyond_the_limit_wait_for_a_thread(store_url: str) -> None:
    async def block(store: statekeep.aio.AsyncStore, n: int) -> None:
        async with store.transaction():
            await store.save(Todo(id=f"t{n}", title="x"))
            await asyncio.sleep(0.001)

    async def body(store: statekeep.aio.AsyncStore) -> None:
        most = 0

        async def watch() -> None:
            nonlocal most
            while True:
                holders = [t for t in threading.enumerate() if "aio-block" in t.name]
                most = max(most, len(holders))
                await asyncio.sleep(0.0005)

        watcher = asyncio.create_task(watch())
        async with asyncio.timeout(30):
            await asyncio.gather(*(block(store, n) for n in range(40)))
        watcher.cancel()
        assert await store.count(Todo) == 40
        assert 1 <= most <= 3

    with_store(store_url, body, blocks=3)


@pytest.mark.parametrize("blocks", [0, -1, 1.5, True, "8"])
def test_a_bad_blocks_option_is_a_configuration_error(blocks: object) -> None:
    async def main() -> None:
        with pytest.raises(statekeep.errors.ConfigurationError, match="blocks"):
            await statekeep.aio.open("memory://", blocks=blocks)  # type: ignore[arg-type]
        with (
            statekeep.open("memory://") as sync,
            pytest.raises(statekeep.errors.ConfigurationError, match="blocks"),
        ):
            statekeep.aio.AsyncStore(sync, blocks=blocks)  # type: ignore[arg-type]

    asyncio.run(main())


def test_a_block_cancelled_before_its_end_began_rolls_back_and_frees_its_thread(
    store_url: str,
) -> None:
    """The block's end was queued behind other work on its thread when the
    task was cancelled: it used not to run at all, leaving the transaction
    open on a thread that the next block then took."""

    async def body(store: statekeep.aio.AsyncStore) -> None:
        async def cancelled_at_its_end() -> None:
            async with store.transaction():
                await store.save(Note(id="undone", text="x"))
                block = own_block()
                assert block is not None
                block.worker.submit(time.sleep, 0.3)  # the end waits behind it

        task = asyncio.create_task(cancelled_at_its_end())
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with asyncio.timeout(10), store.transaction():
            await store.save(Note(id="probe", text="x"))
        assert [n.id for n in await store.find(Note).all()] == ["probe"]

    with_store(store_url, body, blocks=1)


def test_an_abandoned_find_iteration_gives_its_thread_back_clean(store_url: str) -> None:
    async def body(store: statekeep.aio.AsyncStore) -> None:
        await store.save_many([Note(id=f"n{i}", text="x") for i in range(300)])

        async def reading() -> None:
            async for _ in store.find(Note):
                raise KeyError  # leaves the iteration without closing it

        for _ in range(3):
            with pytest.raises(KeyError):
                await reading()
            gc.collect()  # the loop's async-generator hook closes it
            async with asyncio.timeout(10), store.transaction():
                await store.save(Todo(title="after"))
        assert await store.count(Todo) == 3

    with_store(store_url, body, blocks=1)


def test_call_to_end_runs_a_call_its_cancelled_caller_had_not_started() -> None:
    async def main() -> None:
        worker = concurrent.futures.ThreadPoolExecutor(1)
        ran = threading.Event()
        told: list[str] = []
        try:
            worker.submit(time.sleep, 0.2)
            task = asyncio.create_task(
                call_to_end(worker, ran.set, on_cancel=lambda: told.append("cancelled"))
            )
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert ran.is_set()  # waited for, then CancelledError
            assert told == ["cancelled"]
        finally:
            worker.shutdown()

    asyncio.run(main())


def test_closing_the_store_stops_both_pools() -> None:
    async def main() -> None:
        store = await statekeep.aio.open("memory://", threads=2, blocks=2)
        async with store.transaction():
            await store.save(Note(text="x"))
        await store.count(Note)
        await store.close()
        for _ in range(100):
            if not [t for t in threading.enumerate() if t.name.startswith("statekeep-aio")]:
                break
            await asyncio.sleep(0.02)
        assert not [t for t in threading.enumerate() if t.name.startswith("statekeep-aio")]
        with pytest.raises(statekeep.errors.StoreClosedError):
            async with store.transaction():
                pass
        with pytest.raises(statekeep.errors.StoreClosedError):
            await store.count(Note)

    asyncio.run(main())
