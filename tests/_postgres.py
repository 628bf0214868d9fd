"""The PostgreSQL server the tests use, and a schema of their own on it.

STATEKEEP_TEST_POSTGRES_URL points the tests at a server (default: the local
one, postgresql://postgres@127.0.0.1:5432/test). If it cannot be reached and
this machine has the cluster commands, the server is started. Under CI
(CI=true) a test that needs PostgreSQL fails when no server can be reached;
elsewhere it is skipped, with a message naming the variable.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import time
import uuid
from urllib.parse import urlsplit

import pytest

VARIABLE = "STATEKEEP_TEST_POSTGRES_URL"
DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"
START = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
STOP = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main stop -m fast"


def configured_url() -> str:
    return os.environ.get(VARIABLE, DEFAULT)


def reachable(url: str, timeout: float = 3.0) -> str | None:
    """None if a connection works, else why not."""
    try:
        import psycopg
    except ImportError as exc:
        return f"psycopg is not installed ({exc})"
    try:
        with psycopg.connect(url, connect_timeout=max(1, int(timeout))) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return str(exc).strip() or type(exc).__name__
    return None


def local_server(url: str) -> bool:
    host = urlsplit(url).hostname
    return (
        host in (None, "", "127.0.0.1", "localhost", "::1")
        and shutil.which("pg_ctlcluster") is not None
    )


def start_local_server() -> None:
    """Starts this machine's cluster (the command DEVELOPERS.md gives)."""
    subprocess.run(START, shell=True, check=False, capture_output=True, timeout=60)


def wait_until_reachable(url: str, seconds: float) -> str | None:
    deadline = time.monotonic() + seconds
    while True:
        problem = reachable(url)
        if problem is None or time.monotonic() > deadline:
            return problem
        time.sleep(0.2)


@functools.cache
def _server() -> tuple[str, str | None]:
    url = configured_url()
    problem = reachable(url)
    if problem is not None and local_server(url):
        start_local_server()
        problem = wait_until_reachable(url, 30)
    return url, problem


def server_url() -> str:
    """The server's URL; skips the test (fails it under CI) if none can be reached."""
    url, problem = _server()
    if problem is not None:
        message = (
            f"PostgreSQL at {url} cannot be reached ({problem}); "
            f"set {VARIABLE} to a server's URL to run the PostgreSQL tests"
        )
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return url


def with_query(url: str, **params: str) -> str:
    separator = "&" if "?" in url else "?"
    return url + separator + "&".join(f"{key}={value}" for key, value in params.items())


# Commits in the tests need not wait for the disk: what they check does not
# depend on it, and a commit's fsync would take most of the suite's time.
FAST_COMMITS = "options=-c%20synchronous_commit%3Doff"


def fresh_schema() -> str:
    return f"sk_test_{uuid.uuid4().hex[:16]}"


def drop_schema(url: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
