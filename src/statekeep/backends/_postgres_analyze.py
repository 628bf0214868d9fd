"""Planner statistics after a bulk load (PostgreSQL).

PostgreSQL plans with the statistics ANALYZE gathers. Autovacuum gathers them
once a table has changed by about 10%, up to a minute later; until then a
table just filled by save_many has none, and a `find` on an indexed field,
read through a cursor in id order, walks the primary key and filters every
row instead of using the field's index. Measured with
`python -m benchmarks.analyze_after_load` (find of 10 rows by an indexed
field, best of 20, on a busy 2-core machine): 27-60 ms at 300k rows before
ANALYZE, 0.33 ms after; already at 10k rows the planner picks the id scan.

So the commit of a transaction that wrote many rows to a table analyzes it:
after the commit, on a pool connection (inside the transaction ANALYZE would
sample rows others cannot see yet and hold its lock until the end), when the
rows this process has committed to the table since it last analyzed it are at
least MIN_ROWS and at least the table's row count as last analyzed, so
the table has about doubled or been rewritten. That is a handful of ANALYZEs
for a load of any size, even one made of many transactions
(`save_many(atomic=False)`), and none for steady traffic, which autovacuum
keeps up with. An ANALYZE samples at most 30,000 rows: about 10 ms at 10k rows
and 100-115 ms at 300k, against 1.5-1.9 s for the 300k-row save_many; with
atomic=False (10k-row chunks) 5 ANALYZEs, 0.3 s of a 3 s load. A table with an
indexed text is analyzed whole (see after_commit): its index is of an expression.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any

from ..errors import StatekeepError
from . import _postgres_prefix as keys
from ._postgres_sql import quote
from .base import CollectionSpec

_log = logging.getLogger("statekeep.postgresql")

MIN_ROWS = 5_000


class Analyzer:
    """Counts the rows committed to each table, and says when to analyze it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._written: dict[str, int] = {}  # rows committed since the last ANALYZE, by table
        self._sizes: dict[str, float] = {}  # rows at the last ANALYZE (pg_class.reltuples)

    def committed(self, written: dict[str, int]) -> list[tuple[str, int]]:
        """Adds a commit's rows; returns the tables that may need an ANALYZE
        (and their counts, which the caller now holds: see `run`)."""
        due = []
        with self._lock:
            for table, rows in written.items():
                total = self._written.get(table, 0) + rows
                size = self._sizes.get(table)
                if total >= MIN_ROWS and (size is None or total >= size):
                    self._written[table] = 0
                    due.append((table, total))
                else:
                    self._written[table] = total
        return due

    def after_commit(
        self,
        written: dict[str, int],
        schema: str,
        specs: Mapping[str, CollectionSpec],
        connection: Callable[[str], AbstractContextManager[Any]],
    ) -> None:
        """Analyzes the tables a bulk load has changed, each on a connection
        of the pool (the commit stands if it fails: autovacuum does it later)."""
        for table, rows in self.committed(written):
            qualified = f"{quote(schema)}.{quote(table)}"
            spec = specs.get(table)
            if spec is None or not spec.indexes:
                continue  # no column the planner could choose an index of
            # the indexed columns' statistics only: those of the bodies (jsonb,
            # which ANALYZE reads whole) took most of its time, and no query
            # plan depends on them. But the index of a text is of an expression
            # (its prefix: see _postgres_prefix), whose statistics PostgreSQL
            # gathers only when no columns are named; without them a find on
            # the field walks the primary key again. Measured at 60k rows of
            # 4 KB bodies: 87 ms (median) the columns, 147 ms the whole table.
            columns = ""
            if not any(keys.prefixed(i.kind) for i in spec.indexes):
                columns = ", ".join(quote(c) for c in ("id", *(i.name for i in spec.indexes)))
            try:
                with connection(f"analyzing {table}") as conn:
                    self.run(conn, table, qualified, rows, columns)
            except StatekeepError as exc:
                _log.warning(
                    "statekeep: ANALYZE %s after a bulk load failed: %s",
                    qualified,
                    exc,
                    extra={
                        "statekeep": {
                            "event": "postgresql.analyze_failed",
                            "collection": table,
                            "table": qualified,
                            "rows": rows,
                            "error_type": type(exc).__name__,
                            "error": str(exc),
                        }
                    },
                )

    def run(self, conn: Any, table: str, qualified: str, rows: int, columns: str = "") -> bool:
        """Analyzes the table (those of its columns, if given: `"a", "b"`) if
        rows are at least its size; True if it did."""
        size = self._sizes.get(table)
        if size is None:
            size = _reltuples(conn, qualified)
        if rows < size:
            with self._lock:
                self._sizes[table] = size
                self._written[table] = self._written.get(table, 0) + rows
            return False
        conn.execute(f"ANALYZE {qualified} ({columns})" if columns else f"ANALYZE {qualified}")
        size = _reltuples(conn, qualified)
        with self._lock:
            self._sizes[table] = size
        return True


def _reltuples(conn: Any, qualified: str) -> float:
    """The row count the planner has (-1, read as 0, if never analyzed)."""
    row = conn.execute(
        "SELECT reltuples FROM pg_class WHERE oid = %s::regclass", (qualified,)
    ).fetchone()
    return max(0.0, float(row[0])) if row else 0.0
