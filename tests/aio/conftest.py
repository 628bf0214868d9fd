"""The async facade's own tests, once per backend (tests/_backends.py).

`use(store_url, body)` opens an AsyncStore on a fresh event loop, awaits
body(store) and closes it; the conformance suite also runs every test of
tests/conformance against the AsyncStore through tests/_async_bridge.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import statekeep.aio

T = TypeVar("T")


def with_store(
    url: str, body: Callable[[statekeep.aio.AsyncStore], Awaitable[T]], **options: Any
) -> T:
    async def main() -> T:
        async with await statekeep.aio.open(url, **options) as store:
            return await body(store)

    return asyncio.run(main())


class LagProbe:
    """A task that sleeps 1 ms in a loop and records each overshoot (seconds).

    Garbage collections are recorded too: a collection of the oldest
    generation stops every thread for as long as it takes (tens of ms with
    a few hundred thousand live entities), whatever the store does, so
    `worst` leaves out the wake-ups a collection overlapped (`gc_worst` says
    how long the longest one took; `worst_overall` keeps them)."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self._spans: list[tuple[float, float, float]] = []  # (start, end, lag)
        self._collections: list[tuple[float, float]] = []
        self._collecting = 0.0
        self._task: asyncio.Task[None] | None = None

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._collecting = time.perf_counter()
        else:
            self._collections.append((self._collecting, time.perf_counter()))

    async def __aenter__(self) -> LagProbe:
        gc.callbacks.append(self._on_gc)
        self._task = asyncio.get_running_loop().create_task(self._probe())
        await asyncio.sleep(0)
        return self

    async def _probe(self) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(0.001)
            end = time.perf_counter()
            self._spans.append((start, end, end - start - 0.001))

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        gc.callbacks.remove(self._on_gc)
        self.lags = [lag for _, _, lag in self._spans]

    @property
    def worst_overall(self) -> float:
        return max(self.lags, default=0.0)

    @property
    def gc_worst(self) -> float:
        return max((end - start for start, end in self._collections), default=0.0)

    @property
    def worst(self) -> float:
        """The worst lag of the wake-ups no garbage collection overlapped."""
        clear = [
            lag
            for start, end, lag in self._spans
            if not any(s < end and e > start for s, e in self._collections)
        ]
        return max(clear, default=0.0)
