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


# Which failures a retry may cure, by SQLSTATE. A failure of the server's
# state (a lost connection, a shutdown, a lock or a timeout, no memory or disk
# left, a failover's read-only standby) passes; one of the statement and its
# values (class 22 data, 23 integrity, 54 program limits such as an index row
# too large, a trigger's or function's error) fails again however often the
# same write is retried, so it is permanent: the write-behind queue narrows
# its batch down to the write and dead-letters it instead of retrying for
# ever. psycopg files most of both kinds under OperationalError; any SQLSTATE
# not listed here is permanent, and an OperationalError without one (libpq
# failed to connect or lost the connection) is transient.
_TRANSIENT_CLASSES = frozenset(
    {
        "08",  # connection exception
        "28",  # invalid authorization (a role or password changed under a running pool)
        "40",  # transaction rollback: serialization failure, deadlock (but 40002)
        "53",  # insufficient resources: disk full, out of memory, too many connections
        "55",  # object not in prerequisite state: a lock not available (but 55000, 55P02/4)
        "57",  # operator intervention: cancelled (statement_timeout), shutdown, restarting
        "58",  # system error: I/O
        "F0",  # the server's configuration file
    }
)
_TRANSIENT_CODES = frozenset(
    {
        "25006",  # read-only transaction: a standby, until the failover ends
        "25P03",  # idle_in_transaction_session_timeout ended the session
        "25P04",  # transaction_timeout ended the session
    }
)
_PERMANENT_CODES = frozenset(
    {
        "40002",  # transaction integrity constraint violation
        "53400",  # configuration limit exceeded (temp_file_limit): the statement is too large
        "55000",  # object not in prerequisite state (a table without replica identity, ...)
        "55P02",  # a setting that cannot be changed now
        "55P04",  # an enum value added in the same transaction
    }
)


def transient(exc: BaseException) -> bool:
    """Might the same statement pass if tried again (see the tables above)?"""
    if isinstance(exc, psycopg.InterfaceError):
        return "closed" in str(exc)
    if not isinstance(exc, psycopg.Error):
        return False
    state = exc.sqlstate
    if not state:
        return isinstance(exc, psycopg.OperationalError)
    if state in _TRANSIENT_CODES:
        return True
    return state[:2] in _TRANSIENT_CLASSES and state not in _PERMANENT_CODES


_INDEX = re.compile(r'for index "([^"]*)"')


def _too_large(exc: psycopg.Error, doing: str) -> ValidationError:
    """A value too large for PostgreSQL (SQLSTATE 54000). Indexed fields are
    indexed by a prefix of bounded size (see _postgres_prefix), so an index
    row too large is an id's, in the primary key, unless the index PostgreSQL
    names is another (one added to the table by hand)."""
    problem = str(exc).strip()
    index = _INDEX.search(problem)
    if "index row" not in problem or (index is not None and not index[1].endswith("_pkey")):
        return ValidationError(f"PostgreSQL cannot hold a value while {doing}: {problem}")
    return ValidationError(
        f"PostgreSQL cannot hold an id while {doing} ({problem}): an id must fit an entry "
        "of the primary key's index, at most 2,704 bytes once compressed; use a shorter "
        "id (a hash of a long natural key, say)"
    )


def translate(exc: BaseException, doing: str) -> StatekeepError:
    """A driver or pool exception as one of statekeep's."""
    if isinstance(exc, PoolTimeout):
        return TransientBackendError(f"PostgreSQL: no connection while {doing}: {exc}")
    if isinstance(exc, PoolClosed):
        return BackendError(f"PostgreSQL: the store's connections are closed ({doing})")
    if isinstance(exc, psycopg.InterfaceError) and "closed" in str(exc):
        return TransientBackendError(f"PostgreSQL connection lost while {doing}: {exc}")
    if transient(exc):
        return TransientBackendError(f"PostgreSQL failed while {doing}: {exc}".strip())
    if isinstance(exc, psycopg.errors.ProgramLimitExceeded) and exc.sqlstate == "54000":
        return _too_large(exc, doing)
    if isinstance(exc, (psycopg.DataError, UnicodeError)):
        return ValidationError(f"PostgreSQL refused a value while {doing}: {exc}")
    if isinstance(exc, psycopg.IntegrityError):  # a constraint added to the table by hand
        return ValidationError(f"PostgreSQL refused a row while {doing}: {exc}".strip())
    return BackendError(f"PostgreSQL failed while {doing}: {exc}".strip())


def lost(exc: BaseException) -> bool:
    """Did the connection itself fail (so nothing ran, or nothing can be known)?"""
    if isinstance(exc, psycopg.InterfaceError):
        return True
    return (
        isinstance(exc, psycopg.OperationalError)
        and transient(exc)
        and not isinstance(exc, (psycopg.errors.QueryCanceled, psycopg.errors.LockNotAvailable))
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
