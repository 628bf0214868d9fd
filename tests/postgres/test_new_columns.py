"""A new indexed column on a large PostgreSQL table: filled in batches while
others write, resumed after a fill that did not finish, and never read early.

The batch and "large table" sizes are lowered for these tests so that a few
hundred rows take the path a few million would.
"""

from __future__ import annotations

import threading
from typing import Annotated

import psycopg
import pytest

import statekeep
from statekeep import Entity, Indexed
from statekeep.backends import postgres


class JobOld(Entity, collection="big_job"):
    name: str
    priority: int = 0


class JobNew(Entity, collection="big_job", shared=True):
    name: str
    priority: Annotated[int, Indexed()] = 0


@pytest.fixture(autouse=True)
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postgres, "_SMALL", 50)
    monkeypatch.setattr(postgres, "_FILL_ROWS", 37)


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
                plan = new._backend.explain(JobNew.__statekeep__.spec, _query(priority=1))  # type: ignore[attr-defined]
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
