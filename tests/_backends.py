"""The backend registry of the test suites, a pytest plugin (tests/conftest.py
loads it with `pytest_plugins`), so every suite gets it the same way: the
conformance suite, events, write-behind, and any new one (the async facade's).

A backend joins every suite with one line in BACKENDS: a name, a function that
makes a fresh store's URL (given an empty directory it may put files in), the
capabilities it has and, for a server, what removes a store when its test
ends. Every test that uses the `backend` fixture (directly or through
`store_url`, or a suite's `store`) runs once per backend; a test marked
`@pytest.mark.requires("persistent")` runs only on backends with that
capability. How a suite opens its stores (`store`, `open_store`, ...) is the
suite's own, in its conftest.py, on top of `store_url`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

import pytest

import _postgres

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
    config.addinivalue_line(
        "markers",
        "sync_only(why): a test of the sync facade only (a suite's `store` may be either)",
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
