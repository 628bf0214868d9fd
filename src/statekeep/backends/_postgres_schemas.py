"""A PostgreSQL schema as a whole: is there a store in it (statekeep inspect
must not make one), and dropping it (the pytest plugin's per-test schemas)."""

from __future__ import annotations

from urllib.parse import parse_qsl

import psycopg
from psycopg.conninfo import make_conninfo

from ._layout import REGISTRY
from ._postgres_sql import quote


def drop_schema(server: str, schema: str) -> None:
    """DROP SCHEMA ... CASCADE on the server (a libpq URL or conninfo), if it exists."""
    with psycopg.connect(server, autocommit=True, connect_timeout=10) as conn:
        conn.execute("SET lock_timeout = '30s'")
        conn.execute(f"DROP SCHEMA IF EXISTS {quote(schema)} CASCADE")


# statekeep's own options in a PostgreSQL URL (the rest are libpq's)
_OURS = ("schema", "timeout", "connect_timeout", "statement_timeout", "pool_min", "pool_max")


def store_exists(url: str) -> bool:
    """Does the URL's schema hold a statekeep store (its outbox or column
    registry)? True when the server cannot be asked: opening says why."""
    base, _, query = url.partition("?")
    options = dict(parse_qsl(query, keep_blank_values=True))
    schema = options.get("schema", "public")
    libpq = {key: value for key, value in options.items() if key not in _OURS}
    try:
        server = make_conninfo(base, **libpq)
        with psycopg.connect(server, autocommit=True, connect_timeout=10) as conn:
            row = conn.execute(
                "SELECT to_regclass(%s) IS NOT NULL OR to_regclass(%s) IS NOT NULL",
                (f"{quote(schema)}.statekeep_outbox", f"{quote(schema)}.{REGISTRY}"),
            ).fetchone()
    except psycopg.Error:
        return True
    return bool(row and row[0])
