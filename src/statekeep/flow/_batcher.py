"""Batcher: items one at a time in, batches out.

`batcher.add(item)` returns a Handle at once; a batch goes to
`process(items)` when `max_size` items wait or when the oldest has waited
`max_delay` seconds (or at flush() / close()). `process` says how each item
went: it returns None (all done, each result None), a list with one outcome
per item (an Exception instance is that item's failure, anything else its
result), or raises (every item failed with that error). A failed item is
tried again in a later batch when `retry` (a statekeep.flow.Retry) says so,
after its backoff; only the failed items go again. Its handle then gives the
result or the last error.

At most `max_pending` items wait or are in flight; beyond that `policy` says
what add() does: "block" (wait for room, up to its timeout, then
QueueFullError), "raise" (QueueFullError at once) or "shed_oldest" (the
oldest waiting item is dropped, its handle failing with QueueFullError).
`concurrency` batches are processed at once. A batch that fills up is
processed by the add() that filled it (caller_runs=True, the default of the
sync Batcher: one thread does the work, where two would only hand the GIL to
each other: store.batcher reaches 0.81-0.85x save_many so, 0.58-0.77x with
its worker thread saving); a batch due to its age, a flush or a retry, on
the batcher's own thread. caller_runs=False: add() never processes.

AsyncBatcher is its twin for asyncio: `await add(item)`, `await flush()`,
`await close()`; its process may be a coroutine function (run on the loop
of the first add) or a plain one (run on the batcher's threads, off the loop:
a blocking database write, say).
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import inspect
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic, Literal, TypeVar

from .._numbers import LONGEST
from .._numbers import timeout as a_timeout
from ..errors import ConfigurationError, FlowClosedError, QueueFullError
from ..metrics import watch_flow
from ._batch_parts import Bar, check, each_outcome
from ._clock import Clock, a_clock, resolve
from ._handle import Handle, _Failure, settle_all
from ._retry import Retry
from ._stats import FlowStats, PerSecond, Timings

T = TypeVar("T")
R = TypeVar("R")
PolicyName = Literal["block", "raise", "shed_oldest"]
_log = logging.getLogger("statekeep.flow")


class _Item(Handle[Any]):
    """An item waiting or in flight, and the Handle its adder holds (one
    object: a batcher makes one per item)."""

    __slots__ = ("added", "attempt", "value")

    def __init__(self, value: Any, added: float) -> None:
        self._state, self._value, self._waiters = 0, None, None  # Handle's, inline: hot
        self.value = value
        self.added = added
        self.attempt = 1


class _Batching(Generic[T, R]):
    """The core both twins share: the waiting items, when a batch is due,
    the worker threads, and what an outcome does to each item."""

    def __init__(
        self,
        process: Callable[[list[T]], Any],
        max_size: int,
        max_delay: float,
        max_pending: int,
        policy: PolicyName,
        retry: Retry | None,
        concurrency: int,
        on_progress: Callable[[int], object] | None,
        name: str | None,
        clock: Clock | None,
    ) -> None:
        check(process, max_size, max_delay, max_pending, policy, retry, concurrency, on_progress)
        if name is not None and not isinstance(name, str):
            raise ConfigurationError(f"name must be a str, not {name!r}")
        self.process, self.max_size, self.max_delay = process, max_size, float(max_delay)
        self.max_pending, self.policy, self.retry = max_pending, policy, retry
        self.concurrency = concurrency
        self.name: str = name or str(getattr(process, "__qualname__", "batcher"))
        self._on_progress = on_progress
        self._clock = a_clock(clock)
        self._now = time.monotonic if type(self._clock) is Clock else self._clock.now
        self._lock = threading.Lock()  # entered directly on the hot path
        self._cond = threading.Condition(self._lock)
        self._pending: collections.deque[_Item] = collections.deque()
        self._later: list[tuple[float, int, _Item]] = []  # failed items, by their retry moment
        self._order = itertools.count()
        self._held = 0  # items in batches being processed
        self._running = 0  # batches being processed (at most concurrency)
        self._size = 0  # items waiting, waiting for a retry, or in flight
        self._added = self._succeeded = 0  # the hot counters, apart from the others
        self._flushing = 0
        self._closed = False
        self._threads: list[threading.Thread] = []
        self._shed: list[_Item] = []  # shed under the lock, their handles failed after it
        self._inside = threading.local()  # .processing: this thread runs process now
        self._counts = {
            "failed": 0,
            "retried": 0,
            "shed": 0,
            "batches": 0,
        }
        self._process_time = Timings()
        self._per_second = PerSecond()  # items settled
        self._batch_wait = Timings()
        watch_flow(self)  # the process-wide metrics registry reads its stats()

    # -- with the condition held -------------------------------------------------
    def _enter(self, value: T) -> _Item | None:
        """Adds the item if there is room (shedding the oldest if that is the
        policy); None if the caller must wait or be refused."""
        if self._closed:
            raise FlowClosedError(f"{self.name}: this batcher is closed")
        if self._size >= self.max_pending:
            if self.policy != "shed_oldest" or not self._pending:
                return None
            shed = self._pending.popleft()
            self._size -= 1
            self._counts["shed"] += 1
            self._shed.append(shed)  # failed by the caller once the lock is let go
        item = _Item(value, self._now())
        pending = self._pending
        pending.append(item)
        self._size += 1
        self._added += 1
        if len(pending) == 1 or len(pending) == self.max_size:
            self._cond.notify()  # a worker arms max_delay, or takes a full batch
        if not self._threads:
            self._start()
        return item

    def _refuse(self, timeout: float | None) -> QueueFullError:
        waited = "" if timeout is None or self.policy == "raise" else f" for {timeout:g} s"
        return QueueFullError(
            f"{self.name}: {self.max_pending} items pending (policy {self.policy}){waited}"
        )

    def _due(self, now: float) -> float | None:
        """When the next batch is due (None: nothing to do until an add)."""
        later = self._later
        while later and later[0][0] <= now:  # retries whose backoff ended go first
            self._pending.appendleft(heapq.heappop(later)[2])
        pending = self._pending
        due = None
        if pending:
            if len(pending) >= self.max_size or self._flushing or self._closed:
                return now
            due = pending[0].added + self.max_delay
        if later and (due is None or later[0][0] < due):
            due = later[0][0]
        return due

    def _take(self, now: float) -> list[_Item] | None:
        if self._running >= self.concurrency:
            return None
        due = self._due(now)
        if due is None or due > now or not self._pending:
            return None
        self._running += 1
        pending = self._pending
        size = min(self.max_size, len(pending))
        batch = [pending.popleft() for _ in range(size)]
        self._held += size
        self._counts["batches"] += 1
        self._batch_wait.record(now - batch[0].added)
        return batch

    def _idle(self) -> bool:
        return not self._size

    # -- the worker threads --------------------------------------------------------
    def _start(self) -> None:
        for n in range(self.concurrency):
            thread = threading.Thread(
                target=self._work, name=f"statekeep-batcher {self.name} {n}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _work(self) -> None:
        cond, clock = self._cond, self._clock
        while True:
            with cond:
                while True:
                    now = clock.now()
                    batch = self._take(now)
                    if batch is not None:
                        break
                    if self._closed and self._idle():
                        return
                    busy = self._running >= self.concurrency  # a settle wakes it
                    clock.wait(cond, None if busy else self._due(now))
            self._process(batch)

    def _process(self, batch: list[_Item]) -> None:
        """Runs process on batch and settles it, whatever process raises: a
        BaseException (KeyboardInterrupt, SystemExit) fails the batch's items
        too, then goes on in the caller's thread (caller_runs) and is logged
        on the batcher's own."""
        began = self._now()
        self._inside.processing = True
        try:
            outcome = self._run([item.value for item in batch])
        except BaseException as exc:
            self._settle(batch, _Failure(exc), began)
            if threading.current_thread() not in self._threads:
                raise
            _log.error(
                "statekeep.flow: %s: process raised %r",
                self.name,
                exc,
                extra={
                    "statekeep": {
                        "event": "flow.process_raised",
                        "kind": "batcher",
                        "flow": self.name,
                        "items": len(batch),
                        "error_type": type(exc).__name__,
                        "error": str(exc),
                    }
                },
            )
            return
        finally:
            self._inside.processing = False
        self._settle(batch, outcome, began)

    def _run(self, values: list[T]) -> Any:
        """process(values): its return value, or a _Failure of what it raised."""
        try:
            return self.process(values)
        except Exception as exc:  # noqa: BLE001 - each item's failure, retried or reported
            return _Failure(exc)

    def _settle(self, batch: list[_Item], outcome: Any, began: float) -> None:
        now = self._now()
        self._process_time.record(now - began)
        outcomes = each_outcome(outcome, len(batch), self.name)
        if any(type(result) is _Failure for result in outcomes):
            done: list[_Item] = []
            results: list[Any] = []
            again: list[tuple[float, _Item]] = []
            for item, result in zip(batch, outcomes, strict=True):
                moment = self._again(item, result.error, now) if type(result) is _Failure else None
                if moment is not None:
                    again.append((moment, item))
                else:
                    done.append(item)
                    results.append(result)
            with self._cond:
                for moment, item in again:
                    heapq.heappush(self._later, (moment, next(self._order), item))
                self._counts["retried"] += len(again)
            failed = sum(1 for result in results if type(result) is _Failure)
        else:  # the usual case: every item done
            done, results, failed = batch, outcomes, 0
        with self._cond:
            self._running -= 1
            self._held -= len(batch)
            self._size -= len(done)
            self._succeeded += len(done) - failed
            self._per_second.count(now, len(done))
            self._counts["failed"] += failed
            settled = self._succeeded + self._counts["failed"]
            self._cond.notify_all()  # room for blocked adders; flush and close waiters
        settle_all(done, results)
        self._room_freed()
        if self._on_progress is not None:
            try:
                self._on_progress(settled)
            except Exception as exc:  # noqa: BLE001 - a broken callback must not stop the batcher
                _log.exception(
                    "statekeep.flow: %s: on_progress raised",
                    self.name,
                    extra={
                        "statekeep": {
                            "event": "flow.on_progress_failed",
                            "kind": "batcher",
                            "flow": self.name,
                            "settled": settled,
                            "error_type": type(exc).__name__,
                            "error": str(exc),
                        }
                    },
                )

    def _again(self, item: _Item, error: BaseException, now: float) -> float | None:
        """Outside the lock (the retry's when / on_retry are the caller's
        code): the moment a failed item goes again, or None (it fails)."""
        if self.retry is None:
            return None
        try:
            moment = self.retry._next_wait(error, item.attempt, item.added, now)
        except Exception as exc:  # noqa: BLE001 - a broken predicate fails the item, logged
            _log.exception(
                "statekeep.flow: %s: the retry policy raised",
                self.name,
                extra={
                    "statekeep": {
                        "event": "flow.retry_policy_failed",
                        "kind": "batcher",
                        "flow": self.name,
                        "attempt": item.attempt,
                        "error_type": type(exc).__name__,
                        "error": str(exc),
                    }
                },
            )
            return None
        if moment is not None:
            item.attempt += 1
        return moment

    def _fail_shed(self) -> None:
        """The items shed_oldest dropped: failed once the lock is let go."""
        with self._cond:
            shed, self._shed = self._shed, []
        for item in shed:
            item._fail(QueueFullError(f"{self.name}: shed to make room (shed_oldest)"))

    def _room_freed(self) -> None:
        """Room for waiting adders (the async twin wakes its own)."""

    def _ask_flush(self) -> None:
        with self._cond:
            self._flushing += 1
            self._cond.notify_all()

    def _flushed(self, timeout: float | None) -> bool:
        """Waits until nothing is pending or in flight (from inside process,
        which would wait for its own batch: it does not wait, False)."""
        cond = self._cond
        if getattr(self._inside, "processing", False):
            with cond:
                self._flushing -= 1
            return False
        with cond:
            try:
                return cond.wait_for(self._idle, LONGEST if timeout is None else timeout)
            finally:
                self._flushing -= 1

    def _close_threads(self, deadline: float | None) -> bool:
        """Stops the threads (once what is pending is done); False if they
        have not ended by deadline (time.monotonic), or this is one of them."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            threads = list(self._threads)
        ended = True
        for thread in threads:
            if thread is threading.current_thread():
                ended = False
                continue
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            ended = ended and not thread.is_alive()
        return ended

    # -- figures -------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Items waiting or in flight."""
        with self._cond:
            return self._size

    def stats(self) -> FlowStats:
        with self._cond:
            counts = {"added": self._added, "succeeded": self._succeeded, **self._counts}
            gauges = {
                "pending": float(len(self._pending) + len(self._later)),
                "in_flight": float(self._held),
                "settled_per_s": self._per_second.rate(self._now()),
            }
        timings = {
            "process": self._process_time.summary(),
            "batch_wait": self._batch_wait.summary(),
        }
        return FlowStats("batcher", self.name, counts, gauges, timings)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}: max_size={self.max_size}>"


