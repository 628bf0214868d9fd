"""Every write-behind test runs once per backend of the registry every suite
has (tests/_backends.py: BACKENDS); `@pytest.mark.requires(...)` keeps a test
to the backends with those capabilities, as in the conformance suite."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import statekeep
from _backends import Backend as Backend  # for the tests that name it

from ._support import FaultyBackend, install

OpenStore = Callable[..., statekeep.Store]


@pytest.fixture
def open_store(store_url: str) -> Iterator[OpenStore]:
    """open_store(**write-behind options) opens store_url; all closed at the end."""
    opened: list[statekeep.Store] = []

    def open_(**options: Any) -> statekeep.Store:
        store = statekeep.open(store_url, writebehind=statekeep.WriteBehindOptions(**options))
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()  # drains for up to the store's drain_timeout


@pytest.fixture
def wrap(open_store: OpenStore) -> Iterator[Callable[[statekeep.Store], FaultyBackend]]:
    """wrap(store) puts a FaultyBackend under the store (before its first
    enqueue); at the end every gate opens and every outage ends, so the stores
    can close."""
    wrappers: list[FaultyBackend] = []

    def wrap_(store: statekeep.Store) -> FaultyBackend:
        wrapper = FaultyBackend(store._backend)
        install(store, wrapper)
        wrappers.append(wrapper)
        return wrapper

    yield wrap_
    for wrapper in wrappers:
        wrapper.recover()
        wrapper.gate.set()
