"""Two things the SQLite backend does to a connection: turn on WAL (retrying
while another process creates the same file), and look rows up by id a
chunk of ids at a time."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from ..errors import TransientBackendError
from ._sqlite_errors import translate
from ._sqlite_sql import quote

_CHUNK = 500  # ids per IN (...) lookup


def wal(conn: sqlite3.Connection, timeout: float) -> None:
    """Turns on WAL. Another process opening the same new file at this moment
    can make the pragma fail with "database is locked" at once, without
    waiting for the busy timeout: it is tried again until the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.Error as exc:
            if not isinstance(translate(exc), TransientBackendError):
                raise
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.005)


def by_id(conn: sqlite3.Connection, column: str, table: str, ids: list[str]) -> dict[str, Any]:
    """{id: column} of the rows among ids, looked up a chunk of ids at a time."""
    found: dict[str, Any] = {}
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        marks = ", ".join("?" * len(chunk))
        sql = f"SELECT id, {column} FROM {quote(table)} WHERE id IN ({marks})"
        found.update(conn.execute(sql, chunk))
    return found
