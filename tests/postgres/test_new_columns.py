"""A new indexed column on a large PostgreSQL table: filled in batches while
others write, resumed after a fill that did not finish, and never read early.

The batch and "large table" sizes are lowered for these tests so that a few
hundred rows take the path a few million would.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Annotated

import psycopg
import pytest

import statekeep
from statekeep import Entity, Indexed
from statekeep.backends import _postgres_columns

from .conftest import MakeUrl


class JobOld(Entity, collection="big_job"):
    name: str
    priority: int = 0


class JobNew(Entity, collection="big_job", shared=True):
    name: str
    priority: Annotated[int, Indexed()] = 0


@pytest.fixture(autouse=True)
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_postgres_columns, "SMALL", 50)
    monkeypatch.setattr(_postgres_columns, "FILL_ROWS", 37)


def schema_of(url: str) -> str:
    return url.split("schema=")[1].split("&")[0]


def test_a_large_table_is_filled_in_batches_while_an_old_version_writes(pg_url: str) -> None:
    with statekeep.open(pg_url) as old:
        old.save_many(JobOld(id=f"j{i:04d}", name=f"n{i}", priority=i % 3) for i in range(600))
        stop = threading.Event()
        written: list[str] = []

        def keep_writing() -> None:
            i = 0
            while not stop.is_set():
                job = old.save(JobOld(id=f"w{i:04d}", name="w", priority=i % 3))
                written.append(job.id)
                i += 1

        writer = threading.Thread(target=keep_writing)
        writer.start()
        try:
            with statekeep.open(pg_url) as new:
                zeros = new.count(JobNew, priority=0)
                stop.set()
                writer.join()
                expected = 200 + sum(1 for i in range(len(written)) if i % 3 == 0)
                assert new.count(JobNew, priority=0) == expected
                assert zeros <= expected
                plan = new.backend.explain(JobNew.__statekeep__.spec, _query(priority=1))
                assert any("big_job__priority" in line for line in plan), plan
        finally:
            stop.set()
            writer.join()
    with psycopg.connect(pg_url.split("?")[0], autocommit=True) as conn:
        ready = conn.execute(
            f"SELECT name, ready FROM {schema_of(pg_url)}.statekeep_columns"
        ).fetchall()
        valid = conn.execute(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)",
            (f"{schema_of(pg_url)}.big_job__priority",),
        ).fetchone()
    assert ready == [("priority", True)]
    assert valid == (True,)


def test_a_fill_cut_short_is_finished_by_the_next_store(pg_url: str) -> None:
    with statekeep.open(pg_url) as store:
        store.save_many(JobOld(id=f"j{i:04d}", name=f"n{i}", priority=i % 3) for i in range(300))
        assert store.count(JobNew, priority=2) == 100
    schema = schema_of(pg_url)
    with psycopg.connect(pg_url.split("?")[0], autocommit=True) as conn:
        # as a process killed in the middle of a fill leaves it: not ready,
        # rows not filled, the index not built yet
        conn.execute(f"UPDATE {schema}.statekeep_columns SET ready = false")
        conn.execute(f"DROP INDEX {schema}.big_job__priority")
        conn.execute(
            f"ALTER TABLE {schema}.big_job DISABLE TRIGGER statekeep_fill;"
            f"UPDATE {schema}.big_job SET priority = NULL, statekeep_layout = NULL "
            "WHERE id > 'j0150';"
            f"ALTER TABLE {schema}.big_job ENABLE TRIGGER statekeep_fill"
        )
    with statekeep.open(pg_url) as store:
        assert store.count(JobNew, priority=2) == 100
        assert store.count(JobNew, JobNew.f.priority >= 0) == 300


def _query(**equals: object) -> statekeep.backends.base.Query:
    from statekeep.backends.base import Query

    info = JobNew.__statekeep__
    return Query(info.filters((), dict(equals)))


class JobColour(Entity, collection="big_job", shared=True):
    name: str
    colour: Annotated[str, Indexed()] = "red"


def _waiting_for_a_lock(url: str, text: str) -> bool:
    with psycopg.connect(url.split("?")[0], autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query LIKE %s",
            (f"%{text}%",),
        ).fetchone()
    return bool(row and row[0])


def _until(check: Callable[[], object], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_column_registered_during_another_fill_is_filled_too(make_url: MakeUrl) -> None:
    """One deploy fills `priority` on a large table; meanwhile another version
    registers `colour`. The first fill's end marked every column ready,
    `colour` too, and the rows it had passed before `colour` existed stayed
    empty (found by neither version)."""
    url = make_url(timeout=60)
    schema = schema_of(url)
    server = url.split("?")[0]
    with statekeep.open(url) as old:
        old.save_many(JobOld(id=f"j{i:04d}", name=f"n{i}") for i in range(300))
    counts: dict[str, int] = {}

    def open_and_count(cls: type[Entity], **equals: object) -> None:
        with statekeep.open(url) as store:
            counts[cls.__name__] = store.count(cls, **equals)

    def registered() -> bool:
        with psycopg.connect(server, autocommit=True) as conn:
            return bool(conn.execute(f"SELECT FROM {schema}.statekeep_columns").fetchall())

    # the fill of `priority` held up at row j0250: the fill waits for this
    # lock (a fill already running elsewhere), then for a row lock
    holder = psycopg.connect(server, autocommit=True)
    fill_key = f"statekeep-fill:{schema}.big_job"
    holder.execute("SELECT pg_advisory_lock(hashtext(%s))", (fill_key,))
    blocker = psycopg.connect(server)
    filling = threading.Thread(target=open_and_count, args=(JobNew,), kwargs={"priority": 0})
    adding = threading.Thread(target=open_and_count, args=(JobColour,), kwargs={"colour": "red"})
    filling.start()
    try:
        _until(registered)
        blocker.execute(f"UPDATE {schema}.big_job SET version = version WHERE id = 'j0250'")
        holder.execute("SELECT pg_advisory_unlock(hashtext(%s))", (fill_key,))
        _until(lambda: _waiting_for_a_lock(url, "UPDATE"))  # the fill, at j0250
        adding.start()  # registers `colour` once the fill's statement ends
        _until(lambda: _waiting_for_a_lock(url, "ALTER TABLE"))
    finally:
        blocker.commit()
        blocker.close()
        holder.close()
        filling.join()
        if adding.ident is not None:
            adding.join()
    assert counts == {"JobNew": 300, "JobColour": 300}
    with statekeep.open(url) as store:
        assert store.count(JobColour, colour="red") == 300
        assert store.count(JobNew, priority=0) == 300


def test_a_body_a_sql_tool_edits_in_place_is_filled_again(pg_url: str) -> None:
    """The trigger ran only for rows stamped otherwise: an UPDATE of the body
    alone left the row's columns as they were."""
    with statekeep.open(pg_url) as store:
        store.save_many(JobNew(id=f"e{i}", name="n", priority=1) for i in range(3))
        with psycopg.connect(pg_url.split("?")[0], autocommit=True) as tool:
            tool.execute(
                f"UPDATE {schema_of(pg_url)}.big_job "
                "SET body = jsonb_set(body, '{priority}', '5') WHERE id = 'e1'"
            )
        assert [job.id for job in store.find(JobNew, priority=5)] == ["e1"]
        assert store.count(JobNew, priority=1) == 2
        job = store.get(JobNew, "e0")
        job.name = "renamed"
        store.save(job)  # statekeep's own update: the writer's values
        assert store.count(JobNew, priority=1) == 2


