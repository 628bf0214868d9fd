"""CircuitBreaker: fail fast instead of hammering a dependency that is down.

Closed (the normal state), it lets calls through and counts failures: when
`failure_threshold` of them fall within `window` seconds (or, with
`failure_rate`, when that share of at least `min_calls` calls in the window
failed), it opens. Open, every call fails at once with CircuitOpenError (or
returns `fallback(*args, **kwargs)`), for `reset_timeout` seconds; then it is
half open: `half_open_max` calls go through as probes, the others still fail
fast. A probe that succeeds closes it; one that fails opens it again for
another reset_timeout. Each change of state goes to `on_change(old, new)`.

What counts as a failure: an exception of `failure_on` (every Exception by
default) that is not one of `ignore`. CancelledError, KeyboardInterrupt and
SystemExit are neither failures nor successes.
"""

from __future__ import annotations

import collections
import enum
import inspect
import math
import threading
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import ContextVar
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, overload

from .._numbers import is_seconds, is_whole
from ..errors import CircuitOpenError, ConfigurationError
from ..metrics import watch_flow
from ._clock import Clock, a_clock
from ._retry import _exception_types
from ._stats import FlowStats
from ._wrapping import guard

P = ParamSpec("P")
T = TypeVar("T")

_BUCKETS = 20  # the window's calls, for failure_rate, in this many slices


