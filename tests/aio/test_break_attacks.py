# mypy: ignore-errors
# (hostile input: these tests pass the wrong types on purpose)
"""Hostile-user attacks on statekeep.aio that found nothing: kept as
regression tests (each cheap, every backend)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

import statekeep
import statekeep.aio
from conformance.models import Counter, Note, Todo
from statekeep import errors

from .conftest import LagProbe, with_store


def test_bad_input_on_every_entry_point_is_a_typed_error_and_changes_nothing(
    store_url: str,
) -> None:
    async def body(store: statekeep.aio.AsyncStore) -> None:
        await store.save(Todo(id="keep", title="k"))
        awaited: list[Callable[[], Awaitable[Any]]] = [
            lambda: store.save(5),  # type: ignore[arg-type]
            lambda: store.save(Todo),  # type: ignore[arg-type]
            lambda: store.get(Todo, None),  # type: ignore[arg-type]
            lambda: store.get(Todo, 5),  # type: ignore[arg-type]
            lambda: store.get(Todo, "a\x00b"),
            lambda: store.get(Todo, ""),
            lambda: store.get(int, "x"),  # type: ignore[arg-type]
            lambda: store.get_many(Todo, "abc"),
            lambda: store.get_many(Todo, [None]),  # type: ignore[list-item]
            lambda: store.save_many("abc"),  # type: ignore[arg-type]
            lambda: store.save_many({"a": 1}),  # type: ignore[arg-type]
            lambda: store.save_many(Todo(title="x")),  # type: ignore[arg-type]
            lambda: store.save_many([Todo(title="y"), 1]),  # type: ignore[list-item]
            lambda: store.save_many([Todo(title="y")], chunk_size=0),
            lambda: store.save_many([Todo(title="y")], chunk_size=True),
            lambda: store.save_many([Todo(title="y")], atomic="yes"),  # type: ignore[arg-type]
            lambda: store.delete(Todo, None),  # type: ignore[arg-type]
            lambda: store.delete("Todo", "keep"),  # type: ignore[call-overload]
            lambda: store.delete(Todo(title="x"), "keep"),  # type: ignore[call-overload]
            lambda: store.delete(Todo(title="new")),
            lambda: store.count(Todo, nope=1),
            lambda: store.count(Todo, "title == 1"),  # type: ignore[arg-type]
            lambda: store.close(-1),
            lambda: store.flush("x"),  # type: ignore[arg-type]
        ]
        for call in awaited:
            with pytest.raises(errors.StatekeepError):
                await call()
        immediate: list[Callable[[], Any]] = [
            lambda: store.find(Todo, nope=1),
            lambda: store.find(Todo, "x"),  # type: ignore[arg-type]
            lambda: store.find(Todo, limit=-1),
            lambda: store.find(Todo, order_by="nope"),
            lambda: store.find(dict),  # type: ignore[arg-type]
            lambda: store.enqueue(3),  # type: ignore[arg-type]
            lambda: store.enqueue(Todo(title="z"), priority="high"),  # type: ignore[arg-type]
            lambda: store.enqueue_delete(Todo, None),
            lambda: store.on(42, lambda e: None),
            lambda: store.off(42),  # type: ignore[arg-type]
        ]
        for call in immediate:
            with pytest.raises(errors.StatekeepError):
                result = call()
                if isinstance(result, statekeep.aio.AsyncResults):
                    await result.all()
        block = store.transaction()
        with pytest.raises(errors.ConfigurationError):
            await block.__aexit__(None, None, None)
        async with block:
            with pytest.raises(errors.ConfigurationError):
                async with block:
                    pass
        await store.flush()
        assert [t.id for t in await store.find(Todo).all()] == ["keep"]
        assert (await store.get(Todo, "keep")).version == 1

    with_store(store_url, body)


async def _agen(n: int) -> AsyncIterator[Todo]:
    for i in range(n):
        if i % 100 == 0:
            await asyncio.sleep(0)
        yield Todo(title=str(i))


def test_cancellation_at_random_points_leaves_no_half_batch_no_open_block_no_thread(
    store_url: str,
) -> None:
    async def body(store: statekeep.aio.AsyncStore) -> None:
        rnd = random.Random(7)
        await store.save_many([Note(id=f"n{i}", text="x") for i in range(500)])
        base = threading.active_count()
        for rep in range(16):
            kind = rep % 8
            before = await store.count(Todo)
            todos = [Todo(title=str(i)) for i in range(2000)]
            coro: Awaitable[Any]
            if kind == 0:
                coro = store.save_many(todos, chunk_size=200)
            elif kind == 1:
                coro = store.save_many(iter(todos), chunk_size=200)
            elif kind == 2:
                coro = store.save_many(_agen(2000), chunk_size=200)
            elif kind == 3:
                todos = todos[:1]
                coro = store.save(todos[0])
            elif kind == 4:

                async def reading() -> None:
                    async for _ in store.find(Note):
                        await asyncio.sleep(0)

                coro = reading()
            elif kind == 5:

                async def nested() -> None:
                    async with store.transaction():
                        await store.save_many(todos[:500])  # noqa: B023 - awaited in the loop
                        async with store.transaction():
                            await store.save(Todo(title="nested"))

                coro = nested()
            elif kind == 6:

                async def getting() -> None:
                    for i in range(50):
                        await store.get(Note, f"n{i}")
                    await store.delete(Note, f"n{400 + rep}")  # noqa: B023 - awaited in the loop

                coro = getting()
            else:
                coro = store.save_many(todos[:300], atomic=False, chunk_size=100)
            task = asyncio.ensure_future(coro)
            await asyncio.sleep(rnd.random() * 0.02)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            added = await store.count(Todo) - before
            if kind in (0, 1, 2):
                assert added in (0, 2000), (kind, added)
            if kind == 5:
                assert added in (0, 501), added
            if kind in (0, 1, 3):
                assert {t.version for t in todos} == ({1} if added else {0}), kind
            if kind == 7:
                assert sum(t.version for t in todos[:300]) == added
            async with asyncio.timeout(3):  # no block left open, no worker held
                async with store.transaction():
                    await store.save(Note(text="probe"))
        assert threading.active_count() - base <= 2

    with_store(store_url, body, threads=4)


def test_no_loop_lag_during_heavy_operations(store_url: str) -> None:
    async def body(store: statekeep.aio.AsyncStore) -> None:
        todos = [Todo(title=str(i)) for i in range(10_000)]
        async with LagProbe() as probe:
            await store.save_many(todos)
            assert len(await store.find(Todo).all()) == 10_000
            assert sum([1 async for _ in store.find(Todo)]) == 10_000
            assert await store.count(Todo, Todo.f.title == "5") == 1
        assert probe.worst < 0.2, probe.worst

    with_store(store_url, body)


def test_enqueue_on_a_full_queue_refuses_without_blocking_and_close_drains(
    store_url: str,
) -> None:
    async def main() -> None:
        sync = statekeep.open(store_url, writebehind={"max_pending": 10, "drain_on_sigterm": False})
        store = statekeep.aio.AsyncStore(sync)
        receipts = []
        full = 0
        async with LagProbe() as probe:
            for i in range(300):
                try:
                    receipts.append(store.enqueue(Todo(title=str(i))))
                except errors.QueueFullError:
                    full += 1
            waited = [await store.enqueue_wait(Todo(title=f"w{i}")) for i in range(30)]
            await asyncio.wait_for(asyncio.gather(*receipts, *waited), 10)
            for i in range(10):
                store.enqueue(Todo(title=f"late{i}"))
            await store.close()  # with write-behind pending
        assert full > 0
        assert probe.worst < 0.1, probe.worst
        reopened = statekeep.open(store_url) if "memory" not in store_url else None
        if reopened is not None:
            assert reopened.count(Todo) == len(receipts) + 30 + 10
            reopened.close()

    asyncio.run(main())


def test_enqueue_in_blocks_and_find_inside_a_block(store_url: str) -> None:
    async def body(store: statekeep.aio.AsyncStore) -> None:
        with pytest.raises(KeyError):
            async with store.transaction():
                await store.save(Todo(id="in", title="in"))
                store.enqueue(Todo(id="q", title="queued"))
                assert [t.id async for t in store.find(Todo)] == ["in"]
                first = await store.find(Todo).first()
                assert first is not None and first.id == "in"
                assert [t.id for t in await store.find(Todo).all()] == ["in"]
                raise KeyError
        await store.flush()
        assert await store.count(Todo) == 0  # the rolled-back block's enqueue is dropped
        async with store.transaction():
            r1 = store.enqueue(Todo(id="q2", title="queued"))
            r2 = await store.enqueue_wait(Todo(id="q3", title="queued"))
        await asyncio.wait_for(asyncio.gather(r1, r2), 5)
        assert sorted(t.id for t in await store.find(Todo).all()) == ["q2", "q3"]

    with_store(store_url, body)


def test_async_handlers_run_on_the_loop_after_commit_never_for_rollbacks(
    store_url: str,
) -> None:
    async def body(store: statekeep.aio.AsyncStore) -> None:
        loop = asyncio.get_running_loop()
        seen: list[tuple[str, bool]] = []

        async def handler(event: Any) -> None:
            seen.append((event.entity_id, asyncio.get_running_loop() is loop))

        store.on(Todo.Created, handler)
        await store.save(Todo(id="a", title="a"))
        with pytest.raises(KeyError):
            async with store.transaction():
                await store.save(Todo(id="b", title="b"))
                raise KeyError
        async with store.transaction():
            await store.save(Todo(id="c", title="c"))
        await store.save_many([Todo(id="d", title="d")])
        for _ in range(100):
            if len(seen) >= 3:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        assert seen == [("a", True), ("c", True), ("d", True)]

    with_store(store_url, body)


def test_active_record_async_methods_and_the_wrong_default(store_url: str) -> None:
    async def body(store: statekeep.aio.AsyncStore) -> None:
        statekeep.use(store)
        todo = await Todo(title="a").asave()
        assert (await Todo.aget(todo.id)).title == "a"
        assert [t.id async for t in Todo.afind(title="a")] == [todo.id]
        assert (await Todo.afind().first()) is not None
        assert await Todo.acount() == 1
        with pytest.raises(errors.ConfigurationError):
            todo.save()
        with pytest.raises(errors.ConfigurationError):
            Todo.get(todo.id)
        await todo.adelete()
        assert await Todo.acount() == 0
        sync = statekeep.open("memory://")
        try:
            statekeep.use(sync)
            with pytest.raises(errors.ConfigurationError):
                await Todo(title="b").asave()
            with pytest.raises(errors.ConfigurationError):
                Todo.afind()
        finally:
            sync.close()

    with_store(store_url, body)


def test_two_hundred_concurrent_read_modify_writes_lose_no_update(store_url: str) -> None:
    async def body(store: statekeep.aio.AsyncStore) -> None:
        await store.save(Counter(id="n"))

        async def increment() -> None:
            for _ in range(2000):
                counter = await store.get(Counter, "n")
                counter.total += 1
                try:
                    await store.save(counter)
                    return
                except (errors.ConflictError, errors.TransientBackendError):
                    await asyncio.sleep(0)
            raise AssertionError("gave up")

        await asyncio.gather(*(increment() for _ in range(200)))
        assert (await store.get(Counter, "n")).total == 200

    with_store(store_url, body)


def test_an_async_store_over_a_sync_store_a_thread_uses_meanwhile(store_url: str) -> None:
    async def main() -> None:
        sync = statekeep.open(store_url)
        store = statekeep.aio.AsyncStore(sync)
        stop = threading.Event()
        problems: list[BaseException] = []

        def writer() -> None:
            try:
                while not stop.is_set():
                    with sync.transaction():
                        sync.save(Note(text="t"))
            except BaseException as exc:  # noqa: BLE001
                problems.append(exc)

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            for i in range(50):
                async with store.transaction():
                    await store.save(Todo(title=str(i)))
        finally:
            stop.set()
            thread.join(10)
        assert not problems
        assert await store.count(Todo) == 50
        await store.close()
        assert sync.closed

    asyncio.run(main())
