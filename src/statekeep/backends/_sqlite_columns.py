"""The indexed columns of SQLite tables: made, filled and indexed so that
every registered column is right for every row (the registry, the stamps and
the fill triggers are described in _layout). SQLite has one writer at a time,
so a new column is made and filled in one transaction.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from ._layout import REGISTRY, STAMP, default_json, plan, registered, stamp
from ._sqlite_sql import COLUMN_TYPES, fill_triggers, filled, index_name, quote
from .base import CollectionSpec

_REGISTRY_TABLE = (
    f"CREATE TABLE IF NOT EXISTS {REGISTRY} (collection TEXT NOT NULL, name TEXT NOT NULL, "
    "kind TEXT NOT NULL, dflt TEXT NOT NULL, ready INTEGER NOT NULL, "
    "PRIMARY KEY (collection, name))"
)


def _registry(conn: sqlite3.Connection, collection: str) -> dict[str, Any]:
    try:
        rows = conn.execute(
            f"SELECT name, kind, dflt, ready FROM {REGISTRY} WHERE collection = ?", (collection,)
        ).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return {}
        raise
    return registered(rows)


def table_state(conn: sqlite3.Connection, spec: CollectionSpec) -> str:
    """missing, incomplete (a column to add, rebuild or index) or complete."""
    table = quote(spec.name)
    columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
    if not columns:
        return "missing"
    indexes = {row[1] for row in conn.execute(f"PRAGMA index_list({table})")}
    if STAMP not in columns or not all(
        index_name(spec, index) in indexes for index in spec.indexes
    ):
        return "incomplete"
    if spec.indexes and plan(spec.indexes, _registry(conn, spec.name), columns).needed:
        return "incomplete"
    return "complete"


def create_table(conn: sqlite3.Connection, spec: CollectionSpec) -> None:
    """Makes the table, and every indexed column of spec registered, filled
    from the bodies and indexed (see _layout): one transaction, which holds
    other writers up while it rewrites the table's rows."""
    table = quote(spec.name)
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {table} (id TEXT PRIMARY KEY NOT NULL, "
        f"version INTEGER NOT NULL, body TEXT NOT NULL, {STAMP} INTEGER)"
    )
    conn.execute(_REGISTRY_TABLE)
    columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
    if STAMP not in columns:  # a table made before stamps
        conn.execute(f"ALTER TABLE {table} ADD COLUMN {STAMP} INTEGER")
    layout = plan(spec.indexes, _registry(conn, spec.name), columns)
    if layout.needed:
        for statement in fill_triggers(spec.name, ()):  # a column a trigger uses cannot go
            conn.execute(statement)
        for index in layout.build:
            column = quote(index.name)
            conn.execute(f"DROP INDEX IF EXISTS {quote(index_name(spec, index))}")
            if index.name in columns:  # of another kind, or of unknown freshness
                conn.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {COLUMN_TYPES[index.kind]}")
            conn.execute(
                f"INSERT OR REPLACE INTO {REGISTRY} VALUES (?, ?, ?, ?, 1)",
                (spec.name, index.name, index.kind, default_json(index)),
            )
        for statement in fill_triggers(spec.name, layout.columns):
            conn.execute(statement)
        settings = ", ".join(f"{quote(i.name)} = {filled(i)}" for i in layout.columns)
        conn.execute(f"UPDATE {table} SET {settings}, {STAMP} = {stamp(layout.columns)}")
    for index in spec.indexes:
        named = quote(index_name(spec, index))
        conn.execute(f"CREATE INDEX IF NOT EXISTS {named} ON {table} ({quote(index.name)})")
