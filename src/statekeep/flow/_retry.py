"""Retry: calling again what failed for a reason that may pass.

`Retry(attempts, backoff, retry_on, when, deadline)` calls a function until it
returns, an exception it should not retry is raised, `attempts` calls have
failed, or the next try would start after `deadline` seconds from the first:
then the last exception goes to the caller, unchanged. Between tries it waits
`backoff.delay(n)` (exponential, full jitter by default) on its clock. It is a
decorator (sync and coroutine functions), `call(fn, ...)` and
`await call_async(fn, ...)`. A call that succeeds at once costs one lock for
the counters beyond the call itself. Only Exception subclasses are retried:
never CancelledError, KeyboardInterrupt or SystemExit.

`stats()` counts calls, retries, successes and give-ups, per instance and
exactly under threads.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar, overload

from .._numbers import is_seconds, is_whole
from ..errors import ConfigurationError
from ..metrics import watch_flow
from ._backoff import Backoff
from ._clock import Clock, a_clock
from ._stats import FlowStats, Timings

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_BACKOFF = Backoff(base=0.1, cap=10.0, factor=2.0, jitter=1.0)
_UNSET: Any = object()


class Retry:
    """`@Retry(attempts=5, retry_on=(TransientBackendError,))` / `retry.call(fn)`."""

    __slots__ = (
        "__weakref__",  # the metrics registry watches it weakly
        "_calls",
        "_clock",
        "_counts",
        "_delays",
        "_lock",
        "attempts",
        "backoff",
        "deadline",
        "name",
        "on_retry",
        "retry_on",
        "when",
    )

    def __init__(
        self,
        attempts: int | None = 3,
        *,
        backoff: Backoff | float | None = _UNSET,
        jitter: float | None = None,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = Exception,
        when: Callable[[BaseException], bool] | None = None,
        deadline: float | None = None,
        on_retry: Callable[[BaseException, int], object] | None = None,
        name: str = "retry",
        clock: Clock | None = None,
    ) -> None:
        if attempts is None:
            if deadline is None:
                raise ConfigurationError("attempts=None (no limit) needs a deadline")
        elif not is_whole(attempts, 1):
            raise ConfigurationError(f"attempts must be an int >= 1 or None, not {attempts!r}")
        self.attempts = attempts
        self.backoff = _a_backoff(backoff, jitter)
        if attempts is None and self.backoff is None:
            raise ConfigurationError(
                "attempts=None (no limit) needs a backoff too: without a pause it would spin"
            )
        self.retry_on = _exception_types(retry_on)
        if when is not None and not callable(when):
            raise ConfigurationError(f"when must be callable, not {when!r}")
        self.when = when
        if deadline is not None and not is_seconds(deadline):
            raise ConfigurationError(f"deadline must be seconds >= 0 or None, not {deadline!r}")
        self.deadline = deadline
        if on_retry is not None and not callable(on_retry):
            raise ConfigurationError(f"on_retry must be callable, not {on_retry!r}")
        self.on_retry = on_retry
        if not isinstance(name, str):
            raise ConfigurationError(f"name must be a str, not {name!r}")
        self.name = name
        self._clock = a_clock(clock)
        self._lock = threading.Lock()
        self._counts = {"calls": 0, "succeeded": 0, "retries": 0, "gave_up": 0, "not_retried": 0}
        self._calls = 0
        self._delays = Timings()
        watch_flow(self)  # the process-wide metrics registry reads its stats()

    # -- the decision ----------------------------------------------------------
    def _worth(self, exc: BaseException) -> bool:
        if not isinstance(exc, self.retry_on):
            return False
        return self.when is None or bool(self.when(exc))

    def _next_wait(
        self, exc: BaseException, attempt: int, began: float, now: float | None = None
    ) -> float | None:
        """After failed attempt n (the first began at `began`): the moment to
        try again, or None (give up). now: the caller's clock's (a batcher's)."""
        worth = self._worth(exc)  # the caller's predicate: outside the lock
        with self._lock:
            if not worth:
                self._counts["not_retried"] += 1
                return None
            if self.attempts is not None and attempt >= self.attempts:
                self._counts["gave_up"] += 1
                return None
            delay = self.backoff.delay(attempt) if self.backoff is not None else 0.0
            if now is None:
                now = self._clock.now()
            if self.deadline is not None and now + delay - began > self.deadline:
                self._counts["gave_up"] += 1
                return None
            self._counts["retries"] += 1
            self._delays.record(delay)
        if self.on_retry is not None:
            self.on_retry(exc, attempt)
        return now + delay

    def _succeeded(self) -> None:
        with self._lock:
            self._counts["calls"] += 1
            self._counts["succeeded"] += 1

    def _ended(self) -> None:
        with self._lock:
            self._counts["calls"] += 1

    # -- calling ---------------------------------------------------------------
    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """fn(*args, **kwargs), tried again as this policy says."""
        began = self._clock.now() if self.deadline is not None else 0.0
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - raised again unless retried
            return self._again(exc, fn, args, kwargs, began)
        self._succeeded()
        return result

    def _again(
        self, exc: Exception, fn: Callable[..., T], args: Any, kwargs: Any, began: float
    ) -> T:
        """After the first try failed (it began at `began`: the deadline's start)."""
        clock = self._clock
        attempt = 1
        while True:
            moment = self._next_wait(exc, attempt, began)
            if moment is None:
                self._ended()
                raise exc
            clock.sleep_until(moment)
            attempt += 1
            try:
                result = fn(*args, **kwargs)
            except Exception as again:  # noqa: BLE001 - raised again unless retried
                exc = again
                continue
            self._succeeded()
            return result

    async def call_async(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """await fn(*args, **kwargs), tried again as this policy says."""
        clock = self._clock
        began = clock.now() if self.deadline is not None else 0.0
        attempt = 1
        while True:
            try:
                result = await fn(*args, **kwargs)
            except Exception as exc:
                moment = self._next_wait(exc, attempt, began)
                if moment is None:
                    self._ended()
                    raise
                await clock.sleep_until_async(moment)
                attempt += 1
                continue
            self._succeeded()
            return result

    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, T]]
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...
    @overload
    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]: ...

    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """`@retry` on a function or a coroutine function."""
        if not callable(fn):
            raise ConfigurationError(f"@retry decorates a callable, not {fn!r}")
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def retried_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                return await self.call_async(fn, *args, **kwargs)

            return retried_async

        lock, counts, again = self._lock, self._counts, self._again
        now = self._clock.now if self.deadline is not None else _zero

        @functools.wraps(fn)
        def retried(*args: P.args, **kwargs: P.kwargs) -> Any:
            began = now()
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - raised again unless retried
                return again(exc, fn, args, kwargs, began)
            with lock:
                counts["calls"] += 1
                counts["succeeded"] += 1
            return result

        return retried

    def stats(self) -> FlowStats:
        with self._lock:
            counts = dict(self._counts)
        return FlowStats("retry", self.name, counts, {}, {"delay": self._delays.summary()})

    def __repr__(self) -> str:
        return f"<Retry {self.name}: attempts={self.attempts}, deadline={self.deadline}>"


