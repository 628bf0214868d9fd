"""2. save() of N new entities, one transaction (one commit) each.

The limit: sqlite3 writing each row in a transaction of its own, serialising
each model with model_dump_json inside the timed loop, in the better of two
shapes (the median decides): INSERT + commit() (the sqlite3 module begins
the transaction), or the INSERT alone on an autocommit connection (SQLite's
own transaction for one statement). For reference (no target): SQLAlchemy
ORM add + commit per object, a session each, as a web request would have.
(One long session is no fairer: it expires every object it holds on each
commit, which makes N saves cost O(N^2).)
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
    median_row,
    median_target,
    medians_of,
    raw_connection,
    remove_db,
)

COMMIT_EACH = "sqlite3 INSERT + commit"
AUTOCOMMIT = "sqlite3 INSERT, autocommit"
STATEKEEP = "statekeep save"
ORM = "SQLAlchemy ORM add + commit (a session each)"


def run(sizes: Sizes, workdir: str, progress: Progress) -> list[Result]:
    n = sizes.save
    rows = _models.field_rows(n, seed=2)
    ids = _models.new_ids(n)
    names = (f"{workdir}/save_{i}.db" for i in itertools.count())

    def statekeep_trial() -> tuple[Run, Cleanup]:
        path = next(names)
        models = _models.entities(rows, ids)
        store = statekeep.open(f"sqlite:///{path}")
        store.count(_models.BenchTodo)  # creates the table, as the others do untimed
        save = store.save

        def write() -> None:
            for model in models:
                save(model)

        def cleanup() -> None:
            store.close()
            remove_db(path)

        return write, cleanup

    def raw_trial(autocommit: bool) -> tuple[Run, Cleanup]:
        path = next(names)
        models = _models.entities(rows, ids)
        conn = raw_connection(path, autocommit=autocommit)
        conn.execute(RAW_SCHEMA.format(table="bench_todo"))
        conn.commit()
        insert = "INSERT INTO bench_todo (id, version, body) VALUES (?, ?, ?)"
        execute, commit = conn.execute, conn.commit

        def write() -> None:
            for m in models:
                execute(insert, (m.id, 1, m.model_dump_json()))
                commit()  # sqlite3 began a transaction before the INSERT

        def write_alone() -> None:
            for m in models:
                execute(insert, (m.id, 1, m.model_dump_json()))

        def cleanup() -> None:
            conn.close()
            remove_db(path)

        return (write_alone if autocommit else write), cleanup

    def orm_trial() -> tuple[Run, Cleanup]:
        path = next(names)
        objects = _orm.objects(rows, ids)
        engine = _orm.engine(path)

        def write() -> None:
            for obj in objects:
                with Session(engine) as session:
                    session.add(obj)
                    session.commit()

        def cleanup() -> None:
            engine.dispose()
            remove_db(path)

        return write, cleanup

    timings = medians_of(
        {
            COMMIT_EACH: lambda: raw_trial(False),
            AUTOCOMMIT: lambda: raw_trial(True),
            STATEKEEP: statekeep_trial,
            ORM: orm_trial,
        },
        sizes,
        progress,
        "save",
        slow=(ORM,),
    )
    limit = min((COMMIT_EACH, AUTOCOMMIT), key=lambda name: timings.median[name])
    label = f"save {n:,} (a commit each)"
    return [
        *(median_row(label, name, timings, limit, n) for name in (COMMIT_EACH, AUTOCOMMIT)),
        median_target(label, STATEKEEP, timings, limit, n, 0.9),
        Result(label, ORM, timings.ops(ORM, n), timings.median[limit] / timings.median[ORM]),
    ]
