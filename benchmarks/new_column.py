"""A rolling deploy that adds an indexed field to a large table: how long the
new version takes to fill and index the column, and how long the old
version's saves wait meanwhile (backends/_layout.py).

    .venv/bin/python -m benchmarks.new_column [rows] [--sqlite]

Loads `rows` (default 1,000,000) entities of the old model, starts a process
that keeps saving with the old model (a save every 2 ms), then opens the new
model, whose first query registers, fills and indexes the column. Prints the
time that took, the old writer's worst and median save, and checks that the
new index counts what the bodies say. Not part of `make bench`: it checks one
decision, on the server of STATEKEEP_BENCH_POSTGRES_URL (see _postgres.py),
or on a SQLite file with --sqlite.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.queues
import statistics
import sys
import tempfile
import time
import uuid
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Annotated, Any

import statekeep
from statekeep import Entity, Indexed

from . import _postgres


class JobOld(Entity, collection="bench_rolling_job"):
    name: str
    priority: int = 0


class JobNew(Entity, collection="bench_rolling_job", shared=True):
    name: str
    priority: Annotated[int, Indexed()] = 0


def old_writer(url: str, stop: Event, out: Any) -> None:
    latencies = []
    with statekeep.open(url) as store:
        i = 0
        while not stop.is_set():
            started = time.perf_counter()
            store.save(JobOld(name=f"w{i}", priority=i % 3))
            latencies.append(time.perf_counter() - started)
            i += 1
            time.sleep(0.002)
    out.put(latencies)


def measure(url: str, rows: int) -> str:
    with statekeep.open(url) as store:
        store.save_many(JobOld(name=f"n{i}", priority=i % 3) for i in range(rows))
    stop = multiprocessing.Event()
    out: multiprocessing.queues.Queue[list[float]] = multiprocessing.Queue()
    writer = multiprocessing.Process(target=old_writer, args=(url, stop, out))
    writer.start()
    time.sleep(1.0)
    with statekeep.open(url) as store:
        started = time.perf_counter()
        store.count(JobNew, priority=0)
        took = time.perf_counter() - started
        time.sleep(0.5)
        stop.set()
        latencies = out.get()
        writer.join()
        indexed = store.count(JobNew, priority=0)
        from_bodies = sum(1 for job in store.find(JobOld) if job.priority == 0)
    assert indexed == from_bodies, (indexed, from_bodies)
    return (
        f"{rows:,} rows: column added, filled and indexed in {took:.1f} s; the old version "
        f"saved {len(latencies):,} times meanwhile, worst {max(latencies) * 1000:.0f} ms, "
        f"median {statistics.median(latencies) * 1000:.1f} ms; index and bodies agree"
    )


def main(argv: list[str]) -> int:
    rows = int(next((a for a in argv if a.isdigit()), "1000000"))
    if "--sqlite" in argv:
        with tempfile.TemporaryDirectory() as directory:
            print("SQLite:", measure(f"sqlite:///{Path(directory) / 'rolling.db'}", rows))
        return 0
    url = _postgres.configured_url()
    problem = _postgres.problem(url)
    if problem:
        print(problem)
        return 1
    schema = f"sk_bench_{uuid.uuid4().hex[:12]}"
    try:
        print("PostgreSQL:", measure(_postgres.store_url(url, schema), rows))
    finally:
        with _postgres.connect(_postgres.server_url(url), autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
