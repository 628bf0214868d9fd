"""The planner knows a table right after a bulk load (see backends/_postgres_analyze.py)."""

from __future__ import annotations

from typing import Annotated

import psycopg
import pytest

import statekeep
from statekeep import Entity, Indexed
from statekeep.backends.base import Query


class Marker(Entity, collection="pg_marker"):
    kind: Annotated[str, Indexed()]
    n: int = 0


# the smallest load at which PostgreSQL, without statistics, plans a find on
# an indexed field as a walk of the primary key (measured: 2,000 rows do not show it)
ROWS = 10_000


def markers(count: int, start: int = 0) -> list[Marker]:
    kinds = max(1, count // 10)
    return [Marker(id=f"m{i:07}", kind=f"k{i % kinds}", n=i) for i in range(start, start + count)]


def plan(store: statekeep.Store) -> str:
    """The plan of find(Marker, kind="k7") as find runs it: through a cursor,
    which PostgreSQL plans for its first rows (cursor_tuple_fraction)."""
    info = Marker.__statekeep__
    query = Query(info.filters([Marker.f.kind == "k7"], {}))
    text, params = store.backend._select_sql(info.spec, query)  # type: ignore[attr-defined]
    with store.backend._connection("a test") as conn, conn.transaction():  # type: ignore[attr-defined]
        rows = conn.execute(f"EXPLAIN DECLARE explained CURSOR FOR {text}", params)
        return "\n".join(str(row[0]) for row in rows)


def analyzed(server: str, url: str) -> int:
    """How many times ANALYZE ran on the table (not counting autovacuum's)."""
    schema = url.split("schema=")[1].split("&")[0]
    with psycopg.connect(server, connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT analyze_count FROM pg_stat_user_tables "
            "WHERE schemaname = %s AND relname = 'pg_marker'",
            (schema,),
        ).fetchone()
    return int(row[0]) if row else 0


@pytest.mark.parametrize("atomic", [True, False], ids=["one transaction", "a transaction a chunk"])
def test_find_uses_the_index_right_after_a_bulk_load(
    server: str, pg_url: str, atomic: bool
) -> None:
    with statekeep.open(pg_url) as store:
        store.save_many(markers(ROWS), atomic=atomic, chunk_size=ROWS // 4)
        found = plan(store)
        assert "pg_marker__kind" in found and "pkey" not in found, found
        assert [m.n for m in store.find(Marker, kind="k7")] == list(range(7, ROWS, ROWS // 10))


def test_a_bulk_load_inside_a_transaction_is_analyzed_after_its_commit(
    server: str, pg_url: str
) -> None:
    with statekeep.open(pg_url) as store:
        with store.transaction():
            store.save_many(markers(ROWS))
            assert analyzed(server, pg_url) == 0  # not inside the caller's transaction
        assert analyzed(server, pg_url) == 1
        assert "pg_marker__kind" in plan(store)


def test_writes_far_smaller_than_the_table_do_not_analyze(server: str, pg_url: str) -> None:
    with statekeep.open(pg_url) as store:
        store.save_many(markers(ROWS))
        assert analyzed(server, pg_url) == 1
        for start in range(ROWS, ROWS + 6_000, 2_000):  # 6,000 rows more: under the table's size
            store.save_many(markers(2_000, start=start))
        store.save(Marker(kind="one more"))
        assert analyzed(server, pg_url) == 1
        store.save_many(markers(ROWS, start=2 * ROWS))  # now the table has doubled
        assert analyzed(server, pg_url) == 2


def test_small_tables_are_left_to_autovacuum(server: str, pg_url: str) -> None:
    with statekeep.open(pg_url) as store:
        for start in range(0, 4_000, 1_000):
            store.save_many(markers(1_000, start=start))
        assert analyzed(server, pg_url) == 0
