"""The PostgreSQL backend's options: what a URL may say, and what it makes of it.

`OPTIONS` parses each option given as text (in a URL's query string);
`connection_settings` checks them together and makes psycopg's connection
keyword arguments (autocommit; timeouts as libpq and server settings);
`location` is where files of the database live beside it (the write-behind
journal), since a server database has no path of its own.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .._numbers import is_whole
from ..errors import ConfigurationError
from ._parse import seconds

# libpq connection parameters a URL may carry besides statekeep's own options
_LIBPQ = (
    "application_name",
    "channel_binding",
    "gssencmode",
    "keepalives",
    "keepalives_count",
    "keepalives_idle",
    "keepalives_interval",
    "options",
    "passfile",
    "password",
    "sslcert",
    "sslcrl",
    "sslkey",
    "sslmode",
    "sslrootcert",
    "target_session_attrs",
)


def _size(text: str) -> int:
    size = int(text)
    if not is_whole(size, 0, 1000):
        raise ValueError(f"pool sizes are between 0 and 1000, not {text}")
    return size


OPTIONS: dict[str, Callable[[str], Any]] = {
    "schema": str,
    "timeout": seconds,
    "connect_timeout": seconds,
    "statement_timeout": seconds,
    "pool_min": _size,
    "pool_max": _size,
    **{name: str for name in _LIBPQ},
}
SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def connection_settings(
    schema: str,
    timeout: float,
    connect_timeout: float,
    statement_timeout: float,
    pool_min: int,
    pool_max: int,
    libpq: dict[str, str],
) -> dict[str, Any]:
    """psycopg's keyword arguments for each connection; ConfigurationError
    for options that cannot go together. Takes options and application_name
    out of libpq (the other libpq parameters go as they are)."""
    if not SCHEMA_NAME.match(schema):
        raise ConfigurationError(
            f"schema must be lower-case letters, digits and _ (at most 63), not {schema!r}"
        )
    if schema.startswith("pg_") or schema == "information_schema":
        raise ConfigurationError(f"schema {schema!r} is PostgreSQL's own; choose another")
    if connect_timeout < 1:
        raise ConfigurationError(
            f"connect_timeout must be at least 1 second (libpq counts whole seconds, "
            f"and 0 would wait for ever), not {connect_timeout}"
        )
    if pool_max < max(1, pool_min):
        raise ConfigurationError(f"pool_max ({pool_max}) must be >= pool_min and >= 1")
    settings = (
        f"-c statement_timeout={int(statement_timeout * 1000)} "
        f"-c lock_timeout={int(timeout * 1000)}"
    )
    extra_options = libpq.pop("options", "")
    kwargs: dict[str, Any] = {
        "autocommit": True,
        "connect_timeout": max(1, round(connect_timeout)),
        "options": f"{settings} {extra_options}".strip(),
        "application_name": libpq.pop("application_name", "statekeep"),
        **libpq,
    }
    return kwargs


def location(url: str, schema: str) -> str:
    """Where files of the database and schema live (see _state_dir)."""
    parts = urlsplit(url)
    database = unquote(parts.path.lstrip("/")) or "postgres"
    return str(
        _state_dir()
        / f"postgresql-{parts.hostname or 'local'}-{parts.port or 5432}-{database}-{schema}"
    )


def _state_dir() -> Path:
    """Where files of a database without a path of its own live (the write-behind journal)."""
    explicit = os.environ.get("STATEKEEP_STATE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return Path(base) / "statekeep"
