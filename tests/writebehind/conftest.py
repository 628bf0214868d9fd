"""Every write-behind test runs once per backend of the registry every suite
has (tests/_backends.py: BACKENDS); `@pytest.mark.requires(...)` keeps a test
to the backends with those capabilities, as in the conformance suite."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import statekeep
from _backends import Backend as Backend  # for the tests that name it
from statekeep.backends import open_backend

from ._support import FaultyBackend

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


OpenFaulty = Callable[..., tuple[statekeep.Store, FaultyBackend]]


@pytest.fixture
def open_faulty(store_url: str) -> Iterator[OpenFaulty]:
    """open_faulty(**write-behind options) opens store_url on a FaultyBackend
    (given as the store's backend=) and returns both; at the end every gate
    opens and every outage ends, so the stores can close, and they are closed."""
    opened: list[tuple[statekeep.Store, FaultyBackend]] = []

    def open_(**options: Any) -> tuple[statekeep.Store, FaultyBackend]:
        wrapper = FaultyBackend(open_backend(store_url, {}))
        store = statekeep.open(
            store_url, backend=wrapper, writebehind=statekeep.WriteBehindOptions(**options)
        )
        opened.append((store, wrapper))
        return store, wrapper

    yield open_
    for _, wrapper in opened:
        wrapper.recover()
        wrapper.gate.set()
    for store, _ in opened:
        store.close()  # drains for up to the store's drain_timeout
