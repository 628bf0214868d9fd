"""The fixtures the conformance tests share, over the backend registry
(tests/_backends.py, a plugin every suite has): `store`, further stores of
the same backend (`make_store`), the facade `store` is (sync, or async
through tests/_async_bridge.py), and seeded data that must stay as it is
(`assert_unchanged`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import statekeep

# for the tests that name them (tests/_backends.py defines them)
from _async_bridge import Bridge, Loop
from _backends import BACKENDS as BACKENDS
from _backends import Backend as Backend

from .models import Note, Todo


@pytest.fixture(scope="session")
def bridge_loop() -> Iterator[Loop]:
    loop = Loop()
    yield loop
    loop.close()


@pytest.fixture(params=["sync", "async"])
def facade(request: pytest.FixtureRequest) -> str:
    """Which facade `store` is: statekeep.Store, or statekeep.aio.AsyncStore
    through a Store-shaped bridge (tests/_async_bridge.py). A test of what
    only the sync facade has is marked `sync_only` (with why)."""
    mark = request.node.get_closest_marker("sync_only")
    if request.param == "async" and mark is not None:
        pytest.skip(f"sync facade only: {mark.args[0]}")
    return str(request.param)


@pytest.fixture
def store(store_url: str, facade: str, request: pytest.FixtureRequest) -> Iterator[statekeep.Store]:
    if facade == "async":
        bridged = Bridge.open(request.getfixturevalue("bridge_loop"), store_url)
        with bridged:
            yield bridged  # type: ignore[misc]  # Store-shaped
        return
    with statekeep.open(store_url) as opened:
        yield opened


@pytest.fixture
def make_store(backend: Backend, tmp_path: Path) -> Iterator[Callable[[], statekeep.Store]]:
    """Opens further stores of the same backend, independent of `store`; all closed at the end."""
    opened: list[statekeep.Store] = []

    def make() -> statekeep.Store:
        directory = tmp_path / f"extra-{len(opened)}"
        directory.mkdir()
        opened.append(statekeep.open(backend.url(directory)))
        return opened[-1]

    yield make
    for extra in opened:
        extra.close()
        if backend.cleanup is not None:
            backend.cleanup(extra.url)


def snapshot(store: statekeep.Store) -> dict[tuple[str, str], dict[str, Any]]:
    """Everything stored in the seeded collections, as plain data."""
    return {
        (cls.__name__, entity.id): entity.model_dump()
        for cls in (Todo, Note)
        for entity in store.find(cls)
    }


@pytest.fixture
def assert_unchanged(store: statekeep.Store) -> Callable[[], None]:
    """Seeds the store; calling the result asserts the stored data is exactly as seeded."""
    store.save(Todo(id="seed-1", title="first", priority=1, notes="kept"))
    store.save(Todo(id="seed-2", title="second", done=True))
    saved = store.save(Todo(id="seed-3", title="third", priority=3))
    saved.title = "third, edited"
    store.save(saved)
    store.save(Note(id="seed-note", text="a note"))
    before = snapshot(store)
    assert len(before) == 4

    def check() -> None:
        assert snapshot(store) == before

    return check
