"""The child process of the memory benchmark:

    python -m benchmarks._rss_child statekeep|raw COUNT PATH

writes COUNT entities made by a generator into PATH in one transaction, and
prints one JSON line: baseline and peak RSS in bytes, seconds, count.

Peak RSS is the kernel's high-water mark VmHWM from /proc/self/status. Not
ru_maxrss: on Linux a child started by fork/vfork + exec inherits its parent's
high-water mark there, so it would report the benchmark runner's size.
"""

from __future__ import annotations

import itertools
import json
import sys
import time

import statekeep

from ._models import BenchTodo, stream
from .harness import RAW_SCHEMA, raw_connection


def _status(key: str) -> int | None:
    """A size from /proc/self/status in bytes (Linux), else None."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _statekeep(count: int, path: str) -> int:
    with statekeep.open(f"sqlite:///{path}") as store:
        store.count(BenchTodo)
        return store.save_many(stream(count))


def _raw(count: int, path: str) -> int:
    conn = raw_connection(path, autocommit=True)
    try:
        conn.execute(RAW_SCHEMA.format(table="bench_todo"))
        conn.execute("BEGIN")
        models = stream(count)
        while chunk := list(itertools.islice(models, 1000)):
            conn.executemany(
                "INSERT INTO bench_todo (id, version, body) VALUES (?, ?, ?)",
                [(m.id, 1, m.model_dump_json()) for m in chunk],
            )
        conn.execute("COMMIT")
        return int(conn.execute("SELECT count(*) FROM bench_todo").fetchone()[0])
    finally:
        conn.close()


def main(argv: list[str]) -> None:
    contender, count, path = argv[0], int(argv[1]), argv[2]
    write = {"statekeep": _statekeep, "raw": _raw}[contender]
    next(stream(1)).model_dump_json()  # warm pydantic up before the baseline
    baseline = _status("VmRSS")
    start = time.perf_counter()
    written = write(count, path)
    seconds = time.perf_counter() - start
    report = {"baseline": baseline, "peak": _status("VmHWM"), "seconds": seconds, "count": written}
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1:])