class CircuitState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """`@breaker`, `with breaker:`, `async with breaker:`, `breaker.call(fn, ...)`."""

    def __init__(
        self,
        failure_threshold: int = 5,
        window: float = 30.0,
        reset_timeout: float = 10.0,
        half_open_max: int = 1,
        *,
        failure_rate: float | None = None,
        min_calls: int = 10,
        failure_on: type[BaseException] | tuple[type[BaseException], ...] = Exception,
        ignore: tuple[type[BaseException], ...] = (),
        fallback: Callable[..., Any] | None = None,
        on_change: Callable[[CircuitState, CircuitState], object] | None = None,
        name: str = "breaker",
        clock: Clock | None = None,
    ) -> None:
        if not is_whole(failure_threshold, 1):
            raise ConfigurationError(
                f"failure_threshold must be a whole number >= 1, not {failure_threshold!r}"
            )
        for label, value in (("window", window), ("reset_timeout", reset_timeout)):
            if not is_seconds(value, positive=True):
                raise ConfigurationError(f"{label} must be positive seconds, not {value!r}")
        if not is_whole(half_open_max, 1):
            raise ConfigurationError(
                f"half_open_max must be a whole number >= 1, not {half_open_max!r}"
            )
        if failure_rate is not None and not (
            is_seconds(failure_rate, positive=True) and failure_rate <= 1
        ):
            raise ConfigurationError(f"failure_rate must be in (0, 1], not {failure_rate!r}")
        if not is_whole(min_calls, 1):
            raise ConfigurationError(f"min_calls must be a whole number >= 1, not {min_calls!r}")
        for label, fn in (("fallback", fallback), ("on_change", on_change)):
            if fn is not None and not callable(fn):
                raise ConfigurationError(f"{label} must be callable, not {fn!r}")
        if not isinstance(name, str):
            raise ConfigurationError(f"name must be a str, not {name!r}")
        self.failure_threshold, self.window = failure_threshold, float(window)
        self.reset_timeout, self.half_open_max = float(reset_timeout), half_open_max
        self.failure_rate, self.min_calls = failure_rate, min_calls
        self.failure_on = _exception_types(failure_on)
        self.ignore = _exception_types(ignore) if ignore else ()
        self.fallback, self.name = fallback, name
        self._on_change = on_change
        self._clock = a_clock(clock)
        self._lock = threading.Lock()
        self._state = CircuitState.CLOSED
        self._opened_at = -math.inf
        self._probes = 0  # probes in flight while half open
        self._failures: collections.deque[float] = collections.deque(maxlen=failure_threshold)
        self._slice = self.window / _BUCKETS
        self._calls: collections.deque[list[float]] = collections.deque()  # [slice, calls, failed]
        self._counts = {"calls": 0, "failures": 0, "rejected": 0, "opened": 0, "fallbacks": 0}
        self._probing: ContextVar[tuple[bool, ...]] = ContextVar(f"{name}_probing", default=())
        watch_flow(self)  # the process-wide metrics registry reads its stats()

    # -- the state machine (under the lock) ----------------------------------
    @property
    def state(self) -> CircuitState:
        """The state now (an open breaker past its reset_timeout is half open)."""
        with self._lock:
            changed = self._tick(self._clock.now())
        self._tell(changed)
        return self._state

    def _tick(self, now: float) -> tuple[CircuitState, CircuitState] | None:
        if self._state is CircuitState.OPEN and now >= self._opened_at + self.reset_timeout:
            return self._become(CircuitState.HALF_OPEN)
        return None

    def _become(self, state: CircuitState) -> tuple[CircuitState, CircuitState] | None:
        old, self._state = self._state, state
        if state is CircuitState.OPEN:
            self._opened_at = self._clock.now()
            self._counts["opened"] += 1
        if state is not CircuitState.HALF_OPEN:
            self._probes = 0
        if state is CircuitState.CLOSED:
            self._failures.clear()
            self._calls.clear()
        return (old, state) if old is not state else None

    def _tell(self, changed: tuple[CircuitState, CircuitState] | None) -> None:
        if changed is not None and self._on_change is not None:
            self._on_change(*changed)

    def _enter(self) -> bool:
        """Admits a call (True: as a half-open probe); CircuitOpenError if not."""
        with self._lock:
            now = self._clock.now()
            changed = self._tick(now)
            state = self._state
            probe, error = False, None
            if state is CircuitState.HALF_OPEN and self._probes < self.half_open_max:
                self._probes += 1
                probe = True
            elif state is not CircuitState.CLOSED:
                self._counts["rejected"] += 1
                after = max(0.0, self._opened_at + self.reset_timeout - now)
                error = CircuitOpenError(
                    f"{self.name} is {state.value}: failing fast (next probe in {after:.3g} s)",
                    retry_after=after,
                )
        self._tell(changed)
        if error is not None:
            raise error
        return probe

    def _exit(self, probe: bool, exc: BaseException | None) -> None:
        failed = exc is not None and self._is_failure(exc)
        if exc is not None and not failed and not isinstance(exc, Exception):
            with self._lock:  # cancelled or interrupted: neither; a probe's place frees
                if probe and self._state is CircuitState.HALF_OPEN:
                    self._probes -= 1
            return
        with self._lock:
            now = self._clock.now()
            self._counts["calls"] += 1
            if failed:
                self._counts["failures"] += 1
            changed = self._record(now, probe, failed)
        self._tell(changed)

    def _record(
        self, now: float, probe: bool, failed: bool
    ) -> tuple[CircuitState, CircuitState] | None:
        if probe:
            if self._state is not CircuitState.HALF_OPEN:
                return None  # forced meanwhile (reset / trip)
            return self._become(CircuitState.OPEN if failed else CircuitState.CLOSED)
        if self._state is not CircuitState.CLOSED:
            return None
        if self.failure_rate is None:
            if not failed:
                return None
            self._failures.append(now)
            full = len(self._failures) == self.failure_threshold
            if full and now - self._failures[0] <= self.window:
                return self._become(CircuitState.OPEN)
            return None
        return self._by_rate(now, failed)

    def _by_rate(self, now: float, failed: bool) -> tuple[CircuitState, CircuitState] | None:
        calls = self._calls
        index = math.floor(now / self._slice)
        if calls and calls[-1][0] == index:
            calls[-1][1] += 1
            calls[-1][2] += failed
        else:
            calls.append([index, 1, float(failed)])
        while calls and calls[0][0] <= index - _BUCKETS:
            calls.popleft()
        total = sum(c[1] for c in calls)
        bad = sum(c[2] for c in calls)
        if total >= self.min_calls and bad >= self.failure_rate * total:  # type: ignore[operator]
            return self._become(CircuitState.OPEN)
        return None

    def _is_failure(self, exc: BaseException) -> bool:
        return isinstance(exc, self.failure_on) and not (
            self.ignore and isinstance(exc, self.ignore)
        )

    # -- use -----------------------------------------------------------------
    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """fn(*args, **kwargs) through the breaker (the fallback's result when open)."""
        try:
            probe = self._enter()
        except CircuitOpenError:
            if self.fallback is None:
                raise
            return self._fall_back(args, kwargs)  # type: ignore[no-any-return]
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self._exit(probe, exc)
            raise
        self._exit(probe, None)
        return result

    async def call_async(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """await fn(*args, **kwargs) through the breaker (an async fallback is awaited)."""
        try:
            probe = self._enter()
        except CircuitOpenError:
            if self.fallback is None:
                raise
            result = self._fall_back(args, kwargs)
            return await result if inspect.isawaitable(result) else result  # type: ignore[no-any-return]
        try:
            value = await fn(*args, **kwargs)
        except BaseException as exc:
            self._exit(probe, exc)
            raise
        self._exit(probe, None)
        return value

    def _fall_back(self, args: Any, kwargs: Any) -> Any:
        with self._lock:
            self._counts["fallbacks"] += 1
        assert self.fallback is not None
        return self.fallback(*args, **kwargs)

    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, T]]
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...
    @overload
    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]: ...

    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """`@breaker` on a function, coroutine function or generator function."""
        return guard(fn, "breaker", self, self.call, self.call_async)

    def __enter__(self) -> CircuitBreaker:
        probe = self._enter()
        self._probing.set((*self._probing.get(), probe))  # blocks nest, per context
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack = self._probing.get()
        if not stack:
            raise ConfigurationError(f"{self.name}: __exit__ without __enter__")
        self._probing.set(stack[:-1])
        self._exit(stack[-1], exc)

    async def __aenter__(self) -> CircuitBreaker:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    @property
    def probe_at(self) -> float | None:
        """When (on its clock) an open breaker lets a probe through; None
        unless it is open."""
        with self._lock:
            if self._state is not CircuitState.OPEN:
                return None
            return self._opened_at + self.reset_timeout

    # -- by hand, and figures --------------------------------------------------
    def trip(self) -> None:
        """Opens it now (for reset_timeout), whatever the counts say."""
        with self._lock:
            changed = self._become(CircuitState.OPEN)
        self._tell(changed)

    def reset(self) -> None:
        """Closes it now and forgets the failures counted."""
        with self._lock:
            changed = self._become(CircuitState.CLOSED)
        self._tell(changed)

    def stats(self) -> FlowStats:
        state = self.state
        with self._lock:
            counts = dict(self._counts)
            gauges = {
                "state": float(list(CircuitState).index(state)),
                "probes": float(self._probes),
            }
        return FlowStats("breaker", self.name, counts, gauges)

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.name}: {self._state.value}>"
