"""The floor of write-behind on this machine: a throwaway engine as lean as
issue 11 sketched it, against save_many, to tell what any engine can reach.

    .venv/bin/python -m benchmarks.writebehind_floor [rounds]

The engine here has none of statekeep's duties (no journal, priorities,
conflict rule, receipts that say anything, events, retries): the caller
puts a row in a dict under one lock and gets a two-field handle; one thread
swaps the dict, inserts it as 250-row multi-row INSERTs and commits, batch
after batch. It is fed three ways, each timed until the last row is
committed, 100,000 new entities into a fresh SQLite file (WAL,
synchronous=NORMAL), as a ratio to save_many of the same entities in the
same round (median of the rounds):

- raw: the row made with `to_json(warnings=True)` alone, no check at all;
- statekeep: the row as `store.enqueue` makes it before its engine (the
  entity's class looked up, `EntityInfo.next_row`: strict serialisation,
  NUL and NaN refused), the work an enqueue must do per call and save_many
  does once a batch where it can;
- statekeep, yielding: the same, the caller letting the storing thread in
  every 32 writes while it stores (as statekeep's engine does).

Not part of `make bench`: it measures a decision (issue 11's closing note).
"""

from __future__ import annotations

import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import statekeep

from . import _models

N = 100_000
CHUNK = 250


class _Handle:
    __slots__ = ("batch", "key")

    def __init__(self, batch: object, key: str) -> None:
        self.batch, self.key = batch, key


class LeanEngine:
    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE t (id TEXT PRIMARY KEY, version INTEGER, body TEXT)")
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._pending: dict[str, tuple[Any, ...]] = {}
        self._batch = object()
        self.busy = False
        threading.Thread(target=self._loop, daemon=True).start()

    def enqueue(self, row: tuple[Any, ...]) -> _Handle:
        with self._lock:
            self._pending[row[0]] = row
            if not self.busy and len(self._pending) >= 500:
                self._work.notify()
            return _Handle(self._batch, row[0])

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._pending:
                    self.busy = False
                    self._work.notify_all()
                    self._work.wait(0.002)
                self.busy = True
                batch, self._pending = self._pending, {}
                self._batch = object()
            rows = list(batch.values())
            self._db.execute("BEGIN")
            for start in range(0, len(rows), CHUNK):
                chunk = rows[start : start + CHUNK]
                values = ",".join(["(?,?,?)"] * len(chunk))
                self._db.execute(f"INSERT INTO t VALUES {values}", [x for r in chunk for x in r])
            self._db.execute("COMMIT")

    def flush(self) -> None:
        with self._lock:
            self._work.notify()
            self._work.wait_for(lambda: not self._pending and not self.busy)


def _feeds(store: statekeep.Store) -> dict[str, Callable[[Any], tuple[Any, ...]]]:
    core = store._core
    info = core.entity_info(_models.BenchTodo(**_models.field_rows(1)[0]))
    to_json = info._serializer()

    def raw(entity: Any) -> tuple[Any, ...]:
        return (entity.id, 1, to_json(entity, warnings=True).decode())

    def checked(entity: Any) -> tuple[Any, ...]:
        return tuple(core.entity_info(entity).next_row(entity))

    return {"raw": raw, "statekeep": checked, "statekeep, yielding": checked}


def main(rounds: int) -> None:
    rows = _models.field_rows(N, seed=3)
    ratios: dict[str, list[float]] = {}
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as workdir:
            with statekeep.open(f"sqlite:///{workdir}/many.db") as store:
                store.count(_models.BenchTodo)
                entities = _models.entities(rows)
                started = time.perf_counter()
                store.save_many(entities)
                reference = time.perf_counter() - started
            with statekeep.open(f"sqlite:///{workdir}/rows.db") as store:
                for name, feed in _feeds(store).items():
                    engine = LeanEngine(f"{workdir}/{len(ratios.get(name, []))}-{name}.db")
                    entities = _models.entities(rows)
                    yielding = name.endswith("yielding")
                    started = time.perf_counter()
                    for n, entity in enumerate(entities):
                        engine.enqueue(feed(entity))
                        if yielding and not n & 31 and engine.busy:
                            time.sleep(0)
                    engine.flush()
                    ratios.setdefault(name, []).append(reference / (time.perf_counter() - started))
    for name, values in ratios.items():
        spread = ", ".join(f"{v:.2f}" for v in values)
        print(f"{name:22} {statistics.median(values):.2f}x save_many (rounds: {spread})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
