"""The PostgreSQL server the benchmarks use, and a fresh schema on it per run.

STATEKEEP_BENCH_POSTGRES_URL names the server (default: the local one,
postgresql://postgres@127.0.0.1:5432/test). A run makes a schema of its own
(`sk_bench_<random>`), puts every table of every contender in it, and drops
it at the end. When no server answers, the PostgreSQL benchmarks report one
row saying so instead of their figures.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

VARIABLE = "STATEKEEP_BENCH_POSTGRES_URL"
DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"


def configured_url() -> str:
    return os.environ.get(VARIABLE, DEFAULT)


def server_url(url: str) -> str:
    """The URL without its query string: what psycopg and SQLAlchemy connect to."""
    return url.split("?", 1)[0]


def store_url(url: str, schema: str) -> str:
    """The statekeep URL for a schema, keeping any other options the URL has."""
    base, _, query = url.partition("?")
    options = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != "schema"]
    return f"{base}?{urlencode([*options, ('schema', schema)])}"


def where(url: str) -> str:
    """host:port/database, for notes (no user name or password)."""
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path or '/'}"


def connect(url: str, **kwargs: Any) -> Any:
    import psycopg

    return psycopg.connect(server_url(url), connect_timeout=3, **kwargs)


def problem(url: str) -> str | None:
    """None if the server answers, else why not (one line)."""
    try:
        import psycopg
    except ImportError as exc:
        return f"psycopg is not installed ({exc})"
    try:
        with connect(url) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return (str(exc).strip() or type(exc).__name__).splitlines()[0]
    return None


def server_version(url: str) -> str:
    """For the machine table: the server's version and where it runs."""
    if problem(url) is not None:
        return f"not reachable at {where(url)} (PostgreSQL rows skipped)"
    with connect(url) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
        fsync, commit = (
            conn.execute(f"SHOW {name}").fetchone()[0] for name in ("fsync", "synchronous_commit")
        )
    return f"{version.split()[0]} at {where(url)} (fsync={fsync}, synchronous_commit={commit})"


@contextlib.contextmanager
def fresh_schema(url: str) -> Iterator[str]:
    """A new, empty schema, dropped (with everything in it) afterwards."""
    schema = f"sk_bench_{uuid.uuid4().hex[:12]}"
    with connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield schema
    finally:
        with connect(url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def settle(conn: Any) -> None:
    """A checkpoint before a timed write, so that no contender pays for the
    one before it (needs superuser or pg_checkpoint; skipped without)."""
    import psycopg

    with contextlib.suppress(psycopg.Error):
        conn.execute("CHECKPOINT")
