"""Throttle: a rate (a GCRA token bucket) and a cap on calls in flight, for
threads and asyncio tasks alike.

The rate is the generic cell rate algorithm: one "theoretical arrival time"
(TAT) per throttle. A call may go at max(TAT - tolerance, now), where
tolerance = (burst - 1) * interval and interval = per / rate; going moves the
TAT one interval on. So an idle throttle lets exactly `burst` calls through at
once (1 by default: no surprise first burst), then one each interval:

    burst=3, rate=1/s    t=0: |||    t=1: |    t=2: |    t=3: |  ...

In any stretch of t seconds it admits at most burst + rate * t / per calls.
A caller that must wait reserves its moment first (fair=True), so waiters go
in the order they came; one that gives up before its moment hands it back
if no one reserved after it. `max_concurrent` caps the calls in flight
(first come, first served: statekeep.flow._slots). `cool_down(seconds)`
admits nothing for that long (an upstream said 429), then resumes at the
steady rate, without a burst. `for_key(key)` gives each key a throttle of
its own, the least recently used idle ones dropped beyond max_keys.
"""

from __future__ import annotations

import collections
import math
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, overload

from .._numbers import is_seconds, is_whole
from .._numbers import timeout as a_timeout
from ..errors import ConfigurationError, ThrottledError
from ..metrics import unwatch_flow, watch_flow
from ._clock import Clock, a_clock
from ._slots import Slots
from ._stats import FlowStats, PerSecond, Timings
from ._wrapping import guard

P = ParamSpec("P")
T = TypeVar("T")

_EPSILON = 1e-9  # seconds: moments closer than this are one


