"""`async with store.transaction()`: a task's own, on every backend."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import statekeep
import statekeep.aio
from conformance.models import Counter, Todo

from .conftest import with_store


def test_a_block_commits_and_nested_blocks_are_savepoints(store_url: str) -> None:
    async def body(store: statekeep.aio.AsyncStore) -> None:
        async with store.transaction():
            await store.save(Todo(id="kept", title="kept"))
            with pytest.raises(KeyError):
                async with store.transaction():
                    await store.save(Todo(id="undone", title="undone"))
                    assert await store.count(Todo) == 2  # the block sees its own writes
                    raise KeyError
        assert [t.id for t in await store.find(Todo).all()] == ["kept"]

    with_store(store_url, body)


def test_an_exception_rolls_back_and_versions_go_back(store_url: str) -> None:
    async def body(store: statekeep.aio.AsyncStore) -> None:
        todo = await store.save(Todo(title="a"))
        with pytest.raises(RuntimeError):
            async with store.transaction():
                todo.title = "b"
                await store.save(todo)
                assert todo.version == 2
                raise RuntimeError
        assert todo.version == 1
        assert (await store.get(Todo, todo.id)).title == "a"
        todo.title = "c"
        await store.save(todo)  # not stale: the version went back with the block
        assert (await store.get(Todo, todo.id)).version == 2

    with_store(store_url, body)


def test_another_task_is_not_part_of_a_block_and_sees_only_commits(store_url: str) -> None:
    """Another task, even one started inside the block, neither joins it nor
    sees its uncommitted writes; its own writes are its own transactions."""

    async def body(store: statekeep.aio.AsyncStore) -> None:
        inside = asyncio.Event()
        seen: list[int] = []

        async def reader() -> None:
            await inside.wait()
            seen.append(await store.count(Todo))
            seen.append(len(await store.get_many(Todo, ["a"])))

        async def other_writer() -> None:
            await store.save(Todo(id="other", title="other task"))

        with pytest.raises(RuntimeError):
            async with store.transaction():
                await store.save(Todo(id="a", title="in the block"))
                child = asyncio.create_task(reader())  # started inside the block
                inside.set()
                await child
                raise RuntimeError("roll back")
        assert seen == [0, 0]
        await other_writer()
        assert [t.id for t in await store.find(Todo).all()] == ["other"]

    with_store(store_url, body)


def test_a_cancelled_task_rolls_its_block_back(store_url: str) -> None:
    async def body(store: statekeep.aio.AsyncStore) -> None:
        started = asyncio.Event()

        async def writer() -> None:
            async with store.transaction():
                await store.save(Todo(id="x", title="never"))
                started.set()
                await asyncio.sleep(30)

        task = asyncio.create_task(writer())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await store.count(Todo) == 0
        async with store.transaction():  # the thread it held is free, no transaction left open
            await store.save(Todo(id="y", title="after"))
        assert await store.count(Todo) == 1

    with_store(store_url, body)


@pytest.mark.parametrize("delay", [0.0, 0.0005, 0.002, 0.01])
def test_a_cancelled_save_either_committed_or_not_and_the_version_says_which(
    store_url: str, delay: float
) -> None:
    async def body(store: statekeep.aio.AsyncStore) -> None:
        todo = Todo(id="c", title="c")
        task = asyncio.create_task(store.save(todo))
        await asyncio.sleep(delay)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        stored = await store.get_many(Todo, ["c"])
        if todo.version == 1:
            assert stored["c"].version == 1
        else:
            assert todo.version == 0 and stored == {}

    with_store(store_url, body)


def test_a_cancelled_atomic_save_many_stores_nothing(store_url: str) -> None:
    async def body(store: statekeep.aio.AsyncStore) -> None:
        todos = [Todo(title=str(i)) for i in range(30_000)]
        task = asyncio.create_task(store.save_many(todos, chunk_size=500))
        await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        count = await store.count(Todo)
        assert count in (0, 30_000)  # never a half-written batch
        if count == 0:
            assert {t.version for t in todos} == {0}

    with_store(store_url, body)


def test_a_task_waiting_for_a_block_held_by_another_does_not_block_the_loop(
    store_url: str,
) -> None:
    async def body(store: statekeep.aio.AsyncStore) -> None:
        holding = asyncio.Event()
        release = asyncio.Event()

        async def holder() -> None:
            async with store.transaction():
                await store.save(Todo(id="h", title="held"))
                holding.set()
                await release.wait()

        task = asyncio.create_task(holder())
        await holding.wait()
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while not release.is_set():
                ticks += 1
                await asyncio.sleep(0.001)

        async def writer() -> None:  # waits for the holder's write lock, on a thread
            await store.save(Todo(id="w", title="waiting"))

        tick = asyncio.create_task(ticker())
        write = asyncio.create_task(writer())
        await asyncio.sleep(0.2)
        release.set()
        await asyncio.gather(task, write, tick)
        assert ticks > 50  # the loop kept running while the writer waited
        assert await store.count(Todo) == 2

    with_store(store_url, body)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(
        st.tuples(st.sampled_from("ab"), st.integers(1, 5), st.booleans()),
        min_size=1,
        max_size=12,
    )
)
def test_interleaved_blocks_of_two_tasks_lose_no_increment(
    store_url: str, steps: list[tuple[str, int, bool]]
) -> None:
    """Two tasks run blocks (read-modify-write of one counter, retried on
    ConflictError), yielding to each other at every await; the committed
    blocks' increments all count, the rolled-back ones none."""

    async def body(store: statekeep.aio.AsyncStore) -> int:
        if not await store.get_many(Counter, ["n"]):
            await store.save(Counter(id="n", total=0))
        start = (await store.get(Counter, "n")).total

        async def run(name: str) -> int:
            added = 0
            for who, amount, commit in steps:
                if who != name:
                    await asyncio.sleep(0)
                    continue
                while True:
                    try:
                        async with store.transaction():
                            counter = await store.get(Counter, "n")
                            await asyncio.sleep(0)
                            counter.total += amount
                            await store.save(counter)
                            if not commit:
                                raise LookupError
                        added += amount
                        break
                    except LookupError:
                        break
                    except (statekeep.ConflictError, statekeep.TransientBackendError):
                        await asyncio.sleep(0)
            return added

        added = sum(await asyncio.gather(run("a"), run("b")))
        assert (await store.get(Counter, "n")).total == start + added
        return added

    with_store(store_url, body)
