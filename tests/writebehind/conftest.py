"""Every write-behind test runs once per backend of the conformance registry
(tests/conformance/conftest.py: BACKENDS); `@pytest.mark.requires(...)` keeps a
test to the backends with those capabilities, as in the conformance suite."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import statekeep
from conformance.conftest import BACKENDS, CAPABILITIES, Backend

from ._support import FaultyBackend, install


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "requires(*capabilities): run only on backends that have all of them"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" not in metafunc.fixturenames:
        return
    needed: set[str] = set()
    for mark in metafunc.definition.iter_markers("requires"):
        needed.update(mark.args)
    unknown = needed - CAPABILITIES.keys()
    if unknown:
        raise pytest.UsageError(f"unknown backend capabilities {sorted(unknown)}")
    cases = [b for b in BACKENDS if needed <= b.capabilities]
    metafunc.parametrize("backend", cases, ids=[b.name for b in cases])


@pytest.fixture
def store_url(backend: Backend, tmp_path: Path) -> str:
    """This test's store; opening the URL again is what a new process sees
    (for persistent backends)."""
    directory = tmp_path / "main"
    directory.mkdir()
    return backend.url(directory)


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
