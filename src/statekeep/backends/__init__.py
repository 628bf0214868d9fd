"""Backends by URL scheme: `memory://`, `sqlite:///app.db`, `sqlite://:memory:`,
`postgresql://user@host:port/db` and `files:///dir`.

The PostgreSQL and files backends are imported when first opened, so that
psycopg is needed only by the applications that use it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, unquote

from ..errors import ConfigurationError
from . import _owner as owner
from ._claims import Claim, FileClaims
from ._parse import flag as _flag
from ._parse import redacted
from ._parse import seconds as _seconds
from .base import Backend
from .memory import MemoryBackend
from .sqlite import SQLiteBackend, SQLiteMemoryBackend

__all__ = [
    "Backend",
    "Claim",
    "FileClaims",
    "drop_postgres_schema",
    "postgres_store_exists",
    "open_backend",
    "owner",
    "redacted",
    "register_backend",
]

Factory = Callable[[str, dict[str, str]], Backend]
_factories: dict[str, Factory] = {}


def register_backend(scheme: str, factory: Factory) -> None:
    """Make `scheme://...` URLs open a backend made by `factory(rest, options)`."""
    _factories[scheme] = factory


def open_backend(url: str, options: dict[str, Any]) -> Backend:
    if not isinstance(url, str):
        raise ConfigurationError(f"a store URL is a string, not {url!r}")
    scheme, separator, rest = url.partition("://")
    factory = _factories.get(scheme)
    if not separator or factory is None:
        raise ConfigurationError(
            f"cannot open {url!r}: a store URL starts with one of "
            + ", ".join(f"{s}://" for s in sorted(_factories))
        )
    rest, _, query = rest.partition("?")
    merged = dict(parse_qsl(query, keep_blank_values=True))
    merged.update({key: str(value) for key, value in options.items()})
    return factory(rest, merged)


def _take(
    options: dict[str, str], allowed: dict[str, Callable[[str], Any]], url: str
) -> dict[str, Any]:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigurationError(
            f"unknown option(s) {', '.join(unknown)} for {url}; known: {', '.join(sorted(allowed))}"
        )
    taken: dict[str, Any] = {}
    for key, value in options.items():
        try:
            taken[key] = allowed[key](value)
        except ValueError as exc:
            raise ConfigurationError(f"bad option {key}={value!r} for {url}: {exc}") from exc
    return taken


def _memory(rest: str, options: dict[str, str]) -> Backend:
    if rest:
        raise ConfigurationError(f"memory:// takes no path, got {rest!r}")
    return MemoryBackend(**_take(options, {"timeout": _seconds}, "memory://"))


def _sqlite(rest: str, options: dict[str, str]) -> Backend:
    if rest in (":memory:", "/:memory:"):
        return SQLiteMemoryBackend(**_take(options, {"timeout": _seconds}, "sqlite://:memory:"))
    path = unquote(rest[1:] if rest.startswith("/") else rest)  # %3F for a ? in a name
    if not path:
        raise ConfigurationError(
            "sqlite URLs name a file: sqlite:///relative/app.db, sqlite:////absolute/app.db "
            "or sqlite://:memory:"
        )
    allowed: dict[str, Callable[[str], Any]] = {"synchronous": str.lower, "timeout": _seconds}
    return SQLiteBackend(path, **_take(options, allowed, "sqlite://"))


def _files(rest: str, options: dict[str, str]) -> Backend:
    path = unquote(rest[1:] if rest.startswith("/") else rest)
    if not path:
        raise ConfigurationError(
            "files URLs name a directory: files:///relative/dir or files:////absolute/dir"
        )
    from .files import FilesBackend

    allowed: dict[str, Callable[[str], Any]] = {"fsync": _flag, "timeout": _seconds}
    return FilesBackend(path, **_take(options, allowed, "files://"))


def _postgresql(scheme: str) -> Factory:
    def factory(rest: str, options: dict[str, str]) -> Backend:
        try:
            from ._postgres_options import OPTIONS
            from .postgres import PostgresBackend
        except ImportError as exc:  # psycopg is an optional dependency
            raise ConfigurationError(
                f"{scheme}:// needs psycopg and psycopg_pool: pip install 'statekeep[postgresql]'"
            ) from exc
        return PostgresBackend(f"{scheme}://{rest}", **_take(options, OPTIONS, f"{scheme}://"))

    return factory


def drop_postgres_schema(server: str, schema: str) -> None:
    """Drops a PostgreSQL schema with everything in it (psycopg is imported here)."""
    from ._postgres_schemas import drop_schema

    drop_schema(server, schema)


def postgres_store_exists(url: str) -> bool:
    """Does the PostgreSQL URL's schema hold a store? (True if the server cannot tell.)"""
    try:
        from ._postgres_schemas import store_exists
    except ImportError:  # no psycopg: opening the URL says what to install
        return True
    return store_exists(url)


register_backend("memory", _memory)
register_backend("sqlite", _sqlite)
register_backend("files", _files)
register_backend("postgresql", _postgresql("postgresql"))
register_backend("postgres", _postgresql("postgres"))
