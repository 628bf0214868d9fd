"""1. save_many of N entities into a fresh SQLite file, in one transaction.

The limit: sqlite3 executemany of the same JSON bodies (model_dump_json per
model, timed) into a table of statekeep's schema. It goes a thousand rows at a
time, as statekeep does: on 100,000 rows that is some 20% faster than one
executemany of one big list (or of a generator), so it is the honest limit.
The usual alternative: SQLAlchemy 2 ORM add_all + commit of an equivalent
mapped class.
"""

from __future__ import annotations

import itertools

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
    best_of,
    ratio_target,
    raw_connection,
    remove_db,
)

CHUNK = 1000
LIMIT = "sqlite3 executemany (limit)"
STATEKEEP = "statekeep save_many"
ORM = "SQLAlchemy ORM add_all + commit"


def run(sizes: Sizes, workdir: str, progress: Progress) -> list[Result]:
    n = sizes.save_many
    rows = _models.field_rows(n)
    ids = _models.new_ids(n)
    names = (f"{workdir}/save_many_{i}.db" for i in itertools.count())

    def statekeep_trial() -> tuple[Run, Cleanup]:
        path = next(names)
        models = _models.entities(rows, ids)
        store = statekeep.open(f"sqlite:///{path}")
        store.count(_models.BenchTodo)  # creates the table, as the others do untimed

        def cleanup() -> None:
            store.close()
            remove_db(path)

        return lambda: store.save_many(models), cleanup

    def raw_trial() -> tuple[Run, Cleanup]:
        path = next(names)
        models = _models.entities(rows, ids)
        conn = raw_connection(path, autocommit=True)
        conn.execute(RAW_SCHEMA.format(table="bench_todo"))
        insert = "INSERT INTO bench_todo (id, version, body) VALUES (?, ?, ?)"

        def write() -> None:
            conn.execute("BEGIN")
            for start in range(0, n, CHUNK):
                chunk = models[start : start + CHUNK]
                conn.executemany(insert, [(m.id, 1, m.model_dump_json()) for m in chunk])
            conn.execute("COMMIT")

        def cleanup() -> None:
            conn.close()
            remove_db(path)

        return write, cleanup

    def orm_trial() -> tuple[Run, Cleanup]:
        path = next(names)
        objects = _orm.objects(rows, ids)
        engine = _orm.engine(path)

        def write() -> None:
            with Session(engine) as session:
                session.add_all(objects)
                session.commit()

        def cleanup() -> None:
            engine.dispose()
            remove_db(path)

        return write, cleanup

    best = best_of(
        {LIMIT: raw_trial, STATEKEEP: statekeep_trial, ORM: orm_trial},
        sizes,
        progress,
        "save_many",
        slow=(ORM,),
    )
    ops = {name: n / seconds for name, seconds in best.items()}
    label = f"save_many {n:,}"
    mine = ratio_target(label, STATEKEEP, ops[STATEKEEP], ops[LIMIT], 0.7)
    over_orm = ops[STATEKEEP] / ops[ORM]
    return [
        Result(label, LIMIT, ops[LIMIT], 1.0),
        mine,
        Result(
            label,
            ORM,
            ops[ORM],
            ops[ORM] / ops[LIMIT],
            target="statekeep >= 5x this",
            passed=over_orm >= 5,
            detail=f"statekeep is {over_orm:.1f}x",
        ),
    ]
