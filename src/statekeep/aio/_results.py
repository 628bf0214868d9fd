"""`store.find(...)` of an AsyncStore: the results, fetched in pages.

The sync find makes a lazy iterator (its arguments are checked when find is
called, on the event loop: nothing is read until the first result is asked
for). Its pages are read on one worker thread, kept for the whole iteration
(a database cursor belongs to a thread), or on the worker of the calling
task's transaction block, where the block's uncommitted writes are seen.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from itertools import islice
from typing import Generic, TypeVar

from ..errors import QueryError, StoreClosedError
from ._block import Block, own_block
from ._threads import Workers

E = TypeVar("E")

# results per hop to the worker thread: the first page small (a find for a
# few rows answers in one hop), later ones larger (a hop costs ~50 us)
FIRST_PAGE = 64
PAGE = 1000


class AsyncResults(Generic[E]):
    """`async for entity in store.find(...)`, or `await ....all()` / `.first()`."""

    def __init__(self, workers: Workers, results: Iterator[E]) -> None:
        self._workers = workers
        self._results: Iterator[E] | None = results
        self._pages: AsyncGenerator[list[E], None] | None = None

    def __aiter__(self) -> AsyncIterator[E]:
        return self._each()

    async def _each(self) -> AsyncGenerator[E, None]:
        # each generator closes the one it reads (aclosing): left to the garbage
        # collector, an outer one closed first gave the thread back while the
        # inner one's cursor was still open on it (a transaction, on PostgreSQL)
        async with contextlib.aclosing(self._paged()) as pages:
            async for page in pages:
                for entity in page:
                    yield entity

    async def all(self) -> list[E]:
        """Every result, in a list."""
        found: list[E] = []
        async with contextlib.aclosing(self._paged()) as pages:
            async for page in pages:
                found.extend(page)
        return found

    async def first(self) -> E | None:
        """The first result, or None if there is none."""
        async with contextlib.aclosing(self._paged(1)) as pages:
            async for page in pages:
                return page[0] if page else None
            return None

    async def _paged(self, first: int = FIRST_PAGE) -> AsyncGenerator[list[E], None]:
        results, self._results = self._results, None
        if results is None:
            raise QueryError("these results have been read already: call find() again")
        block = own_block()
        if block is not None:
            async with contextlib.aclosing(_pages(block, results, first)) as pages:
                async for page in pages:
                    yield page
            return
        holder = Block(None, await self._workers.take())  # a block of no transaction
        try:
            async with contextlib.aclosing(_pages(holder, results, first)) as pages:
                async for page in pages:
                    yield page
        finally:
            self._workers.give(holder.worker)


async def _pages(block: Block, results: Iterator[E], first: int) -> AsyncGenerator[list[E], None]:
    size = first
    try:
        while True:
            page: list[E] = await block.run(_page, results, size)
            if page:
                yield page
            if len(page) < size:
                return
            size = PAGE
    finally:  # stopped early: the cursor is closed on its own thread
        close = getattr(results, "close", None)
        if close is not None:
            with contextlib.suppress(StoreClosedError):  # closed meanwhile: so is the cursor
                await block.run_to_end(close)


def _page(results: Iterator[E], size: int) -> list[E]:
    return list(islice(results, size))
