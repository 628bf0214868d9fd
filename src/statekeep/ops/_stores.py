"""Opening a store to operate it: read-only where the command only reads.

A command opens the database by its URL as an application does, but with no
write-behind journal of its own (so that opening never stores or adopts an
application's pending writes: `inspect` and `export` change nothing), no
metrics and no alerts. A file database that does not exist is an error, not
a new empty file: `statekeep inspect sqlite:///typo.db` must not create one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote

from ..backends import postgres_store_exists, redacted
from ..backends.base import Catalog
from ..errors import ConfigurationError, StatekeepError
from ..store import Store
from ..store import open as open_store


def local_path(url: str) -> Path | None:
    """The file or folder a sqlite:// or files:// URL names (None for others)."""
    scheme, separator, rest = url.partition("://")
    if not separator or scheme not in ("sqlite", "files"):
        return None
    rest = rest.partition("?")[0]
    if rest in (":memory:", "/:memory:"):
        return None
    return Path(unquote(rest[1:] if rest.startswith("/") else rest))


def open_existing(url: str, **options: Any) -> Store:
    """A store on a database that must exist already (ConfigurationError if not)."""
    try:
        path = local_path(url)
    except ValueError as exc:
        raise ConfigurationError(f"a malformed URL {redacted(url)}: {exc}") from exc
    if path is not None and not path.exists():
        raise ConfigurationError(f"no database at {path} (from {redacted(url)})")
    if url.startswith(("postgresql://", "postgres://")) and not postgres_store_exists(url):
        raise ConfigurationError(
            f"no statekeep store in {redacted(url)} (its schema holds none; schema=... in "
            "the URL names another)"
        )
    return open_quietly(url, **options)


def open_quietly(url: str, **options: Any) -> Store:
    options.setdefault("writebehind", {"journal": None})
    try:
        return open_store(url, metrics=False, alerts=(), **options)
    except StatekeepError:
        raise
    except ValueError as exc:  # a URL urllib cannot take apart (a port that is no number)
        raise ConfigurationError(f"a malformed URL {redacted(url)}: {exc}") from exc


def outlives(url: str) -> bool:
    """Does a store at this URL outlive the process that opens it?"""
    return not (url.startswith("memory:") or url.partition("?")[0] in _IN_MEMORY)


_IN_MEMORY = ("sqlite://:memory:", "sqlite:///:memory:")


def plain(store: Any) -> Store:
    """The Store itself, given a Store or a statekeep.aio AsyncStore (whose
    `sync` it is): ops run blocking calls, on the caller's thread."""
    sync = getattr(store, "sync", store)
    if not isinstance(sync, Store):
        raise ConfigurationError(f"a Store or an AsyncStore, not {type(store).__name__}")
    return sync


def catalog(store: Store) -> Catalog:
    backend = plain(store).backend
    if not all(hasattr(backend, name) for name in ("describe", "collections", "scan", "load")):
        raise ConfigurationError(
            f"the backend of {redacted(store.url)} ({type(backend).__name__}) cannot be "
            "operated: it has no catalog (statekeep.backends.base.Catalog)"
        )
    return cast(Catalog, backend)
