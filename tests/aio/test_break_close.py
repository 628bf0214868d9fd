# mypy: ignore-errors
# (hostile input: these tests pass the wrong types on purpose)
"""Hostile-user attacks on AsyncStore.close(): concurrent closes, cancelled
closes, closes while other tasks hold blocks or page through a find."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

import statekeep
import statekeep.aio
from conformance.models import Todo
from statekeep.backends import open_backend


class SlowClose:
    """A backend whose close() takes a while (a server round trip, a checkpoint)."""

    def __init__(self, inner: Any, delay: float = 0.5) -> None:
        self.__dict__["inner"] = inner
        self.__dict__["delay"] = delay
        self.__dict__["finished"] = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def close(self) -> None:
        time.sleep(self.delay)
        self.inner.close()
        self.finished.set()


def _slow_store(url: str) -> tuple[statekeep.aio.AsyncStore, SlowClose]:
    backend = SlowClose(open_backend(url, {}))
    return statekeep.aio.AsyncStore(statekeep.open(url, backend=backend)), backend


def _aio_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("statekeep-aio")}


def test_a_second_close_waits_for_the_first(store_url: str) -> None:
    """Store.close(): "one called meanwhile waits for it". The async close runs
    the sync close on a thread named statekeep-close, which Store.close exempts
    from waiting (it takes it for a store's own thread): the second
    `await store.close()` returns while the backend is still being closed."""

    async def main() -> None:
        store, backend = _slow_store(store_url)
        await store.save(Todo(title="x"))
        first = asyncio.create_task(store.close())
        await asyncio.sleep(0.05)
        await store.close()
        done = backend.finished.is_set()
        await first
        assert done, "the second close() returned before the store had finished closing"

    asyncio.run(main())


def test_a_cancelled_close_leaks_no_worker_thread(store_url: str) -> None:
    """`await asyncio.wait_for(store.close(), t)` (a shutdown deadline): the
    sync close goes on and finishes, but the AsyncStore's worker threads are
    never shut down (self._workers.close() comes after the polling loop)."""

    async def main() -> None:
        before = _aio_threads()
        store, backend = _slow_store(store_url)
        await asyncio.gather(*(store.count(Todo) for _ in range(8)))
        assert len(_aio_threads() - before) >= 2
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(store.close(), 0.05)
        assert backend.finished.wait(3)
        await asyncio.sleep(0.3)
        assert store.closed
        leaked = _aio_threads() - before
        assert not leaked, f"{len(leaked)} worker threads outlive the closed store"

    asyncio.run(main())


def test_closing_the_wrapped_sync_store_stops_the_async_workers(store_url: str) -> None:
    """AsyncStore(store): "closing either closes both". Closing the sync Store
    leaves the AsyncStore's worker threads running for ever."""

    async def main() -> None:
        before = _aio_threads()
        sync = statekeep.open(store_url)
        store = statekeep.aio.AsyncStore(sync)
        await asyncio.gather(*(store.count(Todo) for _ in range(4)))
        sync.close()
        assert store.closed
        with pytest.raises(statekeep.StoreClosedError):
            await store.count(Todo)
        await asyncio.sleep(0.3)
        leaked = _aio_threads() - before
        assert not leaked, f"{len(leaked)} worker threads outlive the closed store"

    asyncio.run(main())


def test_a_block_of_another_task_gets_store_closed_error_after_close(store_url: str) -> None:
    """A task holds a block; another closes the store; the holder's next call
    (and its block's end) must raise StoreClosedError, not the executor's
    RuntimeError('cannot schedule new futures after shutdown')."""

    async def main() -> list[BaseException]:
        store = await statekeep.aio.open(store_url)
        inside, go = asyncio.Event(), asyncio.Event()
        errors: list[BaseException] = []

        async def holder() -> None:
            try:
                async with store.transaction():
                    inside.set()
                    await go.wait()
                    await store.save(Todo(title="late"))
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        task = asyncio.create_task(holder())
        await inside.wait()
        await store.close()
        go.set()
        await task
        return errors

    errors = asyncio.run(main())
    assert len(errors) == 1
    assert isinstance(errors[0], statekeep.StoreClosedError), repr(errors[0])


def test_closing_inside_ones_own_block_ends_it_with_store_closed_error(store_url: str) -> None:
    async def main() -> None:
        store = await statekeep.aio.open(store_url)
        with pytest.raises(statekeep.StoreClosedError):
            async with store.transaction():
                await store.save(Todo(id="z", title="z"))
                await store.close()
        assert store.closed

    asyncio.run(main())


def test_a_find_being_paged_gets_store_closed_error_after_close(store_url: str) -> None:
    """Only the error's type is kept: a kept traceback keeps the abandoned
    cursor (its _pages frame could not close it on the shut-down worker), and
    on PostgreSQL that cursor's connection keeps its lock on the table, so
    the fixture's DROP SCHEMA waits for ever."""

    async def main() -> tuple[int, type[BaseException] | None]:
        store = await statekeep.aio.open(store_url)
        await store.save_many([Todo(title=str(i)) for i in range(2000)])
        seen = 0
        try:
            async for _ in store.find(Todo):
                seen += 1
                if seen == 1:
                    await store.close()
        except BaseException as exc:  # noqa: BLE001
            return seen, type(exc)
        return seen, None

    seen, error = asyncio.run(main())
    assert seen >= 1
    assert error is statekeep.StoreClosedError, error


# -- attacks that found nothing ----------------------------------------------


def test_calls_after_close_are_store_closed_errors_and_close_twice_is_fine(
    store_url: str,
) -> None:
    async def main() -> None:
        store = await statekeep.aio.open(store_url)
        todo = await store.save(Todo(title="x"))

        async def busy() -> int:
            n = 0
            try:
                while True:
                    await store.save(Todo(title="b"))
                    await store.get(Todo, todo.id)
                    await store.count(Todo)
                    n += 1
            except statekeep.StoreClosedError:
                return n

        tasks = [asyncio.create_task(busy()) for _ in range(5)]
        await asyncio.sleep(0.05)
        await store.close()
        await store.close()
        assert all(isinstance(n, int) for n in await asyncio.gather(*tasks))

        async def block() -> None:
            async with store.transaction():
                pass

        async def agen() -> Any:
            yield Todo(title="z")

        calls = [
            lambda: store.save(Todo(title="y")),
            lambda: store.get(Todo, todo.id),
            lambda: store.get_many(Todo, [todo.id]),
            lambda: store.count(Todo),
            lambda: store.delete(todo),
            lambda: store.save_many([Todo(title="z")]),
            lambda: store.save_many(agen()),
            lambda: store.flush(),
            lambda: store.find(Todo).all(),
            block,
            lambda: store.enqueue_wait(Todo(title="q")),
        ]
        for call in calls:
            with pytest.raises(statekeep.StoreClosedError):
                await call()
        with pytest.raises(statekeep.StoreClosedError):
            store.enqueue(Todo(title="q"))
        with pytest.raises(statekeep.StoreClosedError):
            store.on(Todo.Created, lambda e: None)

    asyncio.run(main())


def test_breaking_out_of_async_for_frees_the_worker_and_results_read_once(
    store_url: str,
) -> None:
    async def main() -> None:
        store = await statekeep.aio.open(store_url, threads=1)
        await store.save_many([Todo(title=str(i)) for i in range(500)])
        async for _ in store.find(Todo):
            break
        assert await asyncio.wait_for(store.count(Todo), 3) == 500  # the one worker is free
        assert (await store.find(Todo).first()) is not None
        results = store.find(Todo)
        assert len(await results.all()) == 500
        with pytest.raises(statekeep.QueryError):
            await results.all()  # read twice: a typed error
        await asyncio.wait_for(store.close(), 5)

    asyncio.run(main())


def test_closing_right_after_breaking_out_of_async_for_is_clean(store_url: str) -> None:
    """`async for todo in store.find(...): break` then `await store.close()`.
    The abandoned async generators are finalized by the loop later (asyncgen
    hooks); _pages' `finally: await run(close)` then submits the cursor's
    close to a worker that close() has shut down: 'Task exception was never
    retrieved: RuntimeError(cannot schedule new futures after shutdown)', and
    the cursor is never closed on its thread (on PostgreSQL its connection
    keeps its lock while anything references the failed task)."""

    async def main() -> tuple[list[str], int]:
        loop_errors: list[str] = []
        asyncio.get_running_loop().set_exception_handler(
            lambda _, c: loop_errors.append(f"{c.get('message')}: {c.get('exception')!r}")
        )
        before = _aio_threads()
        store = await statekeep.aio.open(store_url)
        await store.save_many([Todo(title=str(i)) for i in range(500)])
        # `async for ...: break` right before close() hits it when close() is
        # quick (memory: every time); an iterator closed after close(), always
        rows = aiter(store.find(Todo))
        await anext(rows)
        await asyncio.wait_for(store.close(), 5)
        await rows.aclose()  # type: ignore[attr-defined]
        del rows
        await asyncio.sleep(0.2)
        return loop_errors, len(_aio_threads() - before)

    loop_errors, leaked = asyncio.run(main())
    assert not loop_errors, loop_errors
    assert not leaked
