"""A feed: the latest state of something pages show, shared by every page that shows it.

One reader per feed, not per page: the feed reads its state off the event
loop (a thread; a read may query the database) while anyone follows it, at
most once per `gap` seconds, when poked (a commit that may change it) or
every `every` seconds (what no event tells: another process's writes,
timings). Each follower gets the newest state whenever it is ready for one,
so a slow page skips the states it had no time for and never holds more than
one (bounded memory, and the store never waits for a page). The patch from
one state to the next is computed once and shared by the pages that were on
the same state, as most are.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable

import anyio.to_thread

from ..errors import StoreClosedError
from . import _protocol
from ._signals import Tree, diff

log = logging.getLogger("statekeep.web")

Read = Callable[[], Tree]
Quick = Callable[[], Tree | None]  # a read on the loop, without I/O; None: read on a thread
ALIVE_EVERY = 0.5  # seconds: how soon a closed store ends its pages' streams
Extra = Callable[[Tree | None, Tree], bytes]  # (the state a page has, the new one) -> bytes


class Feed:
    def __init__(
        self,
        name: str,
        read: Read,
        *,
        every: float,
        gap: float,
        start: Callable[[], None] = lambda: None,
        stop: Callable[[], None] = lambda: None,
        alive: Callable[[], bool] = lambda: True,
        quick: Quick = lambda: None,
    ) -> None:
        """start and stop run (on a worker thread) when the first page comes
        and after the last one went: what pokes the feed is set up and taken down.
        alive() is asked while the feed waits (every ALIVE_EVERY seconds): once
        it is false (the store closed) the pages' streams end. quick() is tried
        first each time, on the loop: the state when it can tell it without I/O
        (a change applied to what it has), else None and read() runs on a thread."""
        self.name = name
        self._read, self._quick = read, quick
        self._start, self._stop, self._alive = start, stop, alive
        self._every, self._gap = every, gap
        self.state: Tree | None = None
        self.version = 0
        self.reads = 0  # how many times the state was read (tests, benchmarks)
        self.ended = False  # its store closed: the streams end
        self._failing = False
        self._followers = 0
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: set[asyncio.Future[None]] = set()  # the pages waiting for a new state
        self._wake: asyncio.Event | None = None
        self._poked = threading.Event()  # set by any thread; one call to the loop per burst
        self._patches: dict[int, bytes] = {}  # from version -> the patch to self.version

    # -- followers (on the loop) ---------------------------------------------
    async def follow(self, extra: Extra | None = None) -> AsyncIterator[bytes]:
        """A frame each time the state changes, taking a page from the state it
        was last sent to this one (the whole state first); extra(sent, state)
        adds what else the page needs for it (rows' HTML)."""
        self._attach()
        loop = asyncio.get_running_loop()
        waiters = self._waiters
        try:
            sent: Tree | None = None
            seen = -1
            while True:
                state, version = self.state, self.version
                if state is not None and version != seen:  # the last state too, once ended
                    frame = self._frame(sent, seen, state)
                    if extra is not None:
                        frame += extra(sent, state)
                    sent, seen = state, version
                    if frame:
                        yield frame
                    continue
                if self.ended:
                    return
                waiter = loop.create_future()  # one a page: cancelling it cancels no other
                waiters.add(waiter)
                try:
                    await waiter
                finally:
                    waiters.discard(waiter)
        finally:
            self._detach()

    def _frame(self, sent: Tree | None, seen: int, state: Tree) -> bytes:
        if sent is None:
            return _protocol.signals(state)
        cached = self._patches.get(seen)
        if cached is None:
            patch, removed = diff(sent, state)
            cached = (_protocol.remove_signals(removed) if removed else b"") + (
                _protocol.signals(patch) if patch else b""
            )
            self._patches[seen] = cached
        return cached

    def _attach(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a first follower, or an app served again on a new loop
            # (the old loop's pages and reader went with it)
            self._loop, self._task, self._followers, self.ended = loop, None, 0, False
            self._waiters, self._wake = set(), asyncio.Event()
        self._followers += 1
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run(), name=f"statekeep-feed-{self.name}")

    @property
    def followers(self) -> int:
        return self._followers

    def _detach(self) -> None:
        self._followers -= 1
        if self._followers == 0 and self._wake is not None:
            self._wake.set()  # the reader notices and stops

    # -- pokes (any thread) --------------------------------------------------
    def poke(self) -> None:
        """Something the state shows may have changed: read it soon (within gap)."""
        if self._poked.is_set():
            return
        self._poked.set()
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(wake.set)

    # -- the reader (one task on the loop) -----------------------------------
    async def _run(self) -> None:
        """The reader: set up, read while pages follow, take down; again if pages came
        while it was taking down (this task stays the feed's until it returns, so
        a page never starts a second reader whose set-up races this one's take-down)."""
        assert self._wake is not None
        wake = self._wake
        while self._followers and not self.ended:
            try:
                await anyio.to_thread.run_sync(self._start)
            except StoreClosedError:
                self._end()
                break
            try:
                await self._follow(wake)
            finally:
                await anyio.to_thread.run_sync(self._stop)
        if asyncio.current_task() is self._task:
            self._task = None

    async def _follow(self, wake: asyncio.Event) -> None:
        while self._followers:
            self._poked.clear()
            wake.clear()
            until = time.monotonic() + self._every  # the next read, unless poked sooner
            try:
                state = self._quick()
                if state is None:
                    state = await anyio.to_thread.run_sync(self._read)
            except StoreClosedError:  # the pages' streams end
                self._end()
                return
            except Exception:  # a read that fails is logged once; the pages keep the last state
                if not self._failing:
                    log.exception(
                        "statekeep.web: reading the %s feed failed",
                        self.name,
                        extra={"statekeep": {"event": "web.feed_failed", "feed": self.name}},
                    )
                self._failing = True
            else:
                self._failing = False
                self.reads += 1
                self._publish(state)
            await asyncio.sleep(self._gap)
            while not self._poked.is_set() and self._followers and not self.ended:
                if not self._alive():  # its store closed: no read will answer again
                    self._end()
                    return
                left = until - time.monotonic()
                if left <= 0:
                    break
                with contextlib.suppress(TimeoutError):  # (asyncio.timeout: no task a wait)
                    async with asyncio.timeout(min(left, ALIVE_EVERY)):
                        await wake.wait()
                # a doorbell: what rang it is in _poked, _followers and ended. (A poke's
                # wake.set may run after the read it asked for: left set, it would
                # spin this loop until `until`.)
                wake.clear()

    def _end(self) -> None:
        self.ended = True
        self._wake_pages()

    def _wake_pages(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _publish(self, state: Tree) -> None:
        if state == self.state:
            return
        self.state, self.version = state, self.version + 1
        self._patches = {}
        self._wake_pages()
