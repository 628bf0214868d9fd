"""A counted limit that threads and asyncio tasks share, first come first served.

`Slots(limit)` is a semaphore whose waiters, on threads and on any number of
event loops, are served in the order they came: a slot given back goes to the
first waiter directly (no barging by a caller that arrives meanwhile). A
waiter that times out or is cancelled after a slot was handed to it passes
the slot on, so none is lost.
"""

from __future__ import annotations

import asyncio
import collections
import threading

from .._numbers import LONGEST
from ._clock import resolve


class _Waiter:
    __slots__ = ("event", "future", "given")

    def __init__(self, future: asyncio.Future[None] | None) -> None:
        self.future = future
        self.event = threading.Event() if future is None else None
        self.given = False

    def wake(self) -> None:
        if self.event is not None:
            self.event.set()
            return
        future = self.future
        assert future is not None
        loop = future.get_loop()
        if not loop.is_closed():
            loop.call_soon_threadsafe(resolve, future)


class Slots:
    """At most `limit` held at once; `take` waits its turn, `give` hands on."""

    __slots__ = ("_lock", "_waiting", "limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._waiting: collections.deque[_Waiter] = collections.deque()
        self._lock = threading.Lock()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def try_take(self) -> bool:
        with self._lock:
            if self.used < self.limit and not self._waiting:
                self.used += 1
                return True
            return False

    def take(self, timeout: float | None) -> bool:
        """Waits up to timeout seconds (None: for ever) for a slot."""
        with self._lock:
            if self.used < self.limit and not self._waiting:
                self.used += 1
                return True
            if timeout is not None and timeout <= 0:
                return False
            waiter = _Waiter(None)
            self._waiting.append(waiter)
        assert waiter.event is not None
        waiter.event.wait(LONGEST if timeout is None else min(timeout, LONGEST))
        return self._settle(waiter)

    async def take_async(self, timeout: float | None) -> bool:
        with self._lock:
            if self.used < self.limit and not self._waiting:
                self.used += 1
                return True
            if timeout is not None and timeout <= 0:
                return False
            waiter = _Waiter(asyncio.get_running_loop().create_future())
            self._waiting.append(waiter)
        assert waiter.future is not None
        try:
            async with asyncio.timeout(timeout):
                await waiter.future
        except TimeoutError:
            pass
        except BaseException:  # cancelled: a slot handed over meanwhile goes on
            if self._settle(waiter):
                self.give()
            raise
        return self._settle(waiter)

    def _settle(self, waiter: _Waiter) -> bool:
        """True if waiter was given a slot; else it leaves the line."""
        with self._lock:
            if waiter.given:
                return True
            self._waiting.remove(waiter)
            return False

    def give(self) -> bool:
        """Gives a slot back (to the first waiter, if any); False if none was held."""
        with self._lock:
            if not self.used:
                return False
            while self._waiting:
                waiter = self._waiting.popleft()
                if waiter.future is not None and waiter.future.get_loop().is_closed():
                    continue  # its loop is gone: it will never take the slot
                waiter.given = True  # the slot passes straight to it: used stays
                break
            else:
                self.used -= 1
                return True
        waiter.wake()
        return True
