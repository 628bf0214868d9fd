"""A process of the outbox benchmark (benchmarks/outbox.py):

    python -m benchmarks._outbox_child save_many URL OUTBOX COUNT GO
        waits for the file GO, then save_many of COUNT new entities in one
        transaction; prints one JSON line: start, end (wall clock), error.
    python -m benchmarks._outbox_child saves URL OUTBOX GO STOP
        waits for GO, then saves one new entity after another, 10 ms apart,
        until the file STOP exists; prints one JSON line: the seconds each took
        (failed ones too) and the errors.

OUTBOX is 1 or 0: whether the store is opened with outbox=True.
"""

from __future__ import annotations

import json
import os
import sys
import time

import statekeep

from ._models import entities, field_rows


def _wait(path: str) -> None:
    while not os.path.exists(path):
        time.sleep(0.001)


def save_many(url: str, outbox: bool, count: int, go: str) -> None:
    models = entities(field_rows(count, seed=os.getpid()))
    with statekeep.open(url, outbox=outbox) as store:
        store.count(type(models[0]))  # connected, the table known
        _wait(go)
        start, error = time.time(), None
        try:
            store.save_many(models)
        except statekeep.StatekeepError as exc:
            error = f"{type(exc).__name__}: {exc}"
        print(json.dumps({"start": start, "end": time.time(), "error": error}))


def saves(url: str, outbox: bool, go: str, stop: str) -> None:
    taken: list[float] = []
    errors: list[str] = []
    with statekeep.open(url, outbox=outbox) as store:
        [model] = entities(field_rows(1, seed=os.getpid()))
        store.save(model)  # connected, the table known
        _wait(go)
        while not os.path.exists(stop):
            [model] = entities(field_rows(1, seed=len(taken)))
            began = time.perf_counter()
            try:
                store.save(model)
            except statekeep.StatekeepError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
            taken.append(time.perf_counter() - began)
            time.sleep(0.01)
    print(json.dumps({"taken": taken, "errors": errors}))


if __name__ == "__main__":
    mode, url, flag, *rest = sys.argv[1:]
    if mode == "save_many":
        save_many(url, flag == "1", int(rest[0]), rest[1])
    else:
        saves(url, flag == "1", rest[0], rest[1])
