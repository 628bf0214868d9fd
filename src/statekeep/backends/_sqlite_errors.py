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
"""

from __future__ import annotations

import sqlite3
from types import TracebackType

from ..errors import BackendError, TransientBackendError


def translate(exc: sqlite3.Error) -> BackendError:
    message = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in message or "busy" in message):
        return TransientBackendError(f"SQLite is busy: {message}")
    return BackendError(f"SQLite failed: {message}")


def missing_table(exc: BaseException | None) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and "no such table" in str(exc)


class _Driver:
    """`with DRIVER:` a reusable, stateless context manager (a class: cheaper
    than a generator-based one on the hot paths, save and get)."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(exc, sqlite3.Error):
            raise translate(exc) from exc


class _OrEmpty(_Driver):
    """`with OR_EMPTY:` as DRIVER, but a missing table ends the block quietly."""

    __slots__ = ()

    def __exit__(  # type: ignore[override]  # it may swallow: code after the block runs
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        if missing_table(exc):
            return True  # the block ends here; what follows it is the empty result
        super().__exit__(kind, exc, traceback)
        return False


DRIVER = _Driver()
OR_EMPTY = _OrEmpty()
