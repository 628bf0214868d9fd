"""The SQLite backend inserts a batch of new rows in the shape that measures
fastest for its ids (benchmarks/save_many.py): multi-row INSERTs for ids that
append to the right edge of the index (statekeep's own, time-ordered), one
executemany for ids scattered over it (random UUIDs). Either way a batch is
all or nothing: a conflict part way leaves none of its rows, and keeps what
the transaction wrote before it."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import statekeep
from statekeep.backends import open_backend
from statekeep.backends.sqlite import SQLiteBackend
from statekeep.errors import ConflictError


class Shape(statekeep.Entity, collection="shapes"):
    n: int = 0


SPEC = Shape.__statekeep__.spec


def rows(ids: list[str]) -> list[tuple[str, int, str]]:
    return [(id, 1, f'{{"id":"{id}","version":1,"n":{i}}}') for i, id in enumerate(ids)]


@pytest.fixture
def sqlite(tmp_path: Path) -> Iterator[SQLiteBackend]:
    opened = open_backend(f"sqlite:///{tmp_path / 'shapes.db'}", {})
    assert isinstance(opened, SQLiteBackend)
    opened.ensure_collection(SPEC)
    yield opened
    opened.close()


def stored(sqlite: SQLiteBackend) -> set[str]:
    conn = sqlite3.connect(sqlite._path)
    try:
        return {id for (id,) in conn.execute("SELECT id FROM shapes")}
    finally:
        conn.close()


@pytest.mark.parametrize("order", ["ordered", "scattered"])
def test_a_batch_is_stored_whole(sqlite: SQLiteBackend, order: str) -> None:
    ids = (
        [f"{i:06d}" for i in range(3000)]
        if order == "ordered"
        else [uuid.uuid4().hex for _ in range(3000)]
    )
    sqlite.begin()
    sqlite.put(SPEC, rows(ids[:1000]))
    sqlite.put(SPEC, rows(ids[1000:]))
    sqlite.commit()
    assert stored(sqlite) == set(ids)


@pytest.mark.parametrize("order", ["ordered", "scattered", "duplicate"])
def test_a_conflict_part_way_leaves_none_of_the_batch(sqlite: SQLiteBackend, order: str) -> None:
    sqlite.begin()
    sqlite.put(SPEC, rows(["taken"]))
    sqlite.commit()
    if order == "ordered":
        ids = [f"{i:06d}" for i in range(999)] + ["zzz", "taken"]  # not ascending at the end
    elif order == "scattered":
        ids = [uuid.uuid4().hex for _ in range(999)] + ["taken"]
    else:
        ids = [uuid.uuid4().hex for _ in range(999)]
        ids.append(ids[500])
    sqlite.begin()
    sqlite.put(SPEC, rows(["before"]))
    with pytest.raises(ConflictError):
        sqlite.put(SPEC, rows(ids))
    sqlite.put(SPEC, rows(["after"]))  # the transaction goes on, without the batch
    sqlite.commit()
    assert stored(sqlite) == {"taken", "before", "after"}


def test_scattered_ids_beyond_the_last_rowid_are_still_all_or_nothing(
    sqlite: SQLiteBackend,
) -> None:
    """With a row at the greatest rowid, SQLite draws new rowids at random:
    the batch goes in one statement instead."""
    conn = sqlite3.connect(sqlite._path)
    conn.execute(
        "INSERT INTO shapes (rowid, id, version, body) VALUES (?, 'last', 1, '{}')", (2**63 - 1,)
    )
    conn.commit()
    conn.close()
    ids = [uuid.uuid4().hex for _ in range(500)] + ["last"]
    sqlite.begin()
    with pytest.raises(ConflictError):
        sqlite.put(SPEC, rows(ids))
    sqlite.commit()
    assert stored(sqlite) == {"last"}
    sqlite.begin()
    sqlite.put(SPEC, rows(ids[:-1]))
    sqlite.commit()
    assert len(stored(sqlite)) == 501
