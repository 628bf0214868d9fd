"""PostgreSQL's and the pool's exceptions as statekeep's own."""

from __future__ import annotations

import psycopg
from psycopg_pool import PoolClosed, PoolTimeout

from ..errors import BackendError, StatekeepError, TransientBackendError, ValidationError


def translate(exc: BaseException, doing: str) -> StatekeepError:
    """A driver or pool exception as one of statekeep's."""
    if isinstance(exc, PoolTimeout):
        return TransientBackendError(f"PostgreSQL: no connection while {doing}: {exc}")
    if isinstance(exc, PoolClosed):
        return BackendError(f"PostgreSQL: the store's connections are closed ({doing})")
    if isinstance(exc, psycopg.OperationalError):  # connection, shutdown, timeouts, deadlocks
        return TransientBackendError(f"PostgreSQL failed while {doing}: {exc}".strip())
    if isinstance(exc, psycopg.InterfaceError) and "closed" in str(exc):
        return TransientBackendError(f"PostgreSQL connection lost while {doing}: {exc}")
    if isinstance(exc, (psycopg.DataError, UnicodeError)):
        return ValidationError(f"PostgreSQL refused a value while {doing}: {exc}")
    return BackendError(f"PostgreSQL failed while {doing}: {exc}".strip())


def lost(exc: BaseException) -> bool:
    """Did the connection itself fail (so nothing ran, or nothing can be known)?"""
    return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)) and not isinstance(
        exc, (psycopg.errors.QueryCanceled, psycopg.errors.LockNotAvailable)
    )
