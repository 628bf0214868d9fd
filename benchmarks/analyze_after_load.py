"""find() on an indexed field right after a bulk load, with and without the
ANALYZE that statekeep runs after it (backends/_postgres_analyze.py).

    .venv/bin/python -m benchmarks.analyze_after_load [rows] [--chunks]

Loads `rows` (default 300,000) entities with save_many into a fresh schema,
then times find() of 10 of them by an indexed field (20 runs: best and
median), once with the ANALYZE switched off and once as statekeep runs it;
--chunks loads with atomic=False (a transaction per 10,000-row chunk). Not
part of `make bench`: it checks one decision, on the server of
STATEKEEP_BENCH_POSTGRES_URL (see _postgres.py).
"""

from __future__ import annotations

import sys
import time
import uuid
from typing import Annotated

import statekeep
from statekeep import Entity, Indexed
from statekeep.backends import _postgres_analyze

from . import _postgres


class Marker(Entity, collection="bench_marker"):
    kind: Annotated[str, Indexed()]
    n: int = 0


def measure(url: str, rows: int, *, analyze: bool, atomic: bool) -> str:
    minimum = _postgres_analyze.MIN_ROWS
    _postgres_analyze.MIN_ROWS = minimum if analyze else 2**62
    schema = f"sk_bench_{uuid.uuid4().hex[:12]}"
    try:
        with statekeep.open(_postgres.store_url(url, schema)) as store:
            markers = [Marker(kind=f"k{i % (rows // 10)}", n=i) for i in range(rows)]
            started = time.perf_counter()
            store.save_many(markers, atomic=atomic)
            load = time.perf_counter() - started
            times = []
            for _ in range(20):
                started = time.perf_counter()
                found = list(store.find(Marker, kind="k7"))
                times.append(time.perf_counter() - started)
            times.sort()
    finally:
        _postgres_analyze.MIN_ROWS = minimum
        with _postgres.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    return (
        f"{rows:,} rows, atomic={atomic}, ANALYZE {'on ' if analyze else 'off'}: "
        f"save_many {load:.2f} s; find ({len(found)} found) "
        f"best {times[0] * 1000:.2f} ms, median {times[10] * 1000:.2f} ms"
    )


def main(argv: list[str]) -> int:
    url = _postgres.configured_url()
    why = _postgres.problem(url)
    if why is not None:
        print(f"no PostgreSQL server: {why}")
        return 1
    rows = int(next((a for a in argv if a.isdigit()), "300000"))
    atomic = "--chunks" not in argv
    for analyze in (False, True):
        print(measure(url, rows, analyze=analyze, atomic=atomic))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
