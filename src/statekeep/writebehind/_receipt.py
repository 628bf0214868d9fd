"""Receipts: what enqueue() hands back, to tell and to wait."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Generator
from typing import Any

from ..errors import DeadlockError, StatekeepError, StoreClosedError


def check_not_own(threads: list[threading.Thread], what: str) -> None:
    """DeadlockError if called on one of these (an engine's own) threads."""
    if threading.current_thread() in threads:
        raise DeadlockError(
            f"{what} on the write-behind thread (in an event handler or on_event "
            "callback of a write-behind write) would wait for that thread itself: "
            "read receipt.stored / receipt.durable instead, or wait in another thread"
        )


class Receipt:
    """One enqueued write: `durable` once it would survive a crash, `stored`
    once it is in the database (then `version` is its stored version), or
    `error` once it failed for good (dead-lettered or shed). `left_pending`
    says the store closed before it was stored: it is then in the journal,
    stored at the next open (`durable`), or lost if the store has no journal
    (`error` is a StoreClosedError).

    Waits share their engine's condition, so a receipt costs no lock of its own.
    """

    __slots__ = (
        "_callbacks",
        "_changed",
        "_threads",
        "durable",
        "error",
        "left_pending",
        "stored",
        "version",
    )

    def __init__(self, changed: threading.Condition, threads: list[threading.Thread]) -> None:
        self._changed = changed
        self._threads = threads  # the engine's: waiting on one of them is a deadlock
        self._callbacks: list[Callable[[], None]] | None = None
        self.durable = False
        self.stored = False
        self.version: int | None = None
        self.error: StatekeepError | None = None
        self.left_pending = False

    @property
    def done(self) -> bool:
        return self.stored or self.error is not None or self.left_pending

    def wait_durable(self, timeout: float | None = None) -> bool:
        """True once durable (or stored); False on timeout. Raises the error if it failed."""
        if not (self.durable or self.done):
            check_not_own(self._threads, "receipt.wait_durable()")
        with self._changed:
            self._changed.wait_for(lambda: self.durable or self.error is not None, timeout)
        self._raise()
        return self.durable

    def wait_stored(self, timeout: float | None = None) -> bool:
        """True once stored; False on timeout. Raises the error if it failed."""
        if not self.done:
            check_not_own(self._threads, "receipt.wait_stored()")
        with self._changed:
            self._changed.wait_for(lambda: self.done, timeout)
        self._raise()
        return self.stored

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error

    def __await__(self) -> Generator[Any, None, Receipt]:
        """`await receipt`: until stored (raises the error if it failed)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            loop.call_soon_threadsafe(_settle, future)

        with self._changed:
            if not self.done:
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(wake)
            else:
                future.set_result(None)
        yield from future.__await__()
        self._raise()
        if self.left_pending:
            raise StoreClosedError(
                "the store closed before this write was stored; it is in the journal "
                "and is stored when the store is next opened"
            )
        return self

    # -- for the engine, which holds the condition ---------------------------
    def _leave(self, key: tuple[str, str]) -> list[Callable[[], None]]:
        """close() did not store it: left in the journal, or lost without one."""
        self.left_pending = True
        if not self.durable:
            self.error = StoreClosedError(
                f"{key[0]} {key[1]!r}: the store closed before this write was stored, "
                "and no journal holds it: it is lost"
            )
        return self._settle()

    def _settle(self) -> list[Callable[[], None]]:
        callbacks, self._callbacks = self._callbacks or [], None
        return callbacks

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