class Throttle:
    """`with throttle:` / `async with throttle:` / `@throttle` /
    `throttle.acquire(timeout=...)` / `throttle.try_acquire()`."""

    def __init__(
        self,
        rate: float | None = None,
        per: float = 1.0,
        *,
        burst: int = 1,
        max_concurrent: int | None = None,
        cooldown: float = 1.0,
        fair: bool = True,
        on_throttle: Callable[[int], object] | None = None,
        max_keys: int = 10_000,
        name: str = "throttle",
        clock: Clock | None = None,
    ) -> None:
        if rate is None and max_concurrent is None:
            raise ConfigurationError("Throttle needs a rate, a max_concurrent, or both")
        if rate is not None and not (is_seconds(rate, positive=True) and math.isfinite(rate)):
            raise ConfigurationError(f"rate must be a positive number, not {rate!r}")
        if not is_seconds(per, positive=True):
            raise ConfigurationError(f"per must be a positive number of seconds, not {per!r}")
        if not is_whole(burst, 1):
            raise ConfigurationError(f"burst must be a whole number >= 1, not {burst!r}")
        if max_concurrent is not None and not is_whole(max_concurrent, 1):
            raise ConfigurationError(
                f"max_concurrent must be a whole number >= 1 or None, not {max_concurrent!r}"
            )
        if not is_seconds(cooldown):
            raise ConfigurationError(f"cooldown must be seconds >= 0, not {cooldown!r}")
        if not isinstance(fair, bool):
            raise ConfigurationError(f"fair must be True or False, not {fair!r}")
        if on_throttle is not None and not callable(on_throttle):
            raise ConfigurationError(f"on_throttle must be callable, not {on_throttle!r}")
        if not is_whole(max_keys, 1):
            raise ConfigurationError(f"max_keys must be a whole number >= 1, not {max_keys!r}")
        if not isinstance(name, str):
            raise ConfigurationError(f"name must be a str, not {name!r}")
        self.rate, self.per, self.burst = rate, float(per), burst
        self.max_concurrent, self.cooldown, self.fair = max_concurrent, float(cooldown), fair
        self.name, self.max_keys = name, max_keys
        self._on_throttle = on_throttle
        self._clock = a_clock(clock)
        self._now = time.monotonic if type(self._clock) is Clock else self._clock.now
        self._interval = self.per / rate if rate is not None else 0.0
        if not math.isfinite(self._interval * burst):
            raise ConfigurationError(f"rate {rate!r} per {per!r} s is too small to keep count of")
        self._tolerance = (burst - 1) * self._interval
        self._tat = -math.inf
        self._epoch = 0  # moves on at each cool_down: reservations made before are redone
        self._lock = threading.Lock()
        self._slots = Slots(max_concurrent) if max_concurrent is not None else None
        self._admitted = 0  # the hot counter, apart from the others
        self._per_second = PerSecond()
        self._counts = {"waits": 0, "refused": 0, "cooled_down": 0}
        self._sleeping = 0
        self._waits = Timings()
        self._keys: collections.OrderedDict[Hashable, Throttle] = collections.OrderedDict()
        self._keys_lock = threading.Lock()
        watch_flow(self)  # the process-wide metrics registry reads its stats()

    # -- the rate ------------------------------------------------------------
    def _at_once(self) -> bool:
        """The fast path: admitted now by the rate (it never overtakes a
        waiter: a waiter's reservation has moved the TAT on)."""
        with self._lock:
            now = self._now()
            tat = self._tat
            if tat - self._tolerance > now + _EPSILON:
                return False
            self._tat = (tat if tat > now else now) + self._interval
            self._admitted += 1
            self._per_second.count(now)
            return True

    def _reserve(self, now: float, most: float | None) -> tuple[float, float, int] | None:
        """Under the lock: (moment this caller may go, the TAT it left, epoch),
        its place taken; None if that moment is more than `most` s away."""
        start = self._tat - self._tolerance
        if start < now + _EPSILON:  # float rounding must not cost a burst its last call
            start = now
        if most is not None and start - now > most:
            return None
        self._tat = (self._tat if self._tat > now else now) + self._interval
        return start, self._tat, self._epoch

    def _give_back(self, tat: float) -> None:
        """A reservation not used: undone if no one reserved after it."""
        with self._lock:
            if self._tat == tat:
                self._tat -= self._interval

    def _refuse(self, timeout: float | None, by_rate: bool) -> ThrottledError:
        """by_rate: the rate refused (its next moment is known), not a full
        max_concurrent (that depends on another caller's release)."""
        with self._lock:
            self._counts["refused"] += 1
            after = max(0.0, self._tat - self._tolerance - self._now())
        return ThrottledError(
            f"{self.name}: no slot within {timeout:g} s ({self._describe()})",
            retry_after=after if by_rate else None,
        )

    def _describe(self) -> str:
        parts = []
        if self.rate is not None:
            parts.append(f"{self.rate:g} per {self.per:g} s, burst {self.burst}")
        if self.max_concurrent is not None:
            parts.append(f"{self.max_concurrent} at once")
        return ", ".join(parts)

    def _admit_now(self, deadline: float | None, began: float) -> tuple[float, float, int] | None:
        """None if admitted now; else the reservation to wait for (_NO: it
        would come after deadline)."""
        with self._lock:
            now = self._now()
            reserved = self._reserve(now, None if deadline is None else max(0.0, deadline - now))
            if reserved is None:
                return _NO
            if reserved[0] <= now:
                self._admitted += 1
                self._per_second.count(now)
                if now > began:  # after waits (fair=False, or a cool-down)
                    self._waits.record(now - began)
                return None
            if not self.fair:  # wait for the moment, then compete for it again
                self._tat = reserved[1] - self._interval
            self._counts["waits"] += 1
            self._sleeping += 1
            waiting = self._sleeping
        if self._on_throttle is not None:
            self._on_throttle(waiting)
        return reserved

    def _woke(self, reserved: tuple[float, float, int], began: float) -> bool:
        """After the wait: True if admitted; False to try again (cooled
        down meanwhile, or fair=False and someone else took the moment)."""
        with self._lock:
            self._sleeping -= 1
            if self.fair and reserved[2] == self._epoch:
                self._admitted += 1
                self._per_second.count(self._now())
                self._waits.record(self._now() - began)
                return True
            return False

    def _pass(self, timeout: float | None) -> None:
        clock = self._clock
        began = clock.now()
        deadline = None if timeout is None else began + timeout
        while True:
            reserved = self._admit_now(deadline, began)
            if reserved is None:
                return
            if reserved is _NO:
                raise self._refuse(timeout, by_rate=True)
            try:
                clock.sleep_until(reserved[0])
            except BaseException:
                self._abandon(reserved)
                raise
            if self._woke(reserved, began):
                return

    async def _pass_async(self, timeout: float | None) -> None:
        clock = self._clock
        began = clock.now()
        deadline = None if timeout is None else began + timeout
        while True:
            reserved = self._admit_now(deadline, began)
            if reserved is None:
                return
            if reserved is _NO:
                raise self._refuse(timeout, by_rate=True)
            try:
                await clock.sleep_until_async(reserved[0])
            except BaseException:
                self._abandon(reserved)
                raise
            if self._woke(reserved, began):
                return

    def _abandon(self, reserved: tuple[float, float, int]) -> None:
        with self._lock:
            self._sleeping -= 1
        if self.fair:
            self._give_back(reserved[1])

    # -- acquire / release ---------------------------------------------------
    def acquire(self, timeout: float | None = None) -> None:
        """Waits for a slot (None: as long as it takes); ThrottledError if
        none comes within timeout seconds. With max_concurrent, release()
        after the call (or use `with throttle:`)."""
        slots = self._slots
        if timeout is None and slots is None and self._at_once():
            return
        timeout = a_timeout(timeout)
        if slots is None:
            self._pass(timeout)
            return
        began = self._now()
        if not slots.take(timeout):
            raise self._refuse(timeout, by_rate=False)
        try:
            self._pass(None if timeout is None else max(0.0, timeout - (self._now() - began)))
        except BaseException:
            slots.give()
            raise

    async def acquire_async(self, timeout: float | None = None) -> None:
        """acquire(), waiting on the event loop."""
        slots = self._slots
        if timeout is None and slots is None and self._at_once():
            return
        timeout = a_timeout(timeout)
        if slots is None:
            await self._pass_async(timeout)
            return
        began = self._now()
        if not await slots.take_async(timeout):
            raise self._refuse(timeout, by_rate=False)
        try:
            left = None if timeout is None else max(0.0, timeout - (self._now() - began))
            await self._pass_async(left)
        except BaseException:
            slots.give()
            raise

    def try_acquire(self) -> bool:
        """A slot now, or False (nothing taken)."""
        slots = self._slots
        if slots is not None and not slots.try_take():
            with self._lock:
                self._counts["refused"] += 1
            return False
        with self._lock:
            now = self._now()
            if self._reserve(now, 0.0) is not None:
                self._admitted += 1
                self._per_second.count(now)
                return True
            self._counts["refused"] += 1
        if slots is not None:
            slots.give()
        return False

    def release(self) -> None:
        """Ends a call admitted under max_concurrent (nothing to do otherwise)."""
        if self._slots is not None and not self._slots.give():
            raise ConfigurationError(f"{self.name}: release() without a matching acquire()")

    def __enter__(self) -> Throttle:
        if self._slots is not None or not self._at_once():
            self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._slots is not None:
            self.release()

    async def __aenter__(self) -> Throttle:
        if self._slots is not None or not self._at_once():
            await self.acquire_async()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._slots is not None:
            self.release()

    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, T]]
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...
    @overload
    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]: ...

    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """`@throttle` on a function, coroutine function or generator function."""
        return guard(fn, "throttle", self, self.call, self.call_async)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """fn(*args, **kwargs) once admitted (`with throttle:` around it)."""
        with self:
            return fn(*args, **kwargs)

    async def call_async(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """await fn(*args, **kwargs) once admitted (`async with throttle:`)."""
        async with self:
            return await fn(*args, **kwargs)

    # -- signals, keys, figures -----------------------------------------------
    def cool_down(self, seconds: float | None = None) -> None:
        """Admits nothing for seconds (default: the cooldown option), then
        goes on at the steady rate without a burst. Callers already waiting
        wait for the end of it too."""
        if seconds is None:
            seconds = self.cooldown
        if not is_seconds(seconds):
            raise ConfigurationError(f"cool_down() takes seconds >= 0, not {seconds!r}")
        with self._lock:
            until = self._now() + seconds
            # the waiters book again after it, in their order: their bookings go
            booked = self._tat - self._sleeping * self._interval if self.fair else self._tat
            self._tat = max(booked, until + self._tolerance)
            self._epoch += 1
            self._counts["cooled_down"] += 1

    def for_key(self, key: Hashable) -> Throttle:
        """The throttle of key (made on first use, with this one's options)."""
        try:
            hash(key)
        except TypeError as exc:
            raise ConfigurationError(f"for_key() takes a hashable key, not {key!r}") from exc
        with self._keys_lock:
            child = self._keys.get(key)
            if child is not None:
                self._keys.move_to_end(key)
                return child
            child = Throttle(
                self.rate,
                self.per,
                burst=self.burst,
                max_concurrent=self.max_concurrent,
                cooldown=self.cooldown,
                fair=self.fair,
                on_throttle=self._on_throttle,
                name=f"{self.name}[{key!r}]",
                clock=self._clock,
            )
            unwatch_flow(child)  # one series a key would grow without bound: the root's are kept
            self._keys[key] = child
            if len(self._keys) > self.max_keys:
                self._evict()
            return child

    def _evict(self) -> None:
        """Beyond max_keys: drops the least recently used idle keys (one that
        would admit a full burst now and has nothing in flight: no state is
        lost), a tenth of max_keys at once so that a scan is paid seldom; if
        none is idle, the least recently used key (its budget is forgotten)."""
        now = self._now()
        newest = next(reversed(self._keys))
        idle = [key for key, child in self._keys.items() if key != newest and child._idle(now)][
            : max(1, self.max_keys // 10)
        ]
        for key in idle:
            del self._keys[key]
        if not idle:
            self._keys.popitem(last=False)
            self._counts["evicted_busy"] = self._counts.get("evicted_busy", 0) + 1

    def _idle(self, now: float) -> bool:
        with self._lock:
            busy = self._slots is not None and (self._slots.used or self._slots.waiting)
            return not busy and not self._sleeping and self._tat <= now

    def stats(self) -> FlowStats:
        with self._lock:
            counts = {"admitted": self._admitted, **self._counts}
            sleeping = self._sleeping
            per_second = self._per_second.rate(self._now())
        slots = self._slots
        gauges: dict[str, float] = {
            "waiting": sleeping + (slots.waiting if slots else 0),
            "admitted_per_s": per_second,
        }
        if slots is not None:
            gauges["in_flight"] = slots.used
        if self._keys:
            gauges["keys"] = len(self._keys)
        return FlowStats("throttle", self.name, counts, gauges, {"wait": self._waits.summary()})

    def __repr__(self) -> str:
        return f"<Throttle {self.name}: {self._describe()}>"


_NO: tuple[float, float, int] = (math.inf, math.inf, -1)  # _admit_now: refused
