"""Handle: the outcome of work a flow part does later (a debounced call's
invocation, a batched item's processing), for threads and asyncio alike.

`handle.result(timeout)` waits in a thread; `await handle` waits on any event
loop; `done()`, `cancelled()`, `exception()`, `add_done_callback(fn)`. Many
calls can share one handle (calls folded into one invocation).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Generator
from typing import Any, Generic, TypeVar

from .._numbers import timeout as a_timeout

T = TypeVar("T")


class Handle(Generic[T]):
    """The result (or error) of work that ends later."""

    __slots__ = ("_future",)

    def __init__(self) -> None:
        self._future: concurrent.futures.Future[T] = concurrent.futures.Future()

    def result(self, timeout: float | None = None) -> T:
        """Waits up to timeout seconds (None: for ever); raises the work's
        error, TimeoutError, or concurrent.futures.CancelledError."""
        return self._future.result(a_timeout(timeout))

    def exception(self, timeout: float | None = None) -> BaseException | None:
        return self._future.exception(a_timeout(timeout))

    def done(self) -> bool:
        return self._future.done()

    def cancelled(self) -> bool:
        return self._future.cancelled()

    def add_done_callback(self, fn: Callable[[Handle[T]], object]) -> None:
        self._future.add_done_callback(lambda _: fn(self))

    def __await__(self) -> Generator[Any, None, T]:
        return asyncio.wrap_future(self._future).__await__()

    # -- the part's side ---------------------------------------------------------
    def _set(self, value: T) -> None:
        if not self._future.done():
            self._future.set_result(value)

    def _fail(self, error: BaseException) -> None:
        if not self._future.done():
            self._future.set_exception(error)

    def _cancel(self) -> None:
        self._future.cancel()

    def __repr__(self) -> str:
        state = "cancelled" if self.cancelled() else "done" if self.done() else "pending"
        return f"<Handle {state}>"
