"""find() is a lazy iterator; writing while iterating must not change what it yields.

Results reflect the data as it was when iteration started, on every backend:
an entity moved further along the ordering is not seen twice, and deleting
as you go visits each entity once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import pytest

import statekeep


class Ranked(statekeep.Entity):
    rank: Annotated[int, statekeep.Indexed()] = 0
    note: str = ""


@pytest.fixture(params=["memory://", "sqlite-file", "sqlite://:memory:"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[statekeep.Store]:
    url = f"sqlite:///{tmp_path}/find.db" if request.param == "sqlite-file" else request.param
    with statekeep.open(url) as opened:
        opened.save_many(Ranked(rank=i) for i in range(300))
        yield opened


def test_saving_while_iterating_visits_each_entity_once(store: statekeep.Store) -> None:
    seen = []
    for item in store.find(Ranked, Ranked.f.rank >= 0, order_by="rank"):
        seen.append(item.id)
        item.rank += 1_000
        store.save(item)
        assert len(seen) <= 300, "an entity came back after it was moved along the ordering"
    assert len(seen) == len(set(seen)) == 300
    assert store.count(Ranked, Ranked.f.rank >= 1_000) == 300


def test_deleting_inside_a_transaction_while_iterating(store: statekeep.Store) -> None:
    with store.transaction():
        deleted = 0
        for item in store.find(Ranked, order_by="-rank"):
            store.delete(item)
            deleted += 1
    assert deleted == 300
    assert store.count(Ranked) == 0


def test_two_iterators_and_a_write_between_them(store: statekeep.Store) -> None:
    first = store.find(Ranked, order_by="rank")
    assert next(first).rank == 0
    store.save(Ranked(rank=-1, note="new"))
    # a query started after the write sees it, while the older one goes on unchanged
    assert next(store.find(Ranked, order_by="rank")).note == "new"
    assert [item.rank for item in first][:2] == [1, 2]


def test_a_question_mark_in_a_file_name_is_written_percent_encoded(tmp_path: Path) -> None:
    with statekeep.open(f"sqlite:///{tmp_path}/what%3F.db") as store:
        store.save(Ranked(rank=1))
    assert (tmp_path / "what?.db").exists()
