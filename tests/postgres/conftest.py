"""Fixtures of the PostgreSQL tests: the shared test server (tests/_postgres.py)
and schemas of their own on it, dropped when the test ends."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

import _postgres

MakeUrl = Callable[..., str]


@pytest.fixture
def server() -> str:
    """The test server's URL, without a schema (skips, or fails under CI, if unreachable)."""
    return _postgres.server_url()


@pytest.fixture
def make_url(server: str) -> Iterator[MakeUrl]:
    """make_url(**options): the URL of a fresh schema on the test server, with
    the options in its query string; every schema made is dropped at the end."""
    schemas: list[str] = []

    def make(**options: object) -> str:
        schemas.append(_postgres.fresh_schema())
        return _postgres.with_query(
            server, schema=schemas[-1], **{key: str(value) for key, value in options.items()}
        )

    yield make
    for schema in schemas:
        _postgres.drop_schema(server, schema)


@pytest.fixture
def pg_url(make_url: MakeUrl) -> str:
    return make_url()
