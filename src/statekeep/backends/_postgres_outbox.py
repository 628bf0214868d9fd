"""The PostgreSQL outbox: events in commit order without a lock among writers.

Positions come from a sequence as transactions add their events, so they are
in the order events were added, not committed: a transaction holding
position 5 may commit after one holding 6. A reader must not pass 6 while 5
may still appear. An exclusive lock from the insert to the commit would
settle that, but it makes every writer wait for every other (the commit of a
300k-row save_many held all the others up for seconds, or out: lock timeout).

Instead a transaction takes a *shared* advisory lock (writers never wait for
each other on it), then a block of BLOCK positions (one nextval of a
sequence that moves by BLOCK; more blocks for more events), so its events
are contiguous, and after them adds a marker row:

    upto  = its last event's position
    waits = the (virtual) transactions holding that lock right then, but itself

Any transaction holding a position <= upto took its block, and the lock
before it, before the marker: it had ended by then (and is visible to any
later snapshot), or it is in `waits`. A reader first finds the markers none
of whose `waits` holds the lock any more (those have ended), then, in a
later statement (a later snapshot, which sees what they committed), returns
the events up to the largest `upto` among them, in position order. Each
entity's events stay in version order: a transaction changing an entity
after another committed it takes its block after that one's.

What it costs: a marker row and two short statements per transaction with
events, and delivery of a transaction's events waits for the transactions
that were adding events at the same time to end. Markers are rows of the
outbox (`upto IS NOT NULL`) that reads leave out and pruning deletes with the
events. Writers of a version before this scheme add no markers: upgrade every
writer of a database together.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import psycopg

from . import _postgres_sql as pgsql

COLUMNS = "(position bigserial PRIMARY KEY, body text NOT NULL, upto bigint, waits text[])"
# From this many events COPY beats one INSERT ... unnest(): 100k events of
# ~200 bytes took 0.28 s by COPY, 2.5 s by unnest (PostgreSQL 15, local).
_COPY_FROM = 100
# Positions a transaction takes at once: its events are contiguous (up to
# BLOCK - 1 of them), and 2**63 / BLOCK is still 8.8e12 transactions.
BLOCK = 1 << 20
_LOCK_CLASS = 0x736B6F62  # "skob": the two-key advisory locks of outbox writers


class Outbox:
    def __init__(self, schema: str) -> None:
        self.table = f"{pgsql.quote(schema)}.statekeep_outbox"
        self._schema = schema
        self._channel_name = f"statekeep_{schema}"[:63]
        self._channel = pgsql.quote(self._channel_name)
        self._sequence = f"{pgsql.quote(schema)}.statekeep_outbox_position_seq"
        key = zlib.crc32(schema.encode()) & 0x7FFFFFFF
        holders = (
            "SELECT virtualtransaction FROM pg_locks WHERE locktype = 'advisory' "
            f"AND classid = {_LOCK_CLASS} AND objid = {key} AND objsubid = 2 AND granted"
        )
        # the lock first (a materialized CTE runs before the query that reads it)
        self._take = (
            "WITH locked AS MATERIALIZED "
            f"(SELECT pg_advisory_xact_lock_shared({_LOCK_CLASS}, {key})) "
            f"SELECT nextval({pgsql.literal(self._sequence)}::regclass) "
            "FROM locked, generate_series(1, %s) ORDER BY 1"
        )
        self._copy = f"COPY {self.table} (position, body) FROM STDIN"
        self._insert = (
            f"INSERT INTO {self.table} (position, body) "
            "SELECT p, b FROM unnest(%s::bigint[], %s::text[]) AS u(p, b)"
        )
        self._mark = (
            f"INSERT INTO {self.table} (position, body, upto, waits) "
            f"SELECT %s, '', %s, ARRAY({holders} AND pid <> pg_backend_pid()) "
            "FROM (SELECT pg_notify(%s, '')) AS sent"  # the NOTIFY goes out at commit
        )
        self._settled = (
            f"WITH held AS MATERIALIZED (SELECT coalesce(array_agg(virtualtransaction), "
            f"'{{}}') AS v FROM ({holders}) h) "
            f"SELECT coalesce(max(m.upto), 0) FROM {self.table} m, held "
            "WHERE m.upto IS NOT NULL AND m.position > %s "
            "AND NOT coalesce(m.waits && held.v, false)"
        )
        self._read = (
            f"SELECT position, body FROM {self.table} "
            "WHERE position > %s AND position <= %s AND upto IS NULL "
            "ORDER BY position LIMIT %s"
        )
        self._unsettled = (
            f"SELECT EXISTS (SELECT 1 FROM {self.table} WHERE position > %s AND upto IS NULL)"
        )
        self._prune = (
            f"WITH gone AS (DELETE FROM {self.table} WHERE position <= ("
            f"  SELECT position FROM {self.table} WHERE position <= %s AND upto IS NULL "
            "   ORDER BY position DESC LIMIT 1 OFFSET %s) RETURNING upto) "
            "SELECT count(*) FILTER (WHERE upto IS NULL) FROM gone"
        )

    @property
    def channel(self) -> str:
        return self._channel

    def setup(self, conn: psycopg.Connection[Any]) -> None:
        """Makes the table, or brings one of an earlier version up to date (in
        the caller's transaction, under its lock): its events, which have no
        marker, are covered by one, and its sequence moves by blocks."""
        conn.execute(f"CREATE TABLE IF NOT EXISTS {self.table} {COLUMNS}")
        row = conn.execute(
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = %s "
            "AND table_name = 'statekeep_outbox' AND column_name = 'waits'",
            (self._schema,),
        ).fetchone()
        if not row or not row[0]:
            conn.execute(
                f"ALTER TABLE {self.table} ADD COLUMN upto bigint, ADD COLUMN waits text[]"
            )
            conn.execute(
                f"INSERT INTO {self.table} (body, upto) "
                f"SELECT '', coalesce(max(position), 0) FROM {self.table}"
            )
        row = conn.execute(
            "SELECT increment_by FROM pg_sequences WHERE schemaname = %s "
            "AND sequencename = 'statekeep_outbox_position_seq'",
            (self._schema,),
        ).fetchone()
        if row is not None and row[0] != BLOCK:
            conn.execute(f"ALTER SEQUENCE {self._sequence} INCREMENT BY {BLOCK}")
        conn.execute(
            "CREATE INDEX IF NOT EXISTS statekeep_outbox_markers "
            f"ON {self.table} (position) WHERE upto IS NOT NULL"
        )

    def append(self, conn: psycopg.Connection[Any], bodies: Sequence[str]) -> None:
        blocks = -(-(len(bodies) + 1) // BLOCK)  # the events and their marker
        starts = [int(row[0]) for row in conn.execute(self._take, (blocks,))]
        positions = [starts[n // BLOCK] + n % BLOCK for n in range(len(bodies) + 1)]
        if len(bodies) >= _COPY_FROM:
            with conn.cursor().copy(self._copy) as copy:
                for position, body in zip(positions, bodies, strict=False):
                    copy.write_row((position, body))
        else:
            conn.execute(self._insert, (positions[:-1], list(bodies)))
        conn.execute(self._mark, (positions[-1], positions[-2], self._channel_name))

    def read(self, conn: psycopg.Connection[Any], after: int, limit: int) -> list[tuple[int, str]]:
        """Two statements, in this order: the second's snapshot sees what the
        transactions the first found ended have committed."""
        row = conn.execute(self._settled, (after,)).fetchone()
        upto = int(row[0]) if row else 0
        if upto <= after:
            return []
        rows: list[tuple[int, str]] = conn.execute(self._read, (after, upto, limit)).fetchall()
        return rows

    def unsettled(self, conn: psycopg.Connection[Any], after: int) -> bool:
        """Whether committed events after `after` wait for transactions still
        adding events (read returns them once those end)."""
        row = conn.execute(self._unsettled, (after,)).fetchone()
        return bool(row and row[0])

    def prune(self, conn: psycopg.Connection[Any], upto: int, keep: int) -> int:
        """Deletes the events up to upto but the last keep of them, and the
        markers among them (a marker follows its events: the ones kept keep theirs)."""
        row = conn.execute(self._prune, (upto, keep)).fetchone()
        return int(row[0]) if row else 0
