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
from ..errors import ConfigurationError
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
    path = local_path(url)
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
    return open_store(url, metrics=False, alerts=(), **options)


def catalog(store: Store) -> Catalog:
    backend = store.backend
    if not all(hasattr(backend, name) for name in ("describe", "collections", "scan", "load")):
        raise ConfigurationError(
            f"the backend of {redacted(store.url)} ({type(backend).__name__}) cannot be "
            "operated: it has no catalog (statekeep.backends.base.Catalog)"
        )
    return cast(Catalog, backend)
