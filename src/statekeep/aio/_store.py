"""AsyncStore: the Store's operations, awaitable, with the event loop never blocked.

A facade over one sync Store (the core: schema, rows, versions, events,
write-behind), as httpx's AsyncClient mirrors Client. Blocking calls run on
the store's worker threads (statekeep.aio._threads); a transaction block
keeps one worker and one context for its whole length (statekeep.aio._block);
find pages its results across the hop (statekeep.aio._results). What does no
I/O (enqueue outside a block, on/off, the properties) runs on the loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import math
import threading
from collections.abc import AsyncIterable, Callable, Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any, TypeVar, overload

from .. import _arguments as check
from .._entity_batcher import AsyncEntityBatcher
from .._metering import timed
from ..backends import Backend, redacted
from ..backends.base import CollectionSpec, WouldWait
from ..conditions import Condition, OrderBy
from ..entity import Entity
from ..errors import (
    ConfigurationError,
    NotFoundError,
    QueueFullError,
    StatekeepError,
    ValidationError,
)
from ..events import DurableSubscription, Handler, Subscription, SubscriptionInfo
from ..machines import TransitionReport, asend_stored
from ..metrics import Advice, Firing, Registry, Snapshot
from ..store import Store
from ..writebehind import Policy, Priority, Receipt, WriteBehind, at_open, check_options
from ._block import AsyncTransaction, own_block, run
from ._results import AsyncResults
from ._threads import Workers, call, check_limit

E = TypeVar("E", bound=Entity)

__all__ = ["AsyncStore", "open"]

THREADS = 8  # worker threads for single calls, per store, by default
BLOCKS = 64  # transaction blocks open at once, by default (PostgreSQL: fewer, see _blocks)


async def open(
    url: str, *, threads: int = THREADS, blocks: int | None = None, **options: Any
) -> AsyncStore:
    """`store = await statekeep.aio.open(url, **options)`: an AsyncStore over
    a Store opened with statekeep.open(url, **options) (on a worker thread:
    opening reads the database). threads: how many single calls at once;
    blocks: how many transaction blocks open at once (each keeps a thread and
    a connection; None: 64, and on PostgreSQL one fewer than pool_max)."""
    check_limit(threads, "threads")
    check_limit(blocks, "blocks", none=True)
    workers = Workers(threads, "statekeep-aio")
    if threading.current_thread() is threading.main_thread():
        at_open(check_options(options.get("writebehind")).drain_on_sigterm)  # off it: no handler
    try:
        store = await workers.run(functools.partial(Store, url, **options))
    finally:
        workers.close()
    return AsyncStore(store, threads=threads, blocks=blocks)


class AsyncStore:
    """The operations of statekeep.Store, awaitable. `AsyncStore(store)` wraps
    a Store you have: both then share its backend, transactions and events,
    and closing either closes both."""

    is_async = True  # for statekeep.use(): Active Record's async methods use it

    def __init__(self, store: Store, *, threads: int = THREADS, blocks: int | None = None) -> None:
        if not isinstance(store, Store):
            raise ConfigurationError(
                f"AsyncStore() takes a statekeep.Store, not {store!r}; "
                "or open one with `await statekeep.aio.open(url)`"
            )
        check_limit(threads, "threads")
        check_limit(blocks, "blocks", none=True)
        self.sync = store
        # three pools (see _threads): single calls; blocks, at most so many at
        # once; finds and flushes, with no limit (a find inside a block or a
        # find never waits for the thread its block or find keeps)
        self._workers = Workers(threads, "statekeep-aio")
        self._blocks = Workers(_blocks(store, blocks), "statekeep-aio-block", keep=8)
        self._holders = Workers(None, "statekeep-aio-hold", keep=8)
        store._core.exits.callback(self._close_workers)  # closing the Store closes them
        get_now = getattr(store.backend, "get_now", None)  # base.ReadsNow, if it has it
        self._get_now: Callable[[CollectionSpec, str], str | None] | None = (
            get_now if callable(get_now) else None
        )

    # -- lifecycle -----------------------------------------------------------
    @property
    def url(self) -> str:
        return self.sync.url

    @property
    def closed(self) -> bool:
        return self.sync.closed

    @property
    def closing(self) -> bool:
        return self.sync.closing

    @property
    def backend(self) -> Backend:
        return self.sync.backend

    async def close(self, timeout: float | None = None) -> None:
        """Stores what was enqueued (see Store.close) and releases everything."""
        timeout = check.timeout(timeout)
        # on a thread of its own (close waits for the workers' calls), waited for
        # to the end even when cancelled: a store is closed once close() returns
        closing = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="aio-close")
        try:
            await call(closing, self.sync.close, timeout)
        finally:
            closing.shutdown(wait=False)
            self._close_workers()

    def _close_workers(self) -> None:
        self._workers.close()
        self._blocks.close()
        self._holders.close()

    async def __aenter__(self) -> AsyncStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "closed" if self.sync.closed else "open"
        return f"<AsyncStore {redacted(self.url)} {state}>"

    # -- transactions --------------------------------------------------------
    def transaction(self) -> AsyncTransaction:
        """`async with store.transaction():` an atomic block of this task;
        nested blocks are savepoints. Other tasks (even ones started inside
        it) are not part of it, and do not see what it has not committed."""
        return AsyncTransaction(self._blocks, self.sync.transaction)

    # -- writes --------------------------------------------------------------
    async def save(self, entity: E) -> E:
        """Store.save, awaitable. Cancelled, it has either committed or not:
        the entity's version tells which."""
        return await run(self._workers, self.sync.save, entity)

    async def save_many(
        self,
        entities: Iterable[Entity] | AsyncIterable[Entity],
        *,
        chunk_size: int | None = None,
        atomic: bool = True,
    ) -> int:
        """Store.save_many, awaitable, of an iterable or an async iterable (read
        a chunk at a time). Cancelled, it stops at the next chunk: with
        atomic=True nothing of it is stored; with atomic=False the chunks
        committed before stay."""
        self.sync._core.check_open()
        if chunk_size is None:
            chunk_size = self.backend.chunk_rows
        chunk_size = check.chunk_size(chunk_size)
        check.flag(atomic, "atomic")
        if isinstance(entities, AsyncIterable):
            return await self._save_async_iterable(entities, chunk_size, atomic)
        stop = threading.Event()
        watched = _watched(check.entities(entities), stop)
        save = functools.partial(self.sync.save_many, chunk_size=chunk_size, atomic=atomic)
        return await run(self._workers, save, watched, on_cancel=stop.set)

    async def _save_async_iterable(
        self, entities: AsyncIterable[Entity], chunk_size: int, atomic: bool
    ) -> int:
        saved = 0
        if atomic:
            async with self.transaction():
                async for chunk in _chunks(entities, chunk_size):
                    saved += await self.save_many(chunk, chunk_size=chunk_size, atomic=False)
            return saved
        async for chunk in _chunks(entities, chunk_size):
            saved += await self.save_many(chunk, chunk_size=chunk_size, atomic=False)
        return saved

    @overload
    async def delete(self, target: Entity) -> None: ...
    @overload
    async def delete(self, target: type[Entity], id: str) -> None: ...

    async def delete(self, target: Entity | type[Entity], id: str | None = None) -> None:
        """Store.delete, awaitable."""
        await run(self._workers, self.sync.delete, target, id)

    # -- write-behind --------------------------------------------------------
    @property
    def writebehind(self) -> WriteBehind:
        return self.sync.writebehind

    def enqueue(
        self,
        entity: Entity,
        priority: Priority = Priority.NORMAL,
        *,
        deadline: float | None = None,
        expect_version: int | None = None,
    ) -> Receipt:
        """Store.enqueue: no I/O, no await; `await receipt` waits until stored.
        It never waits for room: with the pending set full under policy
        "block" it raises QueueFullError (`await enqueue_wait(...)` waits)."""
        return self._enqueue(
            self.sync.enqueue,
            entity,
            priority,
            deadline=deadline,
            expect_version=expect_version,
        )

    async def enqueue_wait(
        self,
        entity: Entity,
        priority: Priority = Priority.NORMAL,
        *,
        deadline: float | None = None,
        expect_version: int | None = None,
    ) -> Receipt:
        """enqueue(), waiting (without blocking the loop) for room in a full
        pending set under policy "block", up to its block_timeout. Cancelled
        while it waits, it has enqueued nothing."""
        options = self.sync.writebehind.options
        loop = asyncio.get_running_loop()
        wait = options.block_timeout
        give_up = math.inf if wait is None else loop.time() + wait
        pause = _FIRST_LOOK
        while True:
            try:
                return self.enqueue(
                    entity, priority, deadline=deadline, expect_version=expect_version
                )
            except QueueFullError:
                if options.policy is not Policy.BLOCK or loop.time() >= give_up:
                    raise
            # room comes when the engine stores a batch: look again soon, then
            # less often (on the loop: a cancelled wait leaves nothing behind)
            await asyncio.sleep(min(pause, max(0.0, give_up - loop.time())))
            pause = min(pause * 2, _LAST_LOOK)

    def enqueue_delete(
        self,
        target: Entity | type[Entity],
        id: str | None = None,
        *,
        priority: Priority = Priority.NORMAL,
        deadline: float | None = None,
        expect_version: int | None = None,
    ) -> Receipt:
        """Store.enqueue_delete: no I/O, no await."""
        return self._enqueue(
            self.sync.enqueue_delete,
            target,
            id,
            priority=priority,
            deadline=deadline,
            expect_version=expect_version,
        )

    def _enqueue(self, fn: Callable[..., Receipt], *args: Any, **kwargs: Any) -> Receipt:
        block = own_block()
        if block is None:
            return fn(*args, **kwargs)
        # inside the task's block: in its context, on its thread, where the
        # block's transaction is; the thread is idle (the task is here) and an
        # enqueue in a block does no I/O (it is enqueued when the block commits)
        return block.worker.submit(block.context.run, fn, *args, **kwargs).result()

    async def flush(self, timeout: float | None = None) -> bool:
        """Waits until everything enqueued so far is stored (or failed for
        good); False if timeout passed first."""
        self.sync._core.check_open()
        timeout = check.timeout(timeout)
        return await self._holders.run(self.sync.flush, timeout, detach=True)

    wait_idle = flush

    def batcher(self, cls: type[E], **options: Any) -> AsyncEntityBatcher[E]:
        """A statekeep.flow.AsyncBatcher of cls entities, saved with save_many
        a batch at a time off the loop: `handle = await batcher.add(todo)`."""
        return AsyncEntityBatcher(self.sync, cls, **options)

    # -- metrics (docs/metrics.md) ----------------------------------------------
    def metrics(self) -> Snapshot:
        """Store.metrics(): every metric of the store now."""
        return self.sync.metrics()

    @property
    def registry(self) -> Registry:
        return self.sync.registry

    def advice(self) -> list[Advice]:
        """Store.advice()."""
        return self.sync.advice()

    def alerts(self) -> list[Firing]:
        """Store.alerts()."""
        return self.sync.alerts()

    # -- events --------------------------------------------------------------
    def on(self, target: Any, handler: Handler | None = None, *, priority: int = 0) -> Any:
        """Store.on: coroutine handlers run on this event loop."""
        return self.sync.on(target, handler, priority=priority)

    def off(self, handler: Handler | Subscription) -> int:
        return self.sync.off(handler)

    async def subscribe(
        self, name: str, handler: Handler, *, events: Sequence[Any] | None = None
    ) -> DurableSubscription:
        """Store.subscribe: a coroutine handler runs on this event loop."""
        self.sync._core.check_open()
        loop = asyncio.get_running_loop()
        durable = self.sync._durable  # Store.subscribe, with this loop for coroutine handlers
        with timed(self.sync, "subscribe"):
            return await self._workers.run(durable.subscribe, name, handler, events, loop)

    async def prune_events(self, keep: int = 0) -> int:
        return await self._workers.run(self.sync.prune_events, keep)

    async def subscriptions(self) -> list[SubscriptionInfo]:
        return await self._workers.run(self.sync.subscriptions)

    async def unsubscribe(self, name: str) -> None:
        await self._workers.run(self.sync.unsubscribe, name)

    # -- reads ---------------------------------------------------------------
    async def get(self, cls: type[E], id: str) -> E:
        """The entity stored under id; NotFoundError if there is none.

        Outside a transaction block, on a backend whose point reads wait for
        nothing (SQLite in WAL mode, memory), it is read on the loop's thread
        (a hop to a worker costs more than the read); where such a read
        would wait (a lock), on a worker."""
        if self._get_now is not None and own_block() is None:
            try:
                loaded: E = self._read_now(self._get_now, cls, id)
                return loaded
            except WouldWait:
                pass
        return await run(self._workers, self.sync.get, cls, id)

    def _read_now(
        self, get_now: Callable[[CollectionSpec, str], str | None], cls: Any, id: Any
    ) -> Any:
        core = self.sync._core
        with timed(self.sync, "get", passing=WouldWait):  # Store.get's metrics
            with core.calls:  # StoreClosedError once the store is closing
                info = core.info(cls)
                body = get_now(info.spec, check.an_id(id))
            if body is None:
                raise NotFoundError(info.spec.name, id)
            return info.load(body)

    async def get_many(self, cls: type[E], ids: Iterable[str]) -> dict[str, E]:
        """The stored entities among ids, by id (missing ids are left out)."""
        return await run(self._workers, self.sync.get_many, cls, ids)

    def find(
        self,
        cls: type[E],
        *conditions: Condition,
        order_by: OrderBy = None,
        limit: int | None = None,
        offset: int = 0,
        **equals: Any,
    ) -> AsyncResults[E]:
        """`async for todo in store.find(Todo, ...)`, `await store.find(...).all()`
        or `.first()`: the arguments are checked here, the rows read in pages."""
        results = self.sync.find(
            cls, *conditions, order_by=order_by, limit=limit, offset=offset, **equals
        )
        return AsyncResults(self._holders, results)

    async def count(self, cls: type[Entity], *conditions: Condition, **equals: Any) -> int:
        count = functools.partial(self.sync.count, **equals)
        return await run(self._workers, count, cls, *conditions)

    async def count_by(
        self, cls: type[Entity], field: str, /, *conditions: Condition, **equals: Any
    ) -> dict[Any, int]:
        count_by = functools.partial(self.sync.count_by, **equals)
        return await run(self._workers, count_by, cls, field, *conditions)

    # -- state machines (statekeep.machines) -----------------------------------
    async def send(
        self,
        entity: E,
        event: str | Callable[..., Any],
        /,
        *,
        field: str | None = None,
        retry: bool = False,
        **data: Any,
    ) -> E:
        """Store.send, awaitable; guards and actions that are coroutine
        functions are awaited on this loop, the save runs on a worker."""
        self.sync._core.check_open()
        with timed(self.sync, "send"):
            return await asend_stored(self, entity, event, field=field, retry=retry, data=data)

    async def transition_many(
        self, cls: type[Entity], event: str | Callable[..., Any], /, *conditions: Condition,
        field: str | None = None,
        chunk_size: int = 500, data: dict[str, Any] | None = None, **equals: Any,
    ) -> TransitionReport:  # fmt: skip
        """Store.transition_many, awaitable (sync guards and actions only)."""
        many = functools.partial(
            self.sync.transition_many, field=field, chunk_size=chunk_size, data=data, **equals
        )
        return await run(self._workers, many, cls, event, *conditions)

    async def history(self, target: Entity | type[Entity], id: str | None = None) -> list[Any]:
        return await run(self._workers, self.sync.history, target, id)


