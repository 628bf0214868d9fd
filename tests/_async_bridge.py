"""A Store-shaped bridge to an AsyncStore: the conformance suite's tests,
unchanged, drive statekeep.aio through it.

The AsyncStore lives on an event loop in a thread of its own. Each thread that
calls the bridge gets a task of that loop (its "actor") that runs its calls
one after another, so a transaction the thread opens is that task's, as it is
the thread's with a sync Store. Every call is the AsyncStore's own: awaited
coroutines, find's async pages, `async with store.transaction()`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable, Iterator
from types import TracebackType
from typing import Any, TypeVar

import statekeep
import statekeep.aio

T = TypeVar("T")

_Job = tuple[Callable[[], Awaitable[Any]], "concurrent.futures.Future[Any]"]


class Loop:
    """An event loop running in a thread of its own, with an actor task per calling thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="bridge-loop")
        self._thread.start()
        self._actors: dict[int, asyncio.Queue[_Job | None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._lock = threading.Lock()

    def call(self, make: Callable[[], Awaitable[T]]) -> T:
        """Awaits make() in the calling thread's actor task; returns or raises what it did."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("the bridge is not for the loop's own thread")
        me = threading.get_ident()
        with self._lock:
            queue = self._actors.get(me)
            if queue is None:
                queue = self._actors[me] = asyncio.run_coroutine_threadsafe(
                    self._start_actor(), self.loop
                ).result()
        done: concurrent.futures.Future[T] = concurrent.futures.Future()
        self.loop.call_soon_threadsafe(queue.put_nowait, (make, done))
        return done.result()

    async def _start_actor(self) -> asyncio.Queue[_Job | None]:
        queue: asyncio.Queue[_Job | None] = asyncio.Queue()
        self._tasks.append(asyncio.get_running_loop().create_task(_actor(queue)))
        return queue

    async def _stop_actors(self) -> None:
        for queue in self._actors.values():
            queue.put_nowait(None)
        await asyncio.gather(*self._tasks)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop_actors(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


async def _actor(queue: asyncio.Queue[_Job | None]) -> None:
    while (job := await queue.get()) is not None:
        make, done = job
        try:
            result = await make()
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
            done.set_exception(exc)
        else:
            done.set_result(result)


class Bridge:
    """Looks like a statekeep.Store; every call goes to an AsyncStore."""

    def __init__(self, loop: Loop, astore: statekeep.aio.AsyncStore) -> None:
        self._loop = loop
        self.aio = astore

    @classmethod
    def open(cls, loop: Loop, url: str, **options: Any) -> Bridge:
        async def opening() -> statekeep.aio.AsyncStore:
            return await statekeep.aio.open(url, **options)

        return cls(loop, loop.call(opening))

    def _await(self, make: Callable[[], Awaitable[T]]) -> T:
        return self._loop.call(make)

    def __getattr__(self, name: str) -> Any:
        """What the AsyncStore does not have (bus, _core, ...) is the sync Store's."""
        return getattr(self.aio.sync, name)

    # -- awaited calls -------------------------------------------------------
    def close(self, timeout: float | None = None) -> None:
        self._await(lambda: self.aio.close(timeout))

    def __enter__(self) -> Bridge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def save(self, entity: Any) -> Any:
        return self._await(lambda: self.aio.save(entity))

    def save_many(self, entities: Any, **options: Any) -> int:
        return self._await(lambda: self.aio.save_many(entities, **options))

    def delete(self, *args: Any) -> None:
        self._await(lambda: self.aio.delete(*args))

    def get(self, cls: Any, id: Any) -> Any:
        return self._await(lambda: self.aio.get(cls, id))

    def get_many(self, cls: Any, ids: Any) -> Any:
        return self._await(lambda: self.aio.get_many(cls, ids))

    def count(self, cls: Any, *conditions: Any, **equals: Any) -> int:
        return self._await(lambda: self.aio.count(cls, *conditions, **equals))

    def flush(self, timeout: float | None = None) -> bool:
        return self._await(lambda: self.aio.flush(timeout))

    def subscribe(self, name: str, handler: Any, **options: Any) -> Any:
        return self._await(lambda: self.aio.subscribe(name, handler, **options))

    def prune_events(self, keep: int = 0) -> int:
        return self._await(lambda: self.aio.prune_events(keep))

    def subscriptions(self) -> Any:
        return self._await(lambda: self.aio.subscriptions())

    def unsubscribe(self, name: str) -> None:
        self._await(lambda: self.aio.unsubscribe(name))

    def enqueue(self, *args: Any, **options: Any) -> Any:
        async def enqueue() -> Any:  # in the thread's task: inside its block, if one is open
            return self.aio.enqueue(*args, **options)

        return self._await(enqueue)

    def enqueue_delete(self, *args: Any, **options: Any) -> Any:
        async def enqueue() -> Any:
            return self.aio.enqueue_delete(*args, **options)

        return self._await(enqueue)

    def find(self, cls: Any, *conditions: Any, **options: Any) -> Iterator[Any]:
        async def finding() -> Any:  # the arguments are checked here, as Store.find does
            return self.aio.find(cls, *conditions, **options).__aiter__()

        pages = self._await(finding)
        return self._each(pages)

    def _each(self, results: Any) -> Iterator[Any]:
        while True:
            try:
                yield self._await(lambda: results.__anext__())
            except StopAsyncIteration:
                return

    def transaction(self) -> _Transaction:
        return _Transaction(self, self.aio.transaction())

    def __repr__(self) -> str:
        return f"<Bridge {self.aio!r}>"


class _Transaction:
    def __init__(self, bridge: Bridge, block: statekeep.aio.AsyncTransaction) -> None:
        self._bridge = bridge
        self._block = block

    def __enter__(self) -> _Transaction:
        self._bridge._await(self._block.__aenter__)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._bridge._await(lambda: self._block.__aexit__(exc_type, exc, tb))
