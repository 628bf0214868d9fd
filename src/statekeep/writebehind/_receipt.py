"""Receipts: what enqueue() hands back, to tell and to wait.

A receipt is a handle on its entity's pending write (statekeep.writebehind
._write.Write) and the sequence number of its enqueue: nothing of its own
lives until the write is stored, and waits share the engine's condition."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from .._numbers import timeout as check_timeout
from ..errors import DeadlockError, StatekeepError, StoreClosedError

if TYPE_CHECKING:
    from ._write import Write


class Waits:
    """Who may not wait for an engine to store: its own threads (an event
    handler or on_event callback of a write-behind write), and a caller
    inside a transaction of its store (`in_transaction`, set by the store),
    which holds what the engine's batch would wait for."""

    __slots__ = ("changed", "in_transaction", "threads")

    def __init__(self, changed: threading.Condition) -> None:
        self.changed = changed  # the engine's condition: receipts wait on it
        self.threads: list[threading.Thread] = []
        self.in_transaction: Callable[[], bool] | None = None

    def check(self, what: str, *, transaction: bool = True) -> None:
        """DeadlockError if that wait could never end (transaction=False: a
        caller's open transaction does not stop it)."""
        if threading.current_thread() in self.threads:
            raise DeadlockError(
                f"{what} on the write-behind thread (in an event handler or on_event "
                "callback of a write-behind write) would wait for that thread itself: "
                "read receipt.stored / receipt.durable instead, or wait in another thread"
            )
        if transaction and self.in_transaction is not None and self.in_transaction():
            raise DeadlockError(
                f"{what} inside a transaction would wait for a batch that waits for "
                "this transaction's locks: wait after the `with store.transaction():` block"
            )


class Receipt:
    """One enqueued write: `durable` once it would survive a crash, `stored`
    once it is in the database (then `version` is its stored version), or
    `error` once it failed for good (dead-lettered, shed, a conflict, or its
    transaction rolled back). `left_pending` says the store closed before it
    was stored: it is then in the journal, stored at the next open
    (`durable`), or lost if the store has no journal (`error` is a
    StoreClosedError)."""

    __slots__ = ("_dropped", "_seq", "_waits", "_write", "callbacks")

    def __init__(self, waits: Waits, write: Write | None = None, seq: int = 0) -> None:
        self._waits = waits  # the engine's condition, and the waits that would be a deadlock
        self._write = write  # None until a transaction it was enqueued in commits
        self._seq = seq
        if write is None:  # (read only while unbound: enqueue is the hot path)
            self._dropped: StatekeepError | None = None  # its transaction rolled back
            # awaits of it while not bound to a write (its transaction open)
            self.callbacks: list[Callable[[], None]] | None = None

    def _target(self) -> Write | None:
        write = self._write
        return None if write is None else write.final()

    @property
    def durable(self) -> bool:
        write = self._target()
        if write is None:
            return False
        return write.version is not None or (write.error is None and write.durable_seq >= self._seq)

    @property
    def stored(self) -> bool:
        write = self._target()
        return write is not None and write.version is not None

    @property
    def version(self) -> int | None:
        write = self._target()
        return None if write is None else write.version

    @property
    def error(self) -> StatekeepError | None:
        write = self._target()
        return self._dropped if write is None else write.error

    @property
    def left_pending(self) -> bool:
        write = self._target()
        return write is not None and write.left

    @property
    def done(self) -> bool:
        write = self._target()
        if write is None:
            return self._dropped is not None
        return write.version is not None or write.error is not None or write.left

    def wait_durable(self, timeout: float | None = None) -> bool:
        """True once durable (or stored); False on timeout. Raises the error if it failed."""
        timeout = check_timeout(timeout)
        if not (self.durable or self.done):
            # the journal makes a bound write durable whatever the database holds
            self._waits.check("receipt.wait_durable()", transaction=self._write is None)
        with self._waits.changed:
            self._waits.changed.wait_for(lambda: self.durable or self.error is not None, timeout)
        self._raise()
        return self.durable

    def wait_stored(self, timeout: float | None = None) -> bool:
        """True once stored; False on timeout. Raises the error if it failed."""
        timeout = check_timeout(timeout)
        if not self.done:
            self._waits.check("receipt.wait_stored()")
        with self._waits.changed:
            self._waits.changed.wait_for(lambda: self.done, timeout)
        self._raise()
        return self.stored

    def _raise(self) -> None:
        error = self.error
        if error is not None:
            raise error

    def __await__(self) -> Generator[Any, None, Receipt]:
        """`await receipt`: until stored (raises the error if it failed)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            loop.call_soon_threadsafe(_settle, future)

        with self._waits.changed:
            write = self._target()
            if self.done:
                future.set_result(None)
            else:
                holder: Any = self if write is None else write
                if holder.callbacks is None:
                    holder.callbacks = []
                holder.callbacks.append(wake)
        yield from future.__await__()
        self._raise()
        if self.left_pending:
            raise StoreClosedError(
                "the store closed before this write was stored; it is in the journal "
                "and is stored when the store is next opened"
            )
        return self

    # -- for the engine, which holds the condition ---------------------------
    def _bind(self, write: Write, seq: int) -> None:
        """Its transaction committed: the write is enqueued now."""
        self._write, self._seq = write, seq
        waiting, self.callbacks = self.callbacks, None
        if waiting:
            if write.callbacks is None:
                write.callbacks = []
            write.callbacks.extend(waiting)

    def _drop(self, error: StatekeepError) -> list[Callable[[], None]]:
        """Its transaction rolled back: the write is not enqueued."""
        self._dropped = error
        waiting, self.callbacks = self.callbacks, None
        return waiting or []

    def __repr__(self) -> str:
        state = (
            "left in the journal"
            if self.left_pending and self.error is None
            else "failed"
            if self.error
            else "stored"
            if self.stored
            else ("durable" if self.durable else "pending")
        )
        return f"<Receipt {state}>"


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
