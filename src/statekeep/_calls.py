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
import inspect
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
    (`_core.meter.failed`), timed or not.

    The wrapper is written for the method's own parameters (as dataclasses
    writes __init__): passing them on as they came, not as *args and
    **kwargs, costs a get or a save about a microsecond less."""
    name = method.__name__
    timed = name in OPERATIONS
    parameters, arguments, defaults = _forwarding(method)
    source = _TIMED if timed else _COUNTED
    namespace: dict[str, Any] = {
        **defaults,
        "_sk_method": method,
        "_sk_name": name,
        "_sk_index": OPERATIONS.index(name) if timed else -1,
        "_sk_clock": perf_counter_ns,
        "_sk_get_ident": get_ident,
        "_sk_OPEN": OPEN,
    }
    text = source.format(name=name, parameters=parameters, arguments=arguments)
    exec(compile(text, f"<statekeep: counted Store.{name}>", "exec"), namespace)
    return cast(F, functools.wraps(method)(namespace[name]))


# Calls.enter and Calls.leave, inlined (a call each less on every store call)
_ENTER = """
    _sk_calls = self._calls
    _sk_counts, _sk_ident = _sk_calls._counts, _sk_get_ident()
    _sk_counts[_sk_ident] = _sk_counts.get(_sk_ident, 0) + 1
    if _sk_calls.state != _sk_OPEN:
        _sk_calls.leave()
        raise _sk_calls.closed_error()
"""
_LEAVE = """
        _sk_counts = _sk_calls._counts  # a new dict in a child forked meanwhile
        _sk_left = _sk_counts[_sk_ident] - 1
        if _sk_left:
            _sk_counts[_sk_ident] = _sk_left
        else:
            del _sk_counts[_sk_ident]
"""

_COUNTED = (
    """
def {name}(self{parameters}):"""
    + _ENTER
    + """
    try:
        return _sk_method(self{arguments})
    except BaseException as _sk_error:
        _sk_meter = self._core.meter
        if _sk_meter.enabled:
            _sk_meter.failed(_sk_name, _sk_error)
        raise
    finally:"""
    + _LEAVE
)

_TIMED = (
    """
def {name}(self{parameters}):"""
    + _ENTER
    + """
    _sk_record = self._records[_sk_index]
    try:
        if _sk_record is None:
            return _sk_method(self{arguments})
        _sk_start = _sk_clock()
        _sk_result = _sk_method(self{arguments})
        _sk_record(_sk_clock() - _sk_start)
        return _sk_result
    except BaseException as _sk_error:
        if _sk_record is not None:
            self._core.meter.failed(_sk_name, _sk_error)
        raise
    finally:"""
    + _LEAVE
)


def _forwarding(method: Callable[..., Any]) -> tuple[str, str, dict[str, Any]]:
    """The text of method's parameters after self (", /, a, b=_sk_default_b,
    *, c": self and the method's own positional-only ones before the "/"),
    of the arguments that pass them on (", a, b, c=c"), and the defaults by
    the names the first uses."""
    parameters: list[str] = []
    arguments: list[str] = []
    defaults: dict[str, Any] = {}
    keyword_only = False
    given = list(inspect.signature(method).parameters.values())[1:]
    positional_only = sum(1 for p in given if p.kind is inspect.Parameter.POSITIONAL_ONLY)
    for at, parameter in enumerate(given):
        name, kind = parameter.name, parameter.kind
        default = ""
        if parameter.default is not inspect.Parameter.empty:
            defaults[f"_sk_default_{name}"] = parameter.default
            default = f"=_sk_default_{name}"
        if kind is inspect.Parameter.VAR_POSITIONAL:
            keyword_only = True
            parameters.append(f"*{name}")
            arguments.append(f"*{name}")
        elif kind is inspect.Parameter.VAR_KEYWORD:
            parameters.append(f"**{name}")
            arguments.append(f"**{name}")
        elif kind is inspect.Parameter.KEYWORD_ONLY:
            if not keyword_only:
                keyword_only = True
                parameters.append("*")
            parameters.append(f"{name}{default}")
            arguments.append(f"{name}={name}")
        else:  # positional only, or positional or keyword
            parameters.append(f"{name}{default}")
            arguments.append(name)
        if at + 1 == positional_only:
            parameters.append("/")
    if not positional_only:  # self alone is positional only
        parameters.insert(0, "/")
    return "".join(f", {p}" for p in parameters), "".join(f", {a}" for a in arguments), defaults
