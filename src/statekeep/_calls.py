"""The calls in flight on a Store, so that close() lets them finish first.

Every public call enters and leaves. close() first refuses new calls
(closing), waits for the calls of other threads to finish, then refuses
even the end of a transaction block (closed), waits again, and only then
releases the backend: a connection is never closed under a thread using it.

No lock on the way in: a call counts itself for its thread *before* it looks
at the state, and close() changes the state *before* it looks at the counts
(each thread writes only its own entry of a dict, atomic under the GIL). So a
call either sees the store closing and raises StoreClosedError, having done
nothing, or is counted, and close() waits for it.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from threading import get_ident
from time import perf_counter_ns
from types import TracebackType
from typing import Any, TypeVar, cast

from .errors import StoreClosedError

_log = logging.getLogger("statekeep")

OPEN, CLOSING, CLOSED = 0, 1, 2


class Calls:
    def __init__(self, closed_error: Callable[[], StoreClosedError]) -> None:
        self._counts: dict[int, int] = {}
        self._closed_error = closed_error
        self.state = OPEN

    def closed_error(self) -> StoreClosedError:
        return self._closed_error()

    def enter(self) -> None:
        """Counts a call in; StoreClosedError once the store is closing."""
        counts, ident = self._counts, get_ident()
        counts[ident] = counts.get(ident, 0) + 1
        if self.state != OPEN:
            self.leave()
            raise self._closed_error()

    def enter_to_finish(self) -> bool:
        """Counts in the end of a transaction block, which may still roll
        back while the store is closing; False (not counted) once it is closed."""
        counts, ident = self._counts, get_ident()
        counts[ident] = counts.get(ident, 0) + 1
        if self.state == CLOSED:
            self.leave()
            return False
        return True

    def leave(self) -> None:
        counts, ident = self._counts, get_ident()
        left = counts[ident] - 1
        if left:
            counts[ident] = left
        else:
            del counts[ident]

    def __enter__(self) -> None:
        self.enter()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.leave()

    def close(self, timeout: float) -> None:
        """Refuses new calls and waits (up to timeout) for the calls of other
        threads; then refuses the ends of blocks too and waits for those."""
        self.state = CLOSING
        self._drain(timeout)
        self.state = CLOSED
        self._drain(timeout)

    def _drain(self, timeout: float) -> None:
        me = get_ident()
        deadline = time.monotonic() + timeout
        pause = 0.0002
        while any(ident != me for ident in list(self._counts)):
            if time.monotonic() >= deadline:
                threads = sum(1 for ident in list(self._counts) if ident != me)
                _log.warning(
                    "statekeep: close() waited %ss for calls of other threads; closing anyway",
                    timeout,
                    extra={
                        "statekeep": {
                            "event": "close.calls_waited",
                            "timeout": timeout,
                            "threads": threads,
                        }
                    },
                )
                return
            time.sleep(pause)
            pause = min(pause * 2, 0.01)

    def after_fork(self) -> None:
        """In a forked child: only the thread that forked is left."""
        ident = get_ident()
        self._counts = {ident: self._counts[ident]} if ident in self._counts else {}


F = TypeVar("F", bound=Callable[..., Any])


# the store calls timed as statekeep_operation_seconds{operation}, in the order
# of a store's `_records` (find is timed apart, while its results are read)
OPERATIONS = (
    "save",
    "save_many",
    "delete",
    "get",
    "get_many",
    "count",
    "count_by",
    "enqueue",
    "enqueue_delete",
    "send",
    "transition_many",
    "subscribe",
    "prune_events",
)


def counted(method: F) -> F:
    """A Store method (of an object with a _calls) counted as a call in
    flight and, if it is one of OPERATIONS, timed into the store's metrics:
    its `_records[i]` is what records a duration in nanoseconds (None with
    metrics off). A call that raises is counted by its error
    (`_core.meter.failed`), timed or not."""
    name = method.__name__
    if name not in OPERATIONS:

        @functools.wraps(method)
        def call(self: Any, /, *args: Any, **kwargs: Any) -> Any:
            calls: Calls = self._calls
            calls.enter()
            try:
                return method(self, *args, **kwargs)
            except BaseException as error:
                meter = self._core.meter
                if meter.enabled:
                    meter.failed(name, error)
                raise
            finally:
                calls.leave()

        return cast(F, call)
    index = OPERATIONS.index(name)

    @functools.wraps(method)
    def timed(self: Any, /, *args: Any, **kwargs: Any) -> Any:
        calls: Calls = self._calls
        calls.enter()
        record = self._records[index]
        try:
            if record is None:
                return method(self, *args, **kwargs)
            start = perf_counter_ns()
            result = method(self, *args, **kwargs)
            record(perf_counter_ns() - start)
            return result
        except BaseException as error:
            if record is not None:
                self._core.meter.failed(name, error)
            raise
        finally:
            calls.leave()

    return cast(F, timed)
