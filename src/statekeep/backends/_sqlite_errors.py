"""Where sqlite3's errors become statekeep's: the SQLite backend's one boundary.

Every call of the SQLite backend that runs SQL does so inside `with DRIVER:`
or `with OR_EMPTY:` (as the PostgreSQL backend's go through `_connection`):
an sqlite3.Error leaving the block is raised again as

- TransientBackendError("SQLite is busy: ...") when the database is locked or
  busy (another process writing past the timeout: worth trying again), or
- BackendError("SQLite failed: ...") otherwise,

with the driver's error as its cause. `OR_EMPTY` is for reads (and deletes),
which find nothing in a table that does not exist yet: a "no such table"
error ends the block quietly, and the code after it returns the empty result.
Any other exception passes through unchanged.

A `with` costs about 0.4 us when nothing is raised, a try nothing: the calls
of a single save (begin, put, commit) and get, each a few microseconds, use
an except clause that raises `translate(exc)` or returns
`empty_or_raise(exc, empty)`, the same rules in the same place.
"""

from __future__ import annotations

import sqlite3
from types import TracebackType
from typing import TypeVar

from ..errors import BackendError, TransientBackendError

T = TypeVar("T")


def translate(exc: sqlite3.Error) -> BackendError:
    message = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in message or "busy" in message):
        return TransientBackendError(f"SQLite is busy: {message}")
    return BackendError(f"SQLite failed: {message}")


def missing_table(exc: BaseException | None) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and "no such table" in str(exc)


def empty_or_raise(exc: sqlite3.Error, empty: T) -> T:
    """What OR_EMPTY does with an error, for a read too hot for a `with`:
    empty on a missing table, else the translated error."""
    if missing_table(exc):
        return empty
    raise translate(exc) from exc


class _Driver:
    """`with DRIVER:` a reusable, stateless context manager (a class: cheaper
    than a generator-based one; no exception costs one test)."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is not None and isinstance(exc, sqlite3.Error):
            raise translate(exc) from exc


class _OrEmpty:
    """`with OR_EMPTY:` as DRIVER, but a missing table ends the block quietly."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        if exc is None or not isinstance(exc, sqlite3.Error):
            return False
        empty_or_raise(exc, None)
        return True  # a missing table: the block ends here; what follows it is the empty result


DRIVER = _Driver()
OR_EMPTY = _OrEmpty()
