"""The threads an AsyncStore runs blocking calls on, and the hop to them.

Each worker is one thread (a single-worker ThreadPoolExecutor). A call
outside a transaction borrows an idle worker for its length; a transaction
block, or a find being paged, keeps one for its whole length, so that every
call of it runs on one thread (backends hold a transaction per thread) and in
one contextvars.Context (the sync core keeps its transaction frames there).
Three pools: single calls share `threads` workers; transaction blocks take
one of at most `blocks` at once (a turn waited for on the loop, no thread
held meanwhile); find iterations and flushes take one of a pool with no
limit. So a task started inside a block, a find inside a find, or a flush
inside a block, never waits for a thread that the block or the find keeps.

A call that has started cannot be stopped: when the awaiting task is
cancelled, call() waits for the call to end before it raises CancelledError,
so that what the caller sees afterwards (an entity's version, a rolled-back
block) is what the call did. A call not yet started is not run, except by
call_to_end(), for what must run whatever happens (a block's end).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextvars
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from .. import _fork
from ..errors import ConfigurationError, StoreClosedError

T = TypeVar("T")

Worker = concurrent.futures.ThreadPoolExecutor


async def call(
    worker: Worker,
    fn: Callable[..., T],
    *args: Any,
    on_cancel: Callable[[], None] | None = None,
) -> T:
    """fn(*args) on worker's thread. A cancelled caller calls on_cancel (a
    call may stop early when told) and waits for the call's end."""
    future = submit(worker, fn, *args)
    try:
        return await asyncio.wrap_future(future)
    except asyncio.CancelledError:
        if on_cancel is not None:
            on_cancel()
        await _until_done(future)
        raise


def submit(worker: Worker, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
    """fn(*args) handed to worker's thread; StoreClosedError once it was shut down."""
    try:
        return worker.submit(fn, *args)
    except RuntimeError as exc:  # its thread was shut down: the store has closed
        raise StoreClosedError("the store is closed") from exc


async def call_to_end(
    worker: Worker,
    fn: Callable[..., T],
    *args: Any,
    on_cancel: Callable[[], None] | None = None,
) -> T:
    """fn(*args) on worker's thread, run and waited for even if the caller is
    cancelled before it starts (a block's end, a cursor's close: left undone,
    they would leave a transaction open on the thread); CancelledError after."""
    future = submit(worker, fn, *args)
    try:  # shielded: a cancelled caller does not cancel the call before it starts
        return await asyncio.shield(asyncio.wrap_future(future))
    except asyncio.CancelledError:
        if on_cancel is not None:
            on_cancel()
        await _until_done(future)
        raise


async def _until_done(future: concurrent.futures.Future[Any]) -> None:
    """Waits for a call that has started (cancelled again meanwhile: still waits).

    One waiter for all the tries: anyio cancels a task in a cancelled scope
    again at every await, and a waiter a try (each a callback on the
    thread's future) piled up millions of callbacks for the thread to run
    when it finished, gigabytes of them, while the loop spun."""
    waiter = asyncio.wrap_future(future)
    while not waiter.done():
        try:
            await asyncio.shield(waiter)
        except asyncio.CancelledError:
            continue
        except BaseException:  # noqa: BLE001 - its own error: the caller raises CancelledError
            return
    if not waiter.cancelled():
        waiter.exception()  # retrieved: no "exception was never retrieved" at exit


class Workers:
    """A store's worker threads: at most `limit` busy at once (None: no
    limit; further callers wait, on whichever event loop they run), at most
    `keep` idle ones kept."""

    def __init__(self, limit: int | None, name: str, keep: int | None = None) -> None:
        self.limit = limit
        self.keep = keep if keep is not None else (limit or 8)
        self._name = name
        self._idle: list[Worker] = []
        self._all: set[Worker] = set()
        self._busy = 0
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        self._lock = threading.Lock()
        self.closed = False
        _fork.track(self)

    def _after_fork(self) -> None:
        """In a forked child (statekeep._fork): the workers' threads are the
        parent's, gone here; new ones start at the next call."""
        self._lock = threading.Lock()
        self._idle, self._all, self._busy = [], set(), 0
        self._waiting = collections.deque()

    async def take(self) -> Worker:
        """An idle worker (a new one if none is idle), waiting while `limit` are busy."""
        while True:
            with self._lock:
                if self.closed:
                    raise StoreClosedError("the store is closed")
                if self.limit is None or self._busy < self.limit:
                    self._busy += 1
                    if self._idle:
                        return self._idle.pop()
                    worker = Worker(1, thread_name_prefix=self._name)
                    self._all.add(worker)
                    return worker
                turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._waiting.append(turn)
            try:
                await turn
            except asyncio.CancelledError:
                self._wake_next()  # the turn it may have been given goes to the next
                raise

    def give(self, worker: Worker) -> None:
        """Back to the idle ones (or shut down: the store closed, or enough are idle)."""
        with self._lock:
            self._busy -= 1
            if self.closed or len(self._idle) >= self.keep:
                self._all.discard(worker)
                worker.shutdown(wait=False)
            else:
                self._idle.append(worker)
        self._wake_next()

    def _wake_next(self) -> None:
        """Gives the free place's turn to the first waiter whose loop runs;
        waiters on loops that are not running now are woken too (each takes
        again when its loop runs, and waits again if it finds no place)."""
        with self._lock:
            if self.limit is not None and self._busy >= self.limit:
                return
            while self._waiting:
                turn = self._waiting.popleft()
                loop = turn.get_loop()
                if turn.done() or loop.is_closed():
                    continue
                loop.call_soon_threadsafe(_give_turn, turn)
                if loop.is_running():
                    return

    async def run(
        self,
        fn: Callable[..., T],
        *args: Any,
        on_cancel: Callable[[], None] | None = None,
        detach: bool = False,
    ) -> T:
        """fn(*args) on an idle worker, in a copy of the caller's context.
        detach=True: a cancelled caller does not wait for the call's end (for
        calls that only wait: a flush); the worker comes back when it ends."""
        worker = await self.take()
        try:
            future: concurrent.futures.Future[T] = submit(
                worker, contextvars.copy_context().run, fn, *args
            )
        except StoreClosedError:
            self.give(worker)
            raise
        try:
            result = await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            if on_cancel is not None:
                on_cancel()
            if detach:
                future.add_done_callback(lambda _: self.give(worker))
                raise
            await _until_done(future)
            self.give(worker)
            raise
        except BaseException:
            self.give(worker)
            raise
        self.give(worker)
        return result

    def close(self) -> None:
        """Stops the threads once what they are running ends; nothing new is taken."""
        with self._lock:
            self.closed = True
            workers, self._all, self._idle = self._all, set(), []
            waiting, self._waiting = list(self._waiting), collections.deque()
        for worker in workers:
            worker.shutdown(wait=False)
        for turn in waiting:  # they find the store closed
            if not turn.get_loop().is_closed():
                turn.get_loop().call_soon_threadsafe(_give_turn, turn)


def check_limit(value: Any, option: str, *, none: bool = False) -> None:
    """threads= / blocks=: a whole number >= 1 (or None where allowed)."""
    if value is None and none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        also = " or None" if none else ""
        raise ConfigurationError(
            f"{option} must be a whole number of at least 1{also}, not {value!r}"
        )


def _give_turn(turn: asyncio.Future[None]) -> None:
    if not turn.done():
        turn.set_result(None)
