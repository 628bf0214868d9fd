"""The transaction block of an asyncio task: one worker thread and one
contextvars.Context for the block's whole length.

`async with store.transaction():` belongs to the task that opened it. Its
calls run on its worker, in its context, where the sync core's transaction
(statekeep._transaction) lives; nested blocks are savepoints there. Another
task, even one started inside the block (it inherits the task's context and
so sees the block), runs its calls elsewhere, outside the transaction: it
neither joins it nor sees what it has not committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Callable
from contextvars import ContextVar, Token
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import ConfigurationError
from ._threads import Worker, Workers, call, call_to_end

if TYPE_CHECKING:
    from .._transaction import Transaction

T = TypeVar("T")


class Block:
    """A task's open outermost block: its worker, its context, its depth."""

    __slots__ = ("context", "depth", "task", "worker")

    def __init__(self, task: object, worker: Worker) -> None:
        self.task = task
        self.worker = worker
        self.context = contextvars.copy_context()
        self.depth = 0

    async def run(
        self, fn: Callable[..., T], *args: Any, on_cancel: Callable[[], None] | None = None
    ) -> T:
        return await call(self.worker, self.context.run, fn, *args, on_cancel=on_cancel)

    async def run_to_end(
        self, fn: Callable[..., T], *args: Any, on_cancel: Callable[[], None] | None = None
    ) -> T:
        """fn(*args) in the block, run even if the caller is cancelled first."""
        return await call_to_end(self.worker, self.context.run, fn, *args, on_cancel=on_cancel)


_current: ContextVar[Block | None] = ContextVar("statekeep_aio_block", default=None)


def own_block() -> Block | None:
    """The calling task's open block, or None (a block of the task that
    started this one is not this task's)."""
    block = _current.get()
    if block is None or block.depth == 0 or block.task is not asyncio.current_task():
        return None
    return block


async def run(
    workers: Workers,
    fn: Callable[..., T],
    *args: Any,
    on_cancel: Callable[[], None] | None = None,
) -> T:
    """fn(*args) in the calling task's block, or on an idle worker outside any."""
    block = own_block()
    if block is not None:
        return await block.run(fn, *args, on_cancel=on_cancel)
    return await workers.run(fn, *args, on_cancel=on_cancel)


class AsyncTransaction:
    """`async with store.transaction():` — commits on success, rolls back on
    an exception (cancellation included); nested blocks are savepoints."""

    def __init__(self, workers: Workers, make: Callable[[], Transaction]) -> None:
        self._workers = workers
        self._make = make
        self._sync: Transaction | None = None
        self._block: Block | None = None
        self._token: Token[Block | None] | None = None

    def on_rollback(self, undo: Callable[[], None]) -> None:
        """Transaction.on_rollback: undo runs if the block (or its outer block) rolls back."""
        if self._sync is None:
            raise ConfigurationError("on_rollback() is for a transaction block that is open")
        self._sync.on_rollback(undo)

    async def __aenter__(self) -> AsyncTransaction:
        if self._sync is not None:
            raise ConfigurationError(
                "this transaction block is already open; call transaction() again"
            )
        sync = self._make()  # StoreClosedError here, before a thread is taken
        block = own_block()
        if block is not None:  # a savepoint of the task's open block
            await _enter(block, sync)
            block.depth += 1
            self._sync, self._block = sync, block
            return self
        block = Block(asyncio.current_task(), await self._workers.take())
        try:
            await _enter(block, sync)
        except BaseException:
            self._workers.give(block.worker)
            raise
        block.depth = 1
        self._sync, self._block, self._token = sync, block, _current.set(block)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        sync, block, token = self._sync, self._block, self._token
        if sync is None or block is None:
            raise ConfigurationError("this transaction block was not entered: use `async with`")
        self._sync = self._block = self._token = None
        cancelled: list[asyncio.CancelledError] = []

        def end() -> None:
            # cancelled before its end began: it rolls back, as if cancelled in the body
            if exc_type is None and cancelled:
                sync.__exit__(asyncio.CancelledError, cancelled[0], None)
            else:
                sync.__exit__(exc_type, exc, tb)

        try:
            await block.run_to_end(
                end, on_cancel=lambda: cancelled.append(asyncio.CancelledError())
            )
        finally:
            block.depth -= 1
            if token is not None:  # the outermost block
                with contextlib.suppress(ValueError):  # ended in another context
                    _current.reset(token)
                self._workers.give(block.worker)


async def _enter(block: Block, sync: Transaction) -> None:
    """Begins the block on its worker. Cancelled meanwhile, the begin may
    still have happened in its thread: then the block is ended (rolled back)
    there before CancelledError goes on, so no transaction is left open."""
    entered = False

    def enter() -> None:
        nonlocal entered
        sync.__enter__()
        entered = True

    try:
        await block.run(enter)
    except asyncio.CancelledError as cancelled:
        if entered:
            await block.run_to_end(sync.__exit__, type(cancelled), cancelled, None)
        raise
