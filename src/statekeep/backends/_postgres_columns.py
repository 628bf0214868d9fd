"""The indexed columns of PostgreSQL tables: made, filled and indexed so that
every registered column is right for every row (the registry, the stamps and
the fill trigger are described in _layout).

A small table gets a new column in one transaction. A large one gets it
registered in a short transaction, then filled a batch of rows per
transaction (writers wait for one batch at most) and indexed concurrently;
until then the column is not ready and no reader uses it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import psycopg

from ..errors import TransientBackendError
from ..flow import Retry
from . import _layout as layout
from . import _postgres_prefix as keys
from . import _postgres_sql as pgsql
from .base import CollectionSpec, Index

FILL_ROWS = 20_000  # rows per transaction when a new column is filled
SMALL = 50_000  # rows: a table this small gets a new column in one transaction

Layout = tuple[bool, bool]  # an index: (valid, of an expression)


class Columns:
    """The column work of one schema's tables; every method runs on a connection it is given."""

    def __init__(self, schema: str) -> None:
        self.schema = schema

    def _existing(self, conn: psycopg.Connection[Any], spec: CollectionSpec) -> set[str]:
        table = f"{pgsql.quote(self.schema)}.{pgsql.quote(spec.name)}"
        return {
            name
            for (name,) in conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) "
                "AND attnum > 0 AND NOT attisdropped",
                (table,),
            )
        }

    def _plan(self, conn: psycopg.Connection[Any], spec: CollectionSpec) -> layout.Plan:
        rows = conn.execute(
            f"SELECT name, kind, dflt, ready FROM {pgsql.quote(self.schema)}.{layout.REGISTRY} "
            "WHERE collection = %s",
            (spec.name,),
        ).fetchall()
        return layout.plan(spec.indexes, layout.registered(rows), self._existing(conn, spec))

    def state(self, conn: psycopg.Connection[Any], spec: CollectionSpec) -> tuple[bool, bool]:
        """(the table is missing, a column is to add, rebuild, fill or index)."""
        columns = self._existing(conn, spec)
        if not columns:
            return True, True
        if layout.STAMP not in columns or self._plan(conn, spec).needed:
            return False, True
        found = self._indexes(conn, spec)
        return False, any(
            found.get(pgsql.index_name(spec, index)) != (True, keys.prefixed(index.kind))
            or pgsql.replacement_name(spec, index) in found
            for index in spec.indexes
        )

    def _indexes(self, conn: psycopg.Connection[Any], spec: CollectionSpec) -> dict[str, Layout]:
        """The table's indexes by name: whether each is valid and of an expression."""
        table = f"{pgsql.quote(self.schema)}.{pgsql.quote(spec.name)}"
        rows = conn.execute(
            "SELECT c.relname, i.indisvalid, i.indexprs IS NOT NULL FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = to_regclass(%s)",
            (table,),
        )
        return {name: (valid, expression) for name, valid, expression in rows}

    def build(self, conn: psycopg.Connection[Any], spec: CollectionSpec) -> bool:
        """Makes the table, and the columns of spec that are new, retyped or of
        unknown freshness (see _layout). A small table is filled and indexed
        here, in this transaction; for a large one (the result is True) the
        columns are only registered here, in a short transaction, and _fill
        fills them afterwards, in batches."""
        key = f"statekeep:{self.schema}.{spec.name}"
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (key,))
        table = f"{pgsql.quote(self.schema)}.{pgsql.quote(spec.name)}"
        conn.execute(pgsql.create_table(self.schema, spec), ())
        columns = self._existing(conn, spec)
        if layout.STAMP not in columns:  # a table made before stamps
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {layout.STAMP} integer")
        plan = self._plan(conn, spec)
        small = (
            _scalar(conn, f"SELECT count(*) FROM (SELECT FROM {table} LIMIT %s) AS s", (SMALL,))
            < SMALL
        )
        for index in plan.build:
            for statement in pgsql.build_column(self.schema, spec, index, index.name in columns):
                conn.execute(statement, ())
            conn.execute(
                f"INSERT INTO {pgsql.quote(self.schema)}.{layout.REGISTRY} "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (collection, name) "
                "DO UPDATE SET kind = excluded.kind, dflt = excluded.dflt, ready = excluded.ready",
                (spec.name, index.name, index.kind, layout.default_json(index), small),
            )
        if plan.build:
            for statement in pgsql.fill_triggers(self.schema, spec.name, plan.columns):
                conn.execute(statement, ())  # with parameters: literals escape %
        if not small:
            return True
        if plan.needed:
            self._fill_rows(conn, spec, plan, "", None)
            self._ready(conn, spec, plan.columns)
        self._index(conn, spec, concurrently=False)
        return False

    def _fill_rows(
        self,
        conn: psycopg.Connection[Any],
        spec: CollectionSpec,
        plan: layout.Plan,
        after: str,
        rows: int | None,
    ) -> None:
        """Fills the registered columns of the rows with ids after `after`, all
        at once (rows None) or a statement of that many rows at a time (each
        its own transaction on an autocommit connection)."""
        fill = pgsql.fill_range(self.schema, spec.name, plan.columns, rows is not None)
        if rows is None:
            conn.execute(fill, (after,), prepare=False)
            return
        # rows stored after the columns were registered were filled as they
        # were written (by their writer or by the trigger): up to the last id
        # there is now, then, not after a writer that keeps adding ids
        table = f"{pgsql.quote(self.schema)}.{pgsql.quote(spec.name)}"
        final = _scalar(conn, f"SELECT max(id) FROM {table}", ())
        end = pgsql.batch_end(self.schema, spec.name)
        while final is not None and after < final:
            last = _scalar(conn, end, (after, rows))
            if last is None:
                break
            conn.execute(fill, (after, last), prepare=False)
            after = last

    def _ready(
        self, conn: psycopg.Connection[Any], spec: CollectionSpec, filled: Sequence[Index]
    ) -> None:
        """Marks the columns filled ready: those registered as they were when the
        fill began. One another process registered (or rebuilt) meanwhile is
        left for its own fill: rows passed before it existed are not filled."""
        for index in filled:
            conn.execute(
                f"UPDATE {pgsql.quote(self.schema)}.{layout.REGISTRY} SET ready = true "
                "WHERE collection = %s AND name = %s AND kind = %s AND dflt = %s AND NOT ready",
                (spec.name, index.name, index.kind, layout.default_json(index)),
            )

    def fill(self, conn: psycopg.Connection[Any], spec: CollectionSpec, concurrently: bool) -> None:
        """Fills the registered columns of every row stamped otherwise, a batch
        of rows per transaction (writers wait at most for one batch), then
        indexes spec's columns and marks them ready. One process fills a
        collection at a time; the others wait for it, then find little to do."""
        key = f"statekeep-fill:{self.schema}.{spec.name}"
        if concurrently:  # a lock of the session: the fill spans transactions
            while not _scalar(conn, "SELECT pg_try_advisory_lock(hashtext(%s))", (key,)):
                time.sleep(0.05)
        else:
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (key,))
        try:
            plan = self._plan(conn, spec)
            if plan.needed:
                self._fill_rows(conn, spec, plan, "", FILL_ROWS)
            if concurrently:  # waits for older transactions, then for none
                conn.execute("SET lock_timeout = 0")
                conn.execute("SET statement_timeout = 0")
            self._index(conn, spec, concurrently)
            self._ready(conn, spec, plan.columns)
        finally:
            if concurrently:
                conn.execute("RESET lock_timeout")
                conn.execute("RESET statement_timeout")
                conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (key,))

    def _index(
        self, conn: psycopg.Connection[Any], spec: CollectionSpec, concurrently: bool
    ) -> None:
        """Makes each index of spec valid and of this version's layout. An index
        of an earlier layout (a text column indexed whole, before prefixes; see
        _postgres_prefix) is replaced: in this transaction, or on a large table
        built concurrently under another name, the old one dropped, the new one
        renamed. Cut short anywhere, the next open finishes the work."""
        found = self._indexes(conn, spec)
        for index in spec.indexes:
            named = pgsql.index_name(spec, index)
            replacement = pgsql.replacement_name(spec, index)
            layout: Layout = (True, keys.prefixed(index.kind))
            if found.get(named) == layout:  # (CREATE INDEX IF NOT EXISTS would lock the table)
                self._drop(conn, replacement, found, concurrently)  # left by a rename cut short
                continue
            if named in found and not (concurrently and found[named][0]):
                # a concurrent build cut short; or one of an earlier layout, replaced here
                self._drop(conn, named, found, concurrently=False)
            if found.get(replacement) != layout:
                self._drop(conn, replacement, found, concurrently)
                if named not in found:
                    conn.execute(pgsql.create_index(self.schema, spec, index, concurrently))
                    continue
                # valid, of an earlier layout, on a table too large to lock while indexing
                conn.execute(
                    pgsql.create_index(self.schema, spec, index, concurrently, replacement)
                )
            self._drop(conn, named, found, concurrently)
            conn.execute(
                f"ALTER INDEX {pgsql.quote(self.schema)}.{pgsql.quote(replacement)} "
                f"RENAME TO {pgsql.quote(named)}"
            )

    def _drop(
        self,
        conn: psycopg.Connection[Any],
        named: str,
        found: dict[str, Layout],
        concurrently: bool,
    ) -> None:
        if named in found:
            how = "CONCURRENTLY " if concurrently else ""
            index = f"{pgsql.quote(self.schema)}.{pgsql.quote(named)}"
            conn.execute(f"DROP INDEX {how}IF EXISTS {index}")
            del found[named]


def _scalar(conn: psycopg.Connection[Any], sql: str, params: tuple[Any, ...]) -> Any:
    row = conn.execute(sql, params, prepare=False).fetchone()
    return None if row is None else row[0]


_log = logging.getLogger("statekeep.postgresql")


def _deadlock(exc: BaseException) -> bool:
    return isinstance(exc, TransientBackendError) and isinstance(
        exc.__cause__, psycopg.errors.DeadlockDetected
    )


def deadlock_retry(collection: str) -> Retry:
    """Three tries of adding a collection's columns, again after a deadlock
    (each logged): see PostgresBackend._build_and_fill."""

    def again(exc: BaseException, attempt: int) -> None:
        _log.info(
            "statekeep: %s: adding columns met a deadlock; again",
            collection,
            extra={
                "statekeep": {
                    "event": "postgresql.columns_deadlock",
                    "collection": collection,
                    "attempt": attempt,
                    "error_type": type(exc).__name__,
                    "error": str(exc),
                }
            },
        )

    return Retry(attempts=3, backoff=None, when=_deadlock, on_retry=again)
