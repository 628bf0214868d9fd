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


SYSTEM = Clock()


class FakeClock(Clock):
    """A clock for tests: `now()` moves only by `advance(seconds)`, `set(t)`
    or a wait until a later moment (which moves it there and returns)."""

    __slots__ = ("_lock", "_now")

    def __init__(self, start: float = 0.0) -> None:
        if not is_seconds(start, least=-1e15):
            raise ConfigurationError(f"start must be a number of seconds, not {start!r}")
        self._now = float(start)
        self._lock = threading.Lock()

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        """Moves the time forward by seconds; returns the new time."""
        if not is_seconds(seconds):
            raise ConfigurationError(f"advance() takes seconds >= 0, not {seconds!r}")
        with self._lock:
            self._now += seconds
            return self._now

    def set(self, moment: float) -> None:
        """Moves the time to moment (never back)."""
        with self._lock:
            if moment > self._now:
                self._now = float(moment)

    def sleep_until(self, moment: float) -> None:
        self.set(moment)

    async def sleep_until_async(self, moment: float) -> None:
        self.set(moment)
        await asyncio.sleep(0)  # others may run, as after a real wait

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now!r})"


def a_clock(clock: Clock | None) -> Clock:
    """The clock= argument: None is the system's."""
    if clock is None:
        return SYSTEM
    if not isinstance(clock, Clock):
        raise ConfigurationError(f"clock must be a statekeep.flow.Clock, not {clock!r}")
    return clock
