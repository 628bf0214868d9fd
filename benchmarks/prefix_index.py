"""An indexed text column indexed whole (statekeep before issue 11) against
indexed by its prefix, `left(name, 512)` (backends/_postgres_prefix.py): the
same rows in two tables, the same statements, interleaved in one process.

    .venv/bin/python -m benchmarks.prefix_index [rows] [rounds]

Times a COPY of `rows` (default 100,000) short names, then the median of
1,500 lookups of each shape (==, startswith as a range, in) and of 1,500
single-row INSERTs; prints each figure and the prefix/whole ratio. Not part
of `make bench`: it checks one decision, on the server of
STATEKEEP_BENCH_POSTGRES_URL (see _postgres.py).
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

from . import _postgres

LAYOUTS = {"whole": "name", "prefix": "left(name, 512)"}
LOOKUPS = {
    "==": ("{key} = %s", ("name-0050000-46",)),
    "startswith": ("{key} >= %s AND {key} < %s", ("name-00500", "name-00501")),
    "in": ("{key} = ANY(%s)", (["name-0000001-1", "name-0012345-26", "name-0099999-87"],)),
}


def _median_us(conn: Any, sql: str, params: Any, runs: int = 1500) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        conn.execute(sql, params, prepare=True).fetchall()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


def _round(conn: Any, layout: str, rows: int, figures: dict[str, list[float]]) -> None:
    table, key = f"t_{layout}", LAYOUTS[layout]
    conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.execute(f'CREATE TABLE {table} (id text COLLATE "C" PRIMARY KEY, name text COLLATE "C")')
    conn.execute(f"CREATE INDEX {table}_name ON {table} (({key}))")
    started = time.perf_counter()
    with conn.cursor().copy(f"COPY {table} (id, name) FROM STDIN") as copy:
        for i in range(rows):
            copy.write_row((f"{i:07d}", f"name-{i:07d}-{i % 97}"))
    figures.setdefault("COPY (s)", []).append(time.perf_counter() - started)
    conn.execute(f"ANALYZE {table}")
    for shape, (condition, params) in LOOKUPS.items():
        sql = f"SELECT id FROM {table} WHERE {condition.format(key=key)}"
        figures.setdefault(f"{shape} (us)", []).append(_median_us(conn, sql, params))
    times = []
    for i in range(1500):
        started = time.perf_counter()
        conn.execute(
            f"INSERT INTO {table} VALUES (%s, %s)", (f"x{i:06d}", f"one-{i}"), prepare=True
        )
        times.append(time.perf_counter() - started)
    figures.setdefault("INSERT one (us)", []).append(statistics.median(times) * 1e6)


def main(argv: list[str]) -> int:
    url = _postgres.configured_url()
    why = _postgres.problem(url)
    if why is not None:
        print(f"no PostgreSQL server: {why}")
        return 1
    rows = int(argv[0]) if argv else 100_000
    rounds = int(argv[1]) if len(argv) > 1 else 6
    figures: dict[str, dict[str, list[float]]] = {layout: {} for layout in LAYOUTS}
    with _postgres.fresh_schema(url) as schema, _postgres.connect(url, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute(f'SET search_path = "{schema}"')
        for n in range(rounds):  # alternating which goes first
            for layout in list(LAYOUTS)[:: 1 if n % 2 == 0 else -1]:
                _round(conn, layout, rows, figures[layout])
    print(f"{rows:,} rows, {rounds} rounds, medians:")
    for what, whole in figures["whole"].items():
        before, after = statistics.median(whole), statistics.median(figures["prefix"][what])
        ratio = after / before
        print(f"  {what:16} whole {before:9.3f}  prefix {after:9.3f}  prefix/whole {ratio:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
