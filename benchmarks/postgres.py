"""PostgreSQL: save_many and get, against raw psycopg 3 and SQLAlchemy.

The server is STATEKEEP_BENCH_POSTGRES_URL (see _postgres.py); every table of
a run lives in a schema of its own, dropped at the end. Without a server the
rows say why they are missing.

Every row is judged on the median of its rounds (the best round beside it):
one lucky round of a noisy machine does not pass a target.

save_many of N new entities (the SQLite save_many model), one transaction,
twice: with time-ordered ids (as statekeep makes them) and with random ids
(uuid4().hex, as an application may bring: each lands on a random page of
the primary key). The limit: psycopg COPY ... FROM STDIN of the same rows
(id, version, model_dump_json() as jsonb; serialisation timed) into a table
like statekeep's (id text COLLATE "C" primary key, version bigint, body
jsonb; the model has no indexed field, so no other column or index). COPY
runs in text and in binary format; the faster (by median) is the limit. The
usual alternative: SQLAlchemy 2 ORM add_all + commit on
`postgresql+psycopg://` (time-ordered ids only: it is ~10x slower).

get of N random ids (all different) from a table of get_stored entities.
The limit: the best a psycopg user writes for it: one connection
(autocommit, as statekeep's pool has), one cursor kept for the run (a cursor
per statement costs ~10 us), `SELECT body ... WHERE id = %s` prepared on the
server (prepare=True: no parsing or planning per call), tuple rows (the
cheapest row factory, in C), bodies as text (jsonb's TextLoader in C; the
binary format carries the same text after a version byte and has no C
loader; measured no faster, and RawCursor's $1 neither) +
Model.model_validate_json. For reference: SQLAlchemy ORM session.get from
one session.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

import statekeep

from . import _models, _orm, _postgres
from .harness import (
    Cleanup,
    Progress,
    Result,
    Run,
    Sizes,
    median_row,
    median_target,
    medians_of,
    times_faster,
)

TEXT_COPY = "psycopg COPY, text format"
BINARY_COPY = "psycopg COPY, binary format"
STATEKEEP = "statekeep save_many"
ORM = "SQLAlchemy ORM add_all + commit"
RAW_GET = "psycopg prepared SELECT + model_validate_json"
STATEKEEP_GET = "statekeep get"
ORM_GET = "SQLAlchemy ORM session.get"

GET_TARGET = 0.9  # of the limit, by median (issue 19)
SAVE_MANY_TARGET = 0.95
ID_KINDS = ("time-ordered", "random uuid4")

# A table like the one statekeep makes for BenchTodo (nothing indexed).
RAW_TABLE = (
    'CREATE TABLE IF NOT EXISTS {table} (id text COLLATE "C" PRIMARY KEY, '
    "version bigint NOT NULL, body jsonb NOT NULL)"
)


def _jsonb_text_dumper() -> type:
    """A dumper of JSON text into jsonb's binary format (a version byte, then
    the text), for COPY ... (FORMAT BINARY) after set_types."""
    import psycopg
    from psycopg.adapt import Dumper

    class JsonbText(Dumper):
        format = psycopg.pq.Format.BINARY
        oid = psycopg.adapters.types["jsonb"].oid

        def dump(self, obj: str) -> bytes:
            return b"\x01" + obj.encode()

    return JsonbText


def run(sizes: Sizes, workdir: str, progress: Progress) -> list[Result]:
    url = _postgres.configured_url()
    progress(f"PostgreSQL: connecting to {_postgres.where(url)}")
    problem = _postgres.problem(url)
    if problem is not None:
        return [
            Result(
                "PostgreSQL save_many, get",
                "skipped: no server",
                detail=f"{_postgres.where(url)}: {problem}; set {_postgres.VARIABLE}",
            )
        ]
    with _postgres.fresh_schema(url) as schema:
        results = [
            row for kind in ID_KINDS for row in save_many(sizes, url, schema, progress, kind)
        ]
        return results + get(sizes, url, schema, progress)


def _ids(n: int, kind: str) -> list[str]:
    if kind == "time-ordered":
        return _models.new_ids(n)
    return [uuid.uuid4().hex for _ in range(n)]


def save_many(sizes: Sizes, url: str, schema: str, progress: Progress, kind: str) -> list[Result]:
    n = sizes.pg_save_many
    rows = _models.field_rows(n)
    ids = _ids(n, kind)
    with_orm = kind == ID_KINDS[0]
    raw_table = f'"{schema}".raw_todo'
    with statekeep.open(_postgres.store_url(url, schema)) as store:
        store.save(_models.BenchTodo(**rows[0]))  # the table exists before any run
    admin = _postgres.connect(url, autocommit=True)  # empties the tables between runs
    admin.execute(RAW_TABLE.format(table=raw_table))
    engine = _orm.postgres_engine(url, schema)
    jsonb_text = _jsonb_text_dumper()

    def empty(table: str) -> None:
        admin.execute(f"TRUNCATE {table}")
        _postgres.settle(admin)

    def statekeep_trial() -> tuple[Run, Cleanup]:
        empty(f'"{schema}".bench_todo')
        models = _models.entities(rows, ids)
        store = statekeep.open(_postgres.store_url(url, schema))
        store.count(_models.BenchTodo)  # the table is known to the store, as the others' are

        return lambda: store.save_many(models), store.close

    def copy_trial(binary: bool) -> tuple[Run, Cleanup]:
        empty(raw_table)
        models = _models.entities(rows, ids)
        conn = _postgres.connect(url, autocommit=True)
        conn.adapters.register_dumper(None, jsonb_text)  # by oid only: for set_types
        statement = f"COPY {raw_table} (id, version, body) FROM STDIN"
        if binary:
            statement += " (FORMAT BINARY)"

        def write() -> None:
            with conn.transaction(), conn.cursor() as cursor, cursor.copy(statement) as copy:
                if binary:
                    copy.set_types(["text", "int8", "jsonb"])
                write_row = copy.write_row
                for m in models:
                    write_row((m.id, 1, m.model_dump_json()))

        return write, conn.close

    def orm_trial() -> tuple[Run, Cleanup]:
        empty(f'"{schema}".orm_todo')
        objects = _orm.objects(rows, ids)
        with engine.connect() as conn:  # the pool holds a connection, as for the others
            conn.execute(sa.select(1))

        def write() -> None:
            with Session(engine) as session:
                session.add_all(objects)
                session.commit()

        return write, lambda: None

    trials = {
        BINARY_COPY: lambda: copy_trial(True),
        TEXT_COPY: lambda: copy_trial(False),
        STATEKEEP: statekeep_trial,
    }
    if with_orm:
        trials[ORM] = orm_trial
    try:
        timings = medians_of(trials, sizes, progress, f"PostgreSQL save_many ({kind} ids)", (ORM,))
    finally:
        engine.dispose()
        admin.close()
    limit, other = sorted((BINARY_COPY, TEXT_COPY), key=timings.median.__getitem__)
    label = f"PostgreSQL save_many {n:,}, {kind} ids"
    results = [
        median_row(label, limit, timings, limit, n),
        median_row(label, other, timings, limit, n),
        median_target(label, STATEKEEP, timings, limit, n, SAVE_MANY_TARGET),
    ]
    if with_orm:
        results.append(times_faster(label, ORM, timings, limit, STATEKEEP, n, 5))
    return results


def get(sizes: Sizes, url: str, schema: str, progress: Progress) -> list[Result]:
    from psycopg.types.string import TextLoader

    n, stored = sizes.pg_get, sizes.pg_get_stored
    progress(f"PostgreSQL get: storing {stored:,} entities to read")
    rows = _models.field_rows(stored, seed=3)
    ids = _models.new_ids(stored)
    model = _models.BenchTodo
    address = _postgres.store_url(url, schema)
    with _postgres.connect(url, autocommit=True) as admin:
        admin.execute(f'TRUNCATE "{schema}".bench_todo')  # what save_many left
    with statekeep.open(address) as store:
        store.save_many(_models.entities(rows, ids))
    del rows
    engine = _orm.postgres_engine(url, schema)
    _orm.copy_stored(engine)  # the same entities in the ORM's table
    wanted = random.Random(4).sample(ids, n)
    table = f'"{schema}".bench_todo'

    def statekeep_trial() -> tuple[Run, Cleanup]:
        store = statekeep.open(address)
        store.count(model)  # the table is known to the store
        get = store.get

        def read() -> None:
            for id in wanted:
                get(model, id)

        return read, store.close

    def raw_trial() -> tuple[Run, Cleanup]:
        conn = _postgres.connect(url, autocommit=True)
        conn.adapters.register_loader("jsonb", TextLoader)
        cursor = conn.cursor()
        execute, fetchone, load = cursor.execute, cursor.fetchone, model.model_validate_json
        select = f"SELECT body FROM {table} WHERE id = %s"

        def read() -> None:
            for id in wanted:
                execute(select, (id,), prepare=True)
                row: Any = fetchone()
                load(row[0])

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
            {RAW_GET: raw_trial, STATEKEEP_GET: statekeep_trial, ORM_GET: orm_trial},
            sizes,
            progress,
            "PostgreSQL get",
            slow=(ORM_GET,),
        )
    finally:
        engine.dispose()
    label = f"PostgreSQL get {n:,} random of {stored:,}"
    return [
        median_row(label, RAW_GET, timings, RAW_GET, n),
        median_target(label, STATEKEEP_GET, timings, RAW_GET, n, GET_TARGET),
        median_row(label, ORM_GET, timings, RAW_GET, n),
    ]
