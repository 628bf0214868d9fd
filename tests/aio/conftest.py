"""The async facade's own tests, once per backend (tests/_backends.py).

`use(store_url, body)` opens an AsyncStore on a fresh event loop, awaits
body(store) and closes it; the conformance suite also runs every test of
tests/conformance against the AsyncStore through tests/_async_bridge.py.
"""

from __future__ import annotations

import asyncio
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
    """A task that sleeps 1 ms in a loop and records each overshoot (seconds)."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LagProbe:
        self._task = asyncio.get_running_loop().create_task(self._probe())
        await asyncio.sleep(0)
        return self

    async def _probe(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(0.001)
            self.lags.append(loop.time() - start - 0.001)

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass

    @property
    def worst(self) -> float:
        return max(self.lags, default=0.0)
