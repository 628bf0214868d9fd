"""3. get() of N random ids (all different, so no cache can answer) from a
table of get_stored entities.

The limit: sqlite3 `SELECT body FROM t WHERE id=?` + Model.model_validate_json,
on the very file statekeep wrote. The usual alternative: SQLAlchemy ORM
session.get from a fresh session (the ids never repeat, so every get loads).
"""

from __future__ import annotations

import random

import sqlalchemy as sa
from sqlalchemy.orm import Session

import statekeep

from . import _models, _orm
from .harness import (
    Cleanup,
    Progress,
    Result,
    Run,
    Sizes,
    median_target,
    medians_of,
    raw_connection,
    remove_db,
)

LIMIT = "sqlite3 SELECT + model_validate_json (limit)"
STATEKEEP = "statekeep get"
ORM = "SQLAlchemy ORM session.get"


def run(sizes: Sizes, workdir: str, progress: Progress) -> list[Result]:
    n, stored = sizes.get, sizes.get_stored
    progress(f"get: storing {stored:,} entities to read")
    rows = _models.field_rows(stored, seed=3)
    ids = _models.new_ids(stored)
    path, orm_path = f"{workdir}/get.db", f"{workdir}/get_orm.db"
    with statekeep.open(f"sqlite:///{path}") as store:
        store.save_many(_models.entities(rows, ids))
    engine = _orm.engine(orm_path)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(_orm.OrmTodo),
            [{"id": id, "version": 1, **row} for id, row in zip(ids, rows, strict=True)],
        )
    del rows
    wanted = random.Random(4).sample(ids, n)
    model = _models.BenchTodo

    def statekeep_trial() -> tuple[Run, Cleanup]:
        store = statekeep.open(f"sqlite:///{path}")
        store.count(model)  # checks the table once, as the others have theirs open
        get = store.get

        def read() -> None:
            for id in wanted:
                get(model, id)

        return read, store.close

    def raw_trial() -> tuple[Run, Cleanup]:
        conn = raw_connection(path, autocommit=True)
        execute, load = conn.execute, model.model_validate_json
        select = "SELECT body FROM bench_todo WHERE id = ?"

        def read() -> None:
            for id in wanted:
                load(execute(select, (id,)).fetchone()[0])

        return read, conn.close

    def orm_trial() -> tuple[Run, Cleanup]:
        session = Session(engine)
        session.execute(sa.select(1))  # the connection is checked out, as for the others

        def read() -> None:
            get = session.get
            for id in wanted:
                get(_orm.OrmTodo, id)

        return read, session.close

    try:
        timings = medians_of(
            {LIMIT: raw_trial, STATEKEEP: statekeep_trial, ORM: orm_trial},
            sizes,
            progress,
            "get",
            slow=(ORM,),
        )
    finally:
        engine.dispose()
        remove_db(path)
        remove_db(orm_path)
    label = f"get {n:,} random of {stored:,}"
    return [
        Result(label, LIMIT, timings.ops(LIMIT, n), 1.0),
        median_target(label, STATEKEEP, timings, LIMIT, n, 0.92),
        Result(label, ORM, timings.ops(ORM, n), timings.median[LIMIT] / timings.median[ORM]),
    ]
