"""Time for the flow parts: the system's monotonic clock, or a fake one.

Every flow part takes `clock=`: what it reads the time from and how it waits
until a moment. The system clock is `time.monotonic` with `time.sleep` and
`asyncio.sleep`. A FakeClock stands still until told to move (`advance`) or
until someone waits on it: a wait until a moment moves it there at once, so a
test of a throttle or a retry runs a minute of simulated time in microseconds,
the same way every run.

What a flow part waits for from another caller (a concurrency slot given back,
a batch being processed) is a real wait, in real time, whatever the clock.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

from .._numbers import is_seconds
from ..errors import ConfigurationError


class Clock:
    """The system's monotonic clock."""

    __slots__ = ()

    def now(self) -> float:
        return time.monotonic()

    def sleep_until(self, moment: float) -> None:
        delay = moment - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    async def sleep_until_async(self, moment: float) -> None:
        delay = moment - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    def wait(self, condition: threading.Condition, moment: float | None) -> None:
        """With condition held: waits until it is notified or until moment
        (None: until notified), whichever comes first."""
        condition.wait(None if moment is None else max(0.0, moment - self.now()))


SYSTEM = Clock()


class FakeClock(Clock):
    """A clock for tests: `now()` moves only by `advance(seconds)` or `set(t)`.

    auto=True: a wait until a later moment moves the clock there and returns
    at once (a throttle or a retry runs simulated time). auto=False: a wait
    lasts until advance() or set() reaches its moment, as real time would
    (for parts driven by timers: a debounce, a batcher's max_delay)."""

    __slots__ = ("_asleep", "_lock", "_now", "_waiting", "auto")

    def __init__(self, start: float = 0.0, *, auto: bool = True) -> None:
        if not is_seconds(start, least=-1e15):
            raise ConfigurationError(f"start must be a number of seconds, not {start!r}")
        if not isinstance(auto, bool):
            raise ConfigurationError(f"auto must be True or False, not {auto!r}")
        self._now = float(start)
        self.auto = auto
        self._lock = threading.Lock()
        self._asleep: list[tuple[float, Callable[[], None]]] = []  # (moment, wake)
        self._waiting: set[threading.Condition] = set()

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        """Moves the time forward by seconds; returns the new time."""
        if not is_seconds(seconds):
            raise ConfigurationError(f"advance() takes seconds >= 0, not {seconds!r}")
        with self._lock:
            now = self._now = self._now + seconds
        self._wake()
        return now

    def set(self, moment: float) -> None:
        """Moves the time to moment (never back)."""
        if not is_seconds(moment, least=-1e15):
            raise ConfigurationError(f"set() takes a moment in seconds, not {moment!r}")
        with self._lock:
            if moment > self._now:
                self._now = float(moment)
        self._wake()

    def _wake(self) -> None:
        with self._lock:
            now = self._now
            due = [wake for moment, wake in self._asleep if moment <= now]
            self._asleep = [(moment, wake) for moment, wake in self._asleep if moment > now]
            waiting = list(self._waiting)
        for wake in due:
            wake()
        for condition in waiting:
            with condition:
                condition.notify_all()

    def sleep_until(self, moment: float) -> None:
        if self.auto:
            self.set(moment)
            return
        woken = threading.Event()
        with self._lock:
            if moment <= self._now:
                return
            self._asleep.append((moment, woken.set))
        woken.wait()

    async def sleep_until_async(self, moment: float) -> None:
        if self.auto:
            self.set(moment)
            await asyncio.sleep(0)  # others may run, as after a real wait
            return
        loop = asyncio.get_running_loop()
        woken: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(resolve, woken)

        with self._lock:
            if moment <= self._now:
                return
            self._asleep.append((moment, wake))
        await woken

    def wait(self, condition: threading.Condition, moment: float | None) -> None:
        if moment is not None and moment <= self._now:
            return
        with self._lock:
            self._waiting.add(condition)
        try:
            condition.wait(0.05)  # advance() notifies; the short wait covers a race with it
        finally:
            with self._lock:
                self._waiting.discard(condition)

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now!r})"


def resolve(future: asyncio.Future[None]) -> None:
    """Wakes an asyncio waiter (called on its loop: call_soon_threadsafe)."""
    if not future.done():
        future.set_result(None)


def a_clock(clock: Clock | None) -> Clock:
    """The clock= argument: None is the system's."""
    if clock is None:
        return SYSTEM
    if not isinstance(clock, Clock):
        raise ConfigurationError(f"clock must be a statekeep.flow.Clock, not {clock!r}")
    return clock
