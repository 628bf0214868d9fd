"""1. save_many of N entities into a fresh SQLite file, in one transaction,
with the ids users bring: statekeep's own (time-ordered) and random UUID4s.

The limit: sqlite3 writing the same JSON bodies (model_dump_json per model,
timed) into a table of statekeep's schema, a thousand rows at a time as
statekeep does, in the better of two shapes for the ids at hand (the median
decides): one executemany per thousand rows, or multi-row INSERTs of 250
rows. Multi-row statements are some 20% faster at the right edge of the id
index (ordered ids) and some 35% slower with ids scattered over it (they
keep a statement journal of every page they touch). The usual alternative:
SQLAlchemy 2 ORM add_all + commit of an equivalent mapped class (ordered ids).
"""

from __future__ import annotations

import itertools
import uuid
from itertools import chain

from sqlalchemy.orm import Session

import statekeep

from . import _models, _orm
from .harness import (
    RAW_SCHEMA,
    Cleanup,
    Progress,
    Result,
    Run,
    Sizes,
    median_row,
    median_target,
    medians_of,
    raw_connection,
    remove_db,
    times_faster,
)

CHUNK = 1000
MULTI = 250
EXECUTEMANY = "sqlite3 executemany"
MULTI_ROW = f"sqlite3 {MULTI}-row INSERTs"
STATEKEEP = "statekeep save_many"
ORM = "SQLAlchemy ORM add_all + commit"
SHAPES = {"time-ordered ids": "ordered", "random UUID4 ids": "uuid4"}


def ids_of(shape: str, n: int) -> list[str]:
    return _models.new_ids(n) if shape == "ordered" else [uuid.uuid4().hex for _ in range(n)]


def run(sizes: Sizes, workdir: str, progress: Progress) -> list[Result]:
    results: list[Result] = []
    for label, shape in SHAPES.items():
        results += _run_shape(sizes, workdir, progress, label, shape)
    return results


def _run_shape(
    sizes: Sizes, workdir: str, progress: Progress, label: str, shape: str
) -> list[Result]:
    n = sizes.save_many
    rows = _models.field_rows(n)
    names = (f"{workdir}/save_many_{shape}_{i}.db" for i in itertools.count())

    def statekeep_trial() -> tuple[Run, Cleanup]:
        path = next(names)
        models = _models.entities(rows, ids_of(shape, n))
        store = statekeep.open(f"sqlite:///{path}")
        store.count(_models.BenchTodo)  # creates the table, as the others do untimed

        def cleanup() -> None:
            store.close()
            remove_db(path)

        return lambda: store.save_many(models), cleanup

    def raw_trial(multi_row: bool) -> tuple[Run, Cleanup]:
        path = next(names)
        models = _models.entities(rows, ids_of(shape, n))
        conn = raw_connection(path, autocommit=True)
        conn.execute(RAW_SCHEMA.format(table="bench_todo"))
        insert = "INSERT INTO bench_todo (id, version, body) VALUES "
        one = insert + "(?, ?, ?)"
        many = insert + ", ".join(["(?, ?, ?)"] * MULTI)

        def write() -> None:
            conn.execute("BEGIN")
            for start in range(0, n, CHUNK):
                chunk = [(m.id, 1, m.model_dump_json()) for m in models[start : start + CHUNK]]
                if not multi_row:
                    conn.executemany(one, chunk)
                    continue
                for at in range(0, len(chunk), MULTI):
                    part = chunk[at : at + MULTI]
                    sql = (
                        many
                        if len(part) == MULTI
                        else insert + ", ".join(["(?, ?, ?)"] * len(part))
                    )
                    conn.execute(sql, list(chain(*part)))
            conn.execute("COMMIT")

        def cleanup() -> None:
            conn.close()
            remove_db(path)

        return write, cleanup

    def orm_trial() -> tuple[Run, Cleanup]:
        path = next(names)
        objects = _orm.objects(rows, ids_of(shape, n))
        engine = _orm.engine(path)

        def write() -> None:
            with Session(engine) as session:
                session.add_all(objects)
                session.commit()

        def cleanup() -> None:
            engine.dispose()
            remove_db(path)

        return write, cleanup

    trials = {
        EXECUTEMANY: lambda: raw_trial(False),
        MULTI_ROW: lambda: raw_trial(True),
        STATEKEEP: statekeep_trial,
    }
    if shape == "ordered":
        trials[ORM] = orm_trial
    timings = medians_of(trials, sizes, progress, f"save_many, {label}", slow=(ORM,))
    limit = min((EXECUTEMANY, MULTI_ROW), key=lambda name: timings.median[name])
    title = f"save_many {n:,}, {label}"
    results = [median_row(title, name, timings, limit, n) for name in (EXECUTEMANY, MULTI_ROW)]
    results.append(median_target(title, STATEKEEP, timings, limit, n, 0.9))
    if ORM in trials:
        results.append(times_faster(title, ORM, timings, limit, STATEKEEP, n, 5))
    return results
