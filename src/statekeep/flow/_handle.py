"""Handle: the outcome of work a flow part does later (a debounced call's
invocation, a batched item's processing), for threads and asyncio alike.

`handle.result(timeout)` waits in a thread; `await handle` waits on any event
loop; `done()`, `cancelled()`, `exception()`, `add_done_callback(fn)`. Many
calls can share one handle (calls folded into one invocation).

A handle is cheap (a batcher makes one per item): four slots, and what a
waiter needs (an Event, an asyncio future) only once someone waits. One
process-wide lock guards every handle's settling; it is held for a few
instructions at a time, and a batch's handles settle under one take of it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable, Generator, Iterable
from typing import Any, Generic, TypeVar

from .._numbers import LONGEST
from .._numbers import timeout as a_timeout
from ..errors import ConfigurationError
from ._clock import resolve

T = TypeVar("T")

_LOCK = threading.Lock()
_log = logging.getLogger("statekeep.flow")
_PENDING, _DONE, _FAILED, _CANCELLED = 0, 1, 2, 3


class Handle(Generic[T]):
    """The result (or error) of work that ends later."""

    __slots__ = ("_state", "_value", "_waiters")

    def __init__(self) -> None:
        self._state = _PENDING
        self._value: Any = None
        self._waiters: list[Callable[[], None]] | None = None

    # -- waiting ---------------------------------------------------------------
    def result(self, timeout: float | None = None) -> T:
        """Waits up to timeout seconds (None: for ever); raises the work's
        error, TimeoutError, or concurrent.futures.CancelledError."""
        self._wait(a_timeout(timeout))
        return self._outcome()

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._wait(a_timeout(timeout))
        if self._state == _CANCELLED:
            raise concurrent.futures.CancelledError
        return self._value if self._state == _FAILED else None

    def _wait(self, timeout: float | None) -> None:
        if self._state != _PENDING:
            return
        event = threading.Event()
        if not self._on_settle(event.set):
            return
        if not event.wait(LONGEST if timeout is None else timeout):
            raise TimeoutError(f"the work did not end within {timeout:g} s")

    def _outcome(self) -> T:
        state = self._state
        if state == _DONE:
            return self._value  # type: ignore[no-any-return]
        if state == _FAILED:
            raise self._value
        raise concurrent.futures.CancelledError

    def __await__(self) -> Generator[Any, None, T]:
        if self._state == _PENDING:
            loop = asyncio.get_running_loop()
            future: asyncio.Future[None] = loop.create_future()

            def wake() -> None:
                if not loop.is_closed():
                    loop.call_soon_threadsafe(resolve, future)

            if self._on_settle(wake):
                yield from future.__await__()
        if self._state == _CANCELLED:
            raise asyncio.CancelledError
        return self._outcome()

    def done(self) -> bool:
        return self._state != _PENDING

    def cancelled(self) -> bool:
        return self._state == _CANCELLED

    def add_done_callback(self, fn: Callable[[Handle[T]], object]) -> None:
        """fn(handle) once it is done (at once if it is)."""
        if not callable(fn):
            raise ConfigurationError(f"add_done_callback() takes a callable, not {fn!r}")

        def call() -> None:
            fn(self)

        if not self._on_settle(call):
            call()

    def _on_settle(self, wake: Callable[[], None]) -> bool:
        """Registers wake; False if already settled (wake not registered)."""
        with _LOCK:
            if self._state != _PENDING:
                return False
            if self._waiters is None:
                self._waiters = []
            self._waiters.append(wake)
            return True

    # -- the part's side ---------------------------------------------------------
    def _settle(self, state: int, value: Any) -> None:
        with _LOCK:
            if self._state != _PENDING:
                return
            self._state, self._value = state, value
            waiters, self._waiters = self._waiters, None
        if waiters:
            _wake_all(waiters)

    def _set(self, value: T) -> None:
        self._settle(_DONE, value)

    def _fail(self, error: BaseException) -> None:
        self._settle(_FAILED, error)

    def _cancel(self) -> None:
        self._settle(_CANCELLED, None)

    def __repr__(self) -> str:
        names = {_PENDING: "pending", _DONE: "done", _FAILED: "failed", _CANCELLED: "cancelled"}
        return f"<Handle {names[self._state]}>"


def settle_all(handles: Iterable[Handle[Any]], values: Iterable[Any]) -> None:
    """Sets many handles' results under one take of the lock (a batch's)."""
    woken: list[Callable[[], None]] = []
    with _LOCK:
        for handle, value in zip(handles, values, strict=True):
            if handle._state != _PENDING:
                continue
            if isinstance(value, _Failure):
                handle._state, handle._value = _FAILED, value.error
            else:
                handle._state, handle._value = _DONE, value
            if handle._waiters:
                woken.extend(handle._waiters)
            handle._waiters = None
    _wake_all(woken)


def _wake_all(waiters: list[Callable[[], None]]) -> None:
    """Wakes each waiter; a done callback that raises is logged, and the
    others are still woken."""
    for wake in waiters:
        try:
            wake()
        except Exception as exc:  # noqa: BLE001 - logged; the other waiters still wake
            _log.exception(
                "statekeep.flow: a Handle's done callback raised",
                extra={
                    "statekeep": {
                        "event": "flow.done_callback_failed",
                        "error_type": type(exc).__name__,
                        "error": str(exc),
                    }
                },
            )


class _Failure:
    """A failed item's outcome in settle_all."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error