def test_two_versions_adding_columns_at_once_do_not_fail_with_a_deadlock(
    make_url: MakeUrl,
) -> None:
    """The first builds its index concurrently, which waits for every older
    transaction, among them the second's, which waits to add its column to
    the table the index is being built on: PostgreSQL ends one of them with
    a deadlock, and that store's first read failed with it."""
    url = make_url(timeout=60)
    schema = schema_of(url)
    server = url.split("?")[0]
    with statekeep.open(url) as old:
        old.save_many(JobOld(id=f"j{i:04d}", name=f"n{i}") for i in range(300))
    counts: dict[str, int | str] = {}

    def open_and_count(cls: type[Entity], **equals: object) -> None:
        try:
            with statekeep.open(url) as store:
                counts[cls.__name__] = store.count(cls, **equals)
        except statekeep.StatekeepError as exc:
            counts[cls.__name__] = repr(exc)

    def registered() -> bool:
        with psycopg.connect(server, autocommit=True) as conn:
            return bool(conn.execute(f"SELECT FROM {schema}.statekeep_columns").fetchall())

    def waiting(kind: str) -> bool:
        with psycopg.connect(server, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype = %s", (kind,)
            ).fetchone()
        return bool(row and row[0])

    fill_holder = psycopg.connect(server, autocommit=True)
    build_holder = psycopg.connect(server, autocommit=True)
    fill_key, build_key = f"statekeep-fill:{schema}.big_job", f"statekeep:{schema}.big_job"
    fill_holder.execute("SELECT pg_advisory_lock(hashtext(%s))", (fill_key,))
    filling = threading.Thread(target=open_and_count, args=(JobNew,), kwargs={"priority": 0})
    adding = threading.Thread(target=open_and_count, args=(JobColour,), kwargs={"colour": "red"})
    filling.start()
    try:
        _until(registered)  # the first has added its column, and waits to fill it
        build_holder.execute("SELECT pg_advisory_lock(hashtext(%s))", (build_key,))
        adding.start()  # the second's transaction begins, and waits to add its column
        _until(lambda: waiting("advisory"))
        fill_holder.execute("SELECT pg_advisory_unlock(hashtext(%s))", (fill_key,))
        _until(lambda: waiting("virtualxid"))  # the index build waits for the second
    finally:
        build_holder.close()  # the second goes on to ALTER TABLE
        fill_holder.close()
        filling.join()
        if adding.ident is not None:
            adding.join()
    assert counts == {"JobNew": 300, "JobColour": 300}
    with psycopg.connect(server, autocommit=True) as conn:
        valid = conn.execute(
            "SELECT indisvalid FROM pg_index "
            "WHERE indexrelid IN (to_regclass(%s), to_regclass(%s))",
            (f"{schema}.big_job__priority", f"{schema}.big_job__colour"),
        ).fetchall()
        ready = conn.execute(f"SELECT bool_and(ready) FROM {schema}.statekeep_columns").fetchone()
    assert valid == [(True,), (True,)] and ready == (True,)