def _zero() -> float:
    return 0.0


def _a_backoff(backoff: Backoff | float | None, jitter: float | None) -> Backoff | None:
    if backoff is _UNSET:
        backoff = DEFAULT_BACKOFF
    elif isinstance(backoff, (int, float)) and not isinstance(backoff, bool):
        if not is_seconds(backoff):
            raise ConfigurationError(f"backoff must be seconds >= 0, not {backoff!r}")
        backoff = Backoff(base=backoff, cap=backoff, factor=1.0) if backoff > 0 else None
    elif backoff is not None and not isinstance(backoff, Backoff):
        raise ConfigurationError(
            f"backoff must be a Backoff, a fixed number of seconds or None, not {backoff!r}"
        )
    if jitter is not None:
        if backoff is None:
            raise ConfigurationError("jitter needs a backoff")
        backoff = Backoff(backoff.base, backoff.cap, backoff.factor, jitter)
    return backoff


def _exception_types(
    retry_on: type[BaseException] | tuple[type[BaseException], ...],
) -> tuple[type[BaseException], ...]:
    types = retry_on if isinstance(retry_on, tuple) else (retry_on,)
    if not types or not all(isinstance(t, type) and issubclass(t, Exception) for t in types):
        raise ConfigurationError(
            f"retry_on takes Exception classes (or a tuple of them), not {retry_on!r}"
        )
    return types
