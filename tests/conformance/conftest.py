"""The backend registry and the fixtures the conformance tests share.

A backend joins the suite with one line in BACKENDS: a name, a function that
makes a fresh store's URL (given an empty directory it may put files in), the
capabilities it has and, for a server, what removes a store when its test
ends. Every test that uses the `backend` fixture (directly or through
`store`/`store_url`) runs once per backend; a test marked
`@pytest.mark.requires("persistent")` runs only on backends with that capability.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest

import _postgres
import statekeep

from .models import Note, Todo

CAPABILITIES = {
    "persistent": "data survives close() and is there when the same URL is opened again",
    "sqlite": "SQLite underneath: the backend has explain(spec, query) (EXPLAIN QUERY PLAN)",
    "postgresql": "PostgreSQL underneath: the backend has explain(spec, query) (EXPLAIN)",
    "files": "plain files underneath: one JSON document per entity",
}


@dataclass(frozen=True)
class Backend:
    name: str
    url: Callable[[Path], str]
    capabilities: frozenset[str] = frozenset()
    cleanup: Callable[[str], None] | None = None  # removes what url() made


def _postgres_url(directory: Path) -> str:
    """A schema of this store's own on the test server (skips or fails if unreachable)."""
    url = _postgres.with_query(_postgres.server_url(), schema=_postgres.fresh_schema())
    return f"{url}&{_postgres.FAST_COMMITS}"


def _drop_postgres_schema(url: str) -> None:
    base, _, query = url.partition("?")
    schema = dict(parse_qsl(query))["schema"]
    _postgres.drop_schema(base, schema)


BACKENDS = (
    Backend("memory", lambda d: "memory://"),
    Backend(
        "sqlite-file", lambda d: f"sqlite:///{d / 'store.db'}", frozenset({"persistent", "sqlite"})
    ),
    Backend("sqlite-memory", lambda d: "sqlite://:memory:", frozenset({"sqlite"})),
    Backend(
        "postgresql",
        _postgres_url,
        frozenset({"persistent", "postgresql"}),
        cleanup=_drop_postgres_schema,
    ),
    Backend("files", lambda d: f"files:///{d / 'files'}", frozenset({"persistent", "files"})),
)


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
def store_url(backend: Backend, tmp_path: Path) -> Iterator[str]:
    """The URL of this test's store; open it again to see what a new process would see."""
    directory = tmp_path / "main"
    directory.mkdir()
    url = backend.url(directory)
    yield url
    if backend.cleanup is not None:
        backend.cleanup(url)


@pytest.fixture
def store(store_url: str) -> Iterator[statekeep.Store]:
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
