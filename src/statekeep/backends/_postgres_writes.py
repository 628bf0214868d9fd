"""Writing rows to PostgreSQL: statements that check the version themselves.

`put_one` inserts a new row (ON CONFLICT DO NOTHING) or updates one (WHERE
version = v - 1): a statement that changed no row is a conflict, whose detail
says what is stored. `update_many` locks the rows in id order and checks
every expected version first, then updates them in one statement. A COPY of
new rows (see _postgres_copy) that met a taken id names it in its error:
`taken_id` reads it.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg

from ..errors import BackendError, ConflictError
from ._postgres_rows import columns
from ._postgres_sql import Statements
from .base import CollectionSpec, Row, conflict_detail

_TAKEN = re.compile(r"^Key \(id\)=\((.*)\) already exists", re.DOTALL)


def put_one(
    conn: psycopg.Connection[Any], statements: Statements, spec: CollectionSpec, row: Row
) -> None:
    if row[1] == 1:
        if conn.execute(statements.insert, row).rowcount == 1:
            return
    elif conn.execute(statements.update, (*row[1:], row[0], row[1] - 1)).rowcount == 1:
        return
    stored = stored_version(conn, statements, row[0])
    raise ConflictError(spec.name, row[0], conflict_detail(stored, row[1] - 1))


def stored_version(conn: psycopg.Connection[Any], statements: Statements, id: str) -> int:
    """The version stored under id (0: none)."""
    found = dict(conn.execute(statements.versions, ([id],)).fetchall())
    return int(found.get(id, 0))


def update_many(
    conn: psycopg.Connection[Any], statements: Statements, spec: CollectionSpec, rows: list[Row]
) -> None:
    """Locks the rows and checks every expected version first, then updates in one go."""
    stored = dict(conn.execute(statements.lock_versions, ([row[0] for row in rows],)).fetchall())
    for row in rows:
        version = stored.get(row[0], 0)
        if version != row[1] - 1:
            raise ConflictError(spec.name, row[0], conflict_detail(version, row[1] - 1))
    updated = conn.execute(statements.update_many, columns(rows)).rowcount
    if updated != len(rows):
        raise BackendError(f"{spec.name}: updated {updated} of {len(rows)} locked rows")


def taken_id(exc: psycopg.errors.UniqueViolation, first_id: str | None) -> str:
    """The id a failed COPY found taken (else the first id it sent)."""
    found = _TAKEN.search(exc.diag.message_detail or "")
    return found.group(1) if found else (first_id or "")
