"""PostgreSQL's and the pool's exceptions as statekeep's own."""

from __future__ import annotations

import re

import psycopg
from psycopg_pool import PoolClosed, PoolTimeout

from ..errors import (
    BackendError,
    ConfigurationError,
    StatekeepError,
    TransientBackendError,
    ValidationError,
)

# What the server or libpq says when the URL or its options are wrong, so that
# trying again cannot help. libpq gives no SQLSTATE for a failed connection:
# its message is all there is. Anything else (refused, timed out, no slots
# left, starting up, shutting down, a host name not resolved yet) may pass.
_MISCONFIGURED = re.compile(
    r"does not exist|authentication failed|no pg_hba\.conf entry|no password supplied"
    r"|not permitted to log in|permission denied|does not support SSL|certificate"
    r"|invalid connection option|invalid \w+ value|invalid value|unrecognized configuration"
    r"|invalid URI|missing \"=\"",
    re.IGNORECASE,
)


def translate(exc: BaseException, doing: str) -> StatekeepError:
    """A driver or pool exception as one of statekeep's."""
    if isinstance(exc, PoolTimeout):
        return TransientBackendError(f"PostgreSQL: no connection while {doing}: {exc}")
    if isinstance(exc, PoolClosed):
        return BackendError(f"PostgreSQL: the store's connections are closed ({doing})")
    if isinstance(exc, psycopg.errors.ProgramLimitExceeded):  # permanent: retrying cannot help
        return ValidationError(
            f"PostgreSQL cannot hold a value while {doing} (an id or indexed value must fit "
            f"an index row, about 2,700 bytes once compressed): {exc}".strip()
        )
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
        exc,
        (
            psycopg.errors.QueryCanceled,
            psycopg.errors.LockNotAvailable,
            psycopg.errors.ProgramLimitExceeded,
        ),
    )


def open_failed(exc: BaseException, doing: str) -> StatekeepError:
    """The error of a store that could not be opened: ConfigurationError when
    the URL or an option is wrong, TransientBackendError when the server is
    away or has no connection slot free (an application may retry at boot)."""
    message = f"{doing}: {str(exc).strip()}"
    if isinstance(exc, PoolTimeout) or (
        isinstance(exc, psycopg.OperationalError) and not _MISCONFIGURED.search(str(exc))
    ):
        return TransientBackendError(f"{message} (the server may be away or busy: try again)")
    return ConfigurationError(message)