_FIRST_LOOK = 0.0005  # enqueue_wait: seconds before it looks for room again,
_LAST_LOOK = 0.02  # doubling up to this


def _blocks(store: Store, blocks: int | None) -> int:
    """The blocks= default: 64; on a backend with a connection pool, one
    fewer than its size (a connection is left for the reads of tasks that
    a block awaits, so none of them waits for ever)."""
    if blocks is not None:
        return blocks
    pool = getattr(store.backend, "pool_max", None)
    if isinstance(pool, int) and pool > 0:
        return max(1, pool - 1)
    return BLOCKS


def _watched(entities: Iterable[Any], stop: threading.Event) -> Iterable[Any]:
    """save_many's entities, read until stop is set (the caller was cancelled):
    then the chunk being read fails, and an atomic save_many rolls back. A
    list stays a list (save_many holds a list's entities more cheaply)."""
    if isinstance(entities, (list, tuple)):
        return _WatchedList(entities, stop)
    return _each_until(entities, stop)


class _WatchedList(list[Any]):
    def __init__(self, entities: Iterable[Any], stop: threading.Event) -> None:
        super().__init__(entities)
        self.stop = stop

    def __iter__(self) -> Iterator[Any]:
        return _each_until(list.__iter__(self), self.stop)


def _each_until(entities: Iterable[Any], stop: threading.Event) -> Iterator[Any]:
    for entity in entities:
        if stop.is_set():
            raise _CancelledError("save_many was cancelled")
        yield entity


class _CancelledError(StatekeepError):
    """save_many's caller was cancelled: what it had not committed is rolled back."""


async def _chunks(entities: AsyncIterable[Entity], size: int) -> Any:
    chunk: list[Entity] = []
    async for entity in entities:
        if not isinstance(entity, Entity):
            raise ValidationError(f"save_many() takes entities, not {entity!r}")
        chunk.append(entity)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
