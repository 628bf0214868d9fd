"""2. save() of N new entities, one transaction (one commit) each.

The limit: sqlite3 INSERT + commit per row, serialising each model with
model_dump_json inside the timed loop. For reference (no target): SQLAlchemy
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
    best_of,
    ratio_target,
    raw_connection,
    remove_db,
)

LIMIT = "sqlite3 INSERT + commit (limit)"
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

    def raw_trial() -> tuple[Run, Cleanup]:
        path = next(names)
        models = _models.entities(rows, ids)
        conn = raw_connection(path, autocommit=False)  # sqlite3 opens a transaction per INSERT
        conn.execute(RAW_SCHEMA.format(table="bench_todo"))
        conn.commit()
        insert = "INSERT INTO bench_todo (id, version, body) VALUES (?, ?, ?)"
        execute, commit = conn.execute, conn.commit

        def write() -> None:
            for m in models:
                execute(insert, (m.id, 1, m.model_dump_json()))
                commit()

        def cleanup() -> None:
            conn.close()
            remove_db(path)

        return write, cleanup

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

    best = best_of(
        {LIMIT: raw_trial, STATEKEEP: statekeep_trial, ORM: orm_trial},
        sizes,
        progress,
        "save",
        slow=(ORM,),
    )
    ops = {name: n / seconds for name, seconds in best.items()}
    label = f"save {n:,} (a commit each)"
    return [
        Result(label, LIMIT, ops[LIMIT], 1.0),
        ratio_target(label, STATEKEEP, ops[STATEKEEP], ops[LIMIT], 0.8),
        Result(label, ORM, ops[ORM], ops[ORM] / ops[LIMIT]),
    ]
