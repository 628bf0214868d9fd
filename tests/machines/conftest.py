"""The state machine tests, once per backend of the registry every suite has
(tests/_backends.py): `store` is a sync Store on this test's URL,
`open_store(**options)` opens that URL (again), `run_async(body)` awaits
body(store) on an AsyncStore of it. Everything opened is closed at the end."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

import statekeep
import statekeep.aio
from _backends import Backend as Backend  # for the tests that name it

T = TypeVar("T")
OpenStore = Callable[..., statekeep.Store]
RunAsync = Callable[[Callable[[statekeep.aio.AsyncStore], Awaitable[Any]]], Any]


@pytest.fixture
def open_store(store_url: str) -> Iterator[OpenStore]:
    """open_store(**options) opens store_url (again); all closed at the end.

    memory:// and sqlite://:memory: give a new, empty database each time."""
    opened: list[statekeep.Store] = []

    def open_(**options: Any) -> statekeep.Store:
        store = statekeep.open(store_url, **options)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: OpenStore) -> statekeep.Store:
    return open_store()


@pytest.fixture
def run_async(store_url: str) -> RunAsync:
    """run_async(body): opens an AsyncStore on store_url in a fresh event
    loop, awaits body(store), closes the store; returns what body returned."""

    def run(body: Callable[[statekeep.aio.AsyncStore], Awaitable[T]]) -> T:
        async def main() -> T:
            async with await statekeep.aio.open(store_url) as store:
                return await body(store)

        return asyncio.run(main())

    return run