class Batcher(_Batching[T, R]):
    """`batcher = Batcher(process, max_size=500, max_delay=0.1)`;
    `handle = batcher.add(item)`; `handle.result()`."""

    def __init__(
        self,
        process: Callable[[list[T]], Sequence[R | BaseException] | None],
        max_size: int = 500,
        max_delay: float = 0.1,
        max_pending: int = 10_000,
        *,
        policy: PolicyName = "block",
        retry: Retry | None = None,
        concurrency: int = 1,
        on_progress: Callable[[int], object] | None = None,
        caller_runs: bool = True,
        name: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        if inspect.iscoroutinefunction(process):
            raise ConfigurationError(
                f"Batcher takes a plain function; use AsyncBatcher for {process!r}"
            )
        if not isinstance(caller_runs, bool):
            raise ConfigurationError(f"caller_runs must be True or False, not {caller_runs!r}")
        self.caller_runs = caller_runs
        super().__init__(
            process,
            max_size,
            max_delay,
            max_pending,
            policy,
            retry,
            concurrency,
            on_progress,
            name,
            clock,
        )

    def add(self, item: T, timeout: float | None = None) -> Handle[R]:
        """Queues item; its Handle gives process's outcome for it. With
        max_pending reached: see policy (timeout: how long "block" waits).
        With caller_runs=True, the add that fills a batch processes it."""
        if timeout is not None:
            timeout = a_timeout(timeout)
        with self._lock:  # the fast path: room, and the batcher open
            if self._size < self.max_pending and not self._closed and self._threads:
                entered = _Item(item, self._now())
                pending = self._pending
                pending.append(entered)
                self._size += 1
                self._added += 1
                n = len(pending)
                batch = None
                if n >= self.max_size and self.caller_runs:
                    batch = self._take(entered.added)  # None: the batches at once are running
                if batch is None:
                    if n == 1 or n == self.max_size:
                        self._cond.notify()  # a worker arms max_delay, or takes the batch
                    return entered
            else:
                batch = None
        if batch is not None:  # caller_runs: this thread processes the batch it filled
            self._process(batch)
            return entered
        try:
            with self._lock:
                added = self._enter(item)
                if added is not None:
                    return added
                if self.policy != "block":
                    raise self._refuse(None)
                room = self._cond.wait_for(
                    lambda: self._closed or self._size < self.max_pending,
                    LONGEST if timeout is None else timeout,
                )
                added = self._enter(item) if room else None
                if added is None:
                    raise self._refuse(timeout)
                return added
        finally:
            if self._shed:
                self._fail_shed()

    def add_many(self, items: Iterable[T], timeout: float | None = None) -> list[Handle[R]]:
        """add() of each item, in order."""
        return [self.add(item, timeout) for item in items]

    def flush(self, timeout: float | None = None) -> bool:
        """Sends what is pending now and waits until every item is settled
        (retries included); False if timeout passed first."""
        timeout = a_timeout(timeout)
        self._ask_flush()
        return self._flushed(timeout)

    def close(self, timeout: float | None = None) -> bool:
        """flush(), then stops the threads; add() after it raises FlowClosedError.
        False if that did not all end within timeout (or close was called by
        process itself: the rest then ends in the background)."""
        timeout = a_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        flushed = self.flush(timeout)
        ended = self._close_threads(deadline)
        return flushed and ended

    def __enter__(self) -> Batcher[T, R]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @classmethod
    def map(
        cls,
        process: Callable[[list[T]], Sequence[R | BaseException] | None],
        items: Iterable[T],
        *,
        max_size: int = 500,
        max_delay: float = 0.1,
        retry: Retry | None = None,
        concurrency: int = 1,
        progress: bool | str = False,
    ) -> list[R]:
        """process over items in batches: each item's result, in order (the
        first failure raises). progress: a rich progress bar (True, or its
        label) while it runs."""
        if not isinstance(items, Iterable) or isinstance(items, (str, bytes)):
            raise ConfigurationError(f"map() takes an iterable of items, not {items!r}")
        total = len(items) if isinstance(items, Sequence) else None
        bar = Bar(progress, total) if progress else None
        batcher: Batcher[T, R] = cls(
            process,
            max_size,
            max_delay,
            max(max_size * 4, 1000),
            retry=retry,
            concurrency=concurrency,
            on_progress=bar.update if bar is not None else None,
        )
        try:
            handles = batcher.add_many(items)
            batcher.flush()
            return [handle.result() for handle in handles]
        finally:
            batcher.close()
            if bar is not None:
                bar.stop()


class AsyncBatcher(_Batching[T, R]):
    """Batcher for asyncio: `handle = await batcher.add(item)`, `await handle`."""

    def __init__(
        self,
        process: Callable[[list[T]], Any],
        max_size: int = 500,
        max_delay: float = 0.1,
        max_pending: int = 10_000,
        *,
        policy: PolicyName = "block",
        retry: Retry | None = None,
        concurrency: int = 1,
        on_progress: Callable[[int], object] | None = None,
        name: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(
            process,
            max_size,
            max_delay,
            max_pending,
            policy,
            retry,
            concurrency,
            on_progress,
            name,
            clock,
        )
        self._coroutine = inspect.iscoroutinefunction(process)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._room_waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def _run(self, values: list[T]) -> Any:
        if not self._coroutine:
            return super()._run(values)
        loop = self._loop
        if loop is None or loop.is_closed():
            return _Failure(FlowClosedError(f"{self.name}: the event loop of its adds is gone"))
        try:
            return asyncio.run_coroutine_threadsafe(self.process(values), loop).result()
        except Exception as exc:  # noqa: BLE001 - each item's failure, retried or reported
            return _Failure(exc)

    def _room_freed(self) -> None:
        with self._cond:
            waiters, self._room_waiters = self._room_waiters, collections.deque()
        for waiter in waiters:
            loop = waiter.get_loop()
            if not loop.is_closed():
                loop.call_soon_threadsafe(resolve, waiter)

    async def add(self, item: T, timeout: float | None = None) -> Handle[R]:
        """Queues item (waiting for room under policy "block", without
        blocking the loop); `await handle` gives its outcome."""
        loop = asyncio.get_running_loop()
        if self._loop is None or self._loop.is_closed():
            self._loop = loop
        timeout = a_timeout(timeout)
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            with self._cond:
                entered = self._enter(item)
                if entered is None and self.policy == "block":
                    waiter: asyncio.Future[None] = loop.create_future()
                    self._room_waiters.append(waiter)
            if self._shed:
                self._fail_shed()
            if entered is not None:
                return entered
            if self.policy != "block":
                raise self._refuse(None)
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                raise self._refuse(timeout)
            try:
                async with asyncio.timeout(left):
                    await waiter
            except TimeoutError:
                raise self._refuse(timeout) from None

    async def add_many(self, items: Iterable[T], timeout: float | None = None) -> list[Handle[R]]:
        return [await self.add(item, timeout) for item in items]

    async def flush(self, timeout: float | None = None) -> bool:
        """Sends what is pending and waits (off the loop) until all is settled."""
        timeout = a_timeout(timeout)
        self._ask_flush()
        return await asyncio.to_thread(self._flushed, timeout)

    async def close(self, timeout: float | None = None) -> bool:
        timeout = a_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        flushed = await self.flush(timeout)
        ended = await asyncio.to_thread(self._close_threads, deadline)
        return flushed and ended

    async def __aenter__(self) -> AsyncBatcher[T, R]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
