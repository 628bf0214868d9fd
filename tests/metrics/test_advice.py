"""store.advice(): each rule fires on the workload it targets and stays
silent on a workload where its change would not help."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import pytest

import statekeep
from statekeep import Indexed


class Row(statekeep.Entity, collection="advice_rows"):
    owner: str = ""
    shelf: Annotated[str, Indexed()] = ""
    text: str = "x" * 200


def rules(store: statekeep.Store) -> dict[str, list[statekeep.metrics.Advice]]:
    found: dict[str, list[statekeep.metrics.Advice]] = {}
    for advice in store.advice():
        found.setdefault(advice.rule, []).append(advice)
    return found


@pytest.fixture
def store(tmp_path: Path) -> Iterator[statekeep.Store]:
    opened = statekeep.open(f"sqlite:///{tmp_path / 'advice.db'}")
    yield opened
    opened.close()


def test_an_unindexed_find_on_a_big_collection_gets_advice(store: statekeep.Store) -> None:
    store.save_many(Row(owner=str(i % 100), shelf=str(i % 100)) for i in range(20_000))
    for i in range(12):
        list(store.find(Row, owner=str(i)))
    (advice,) = rules(store)["index_a_field"]
    assert advice.subject == "advice_rows" and "owner" in advice.title
    assert "owner: Annotated[..., Indexed()]" in advice.change
    assert "12 finds" in advice.evidence and advice.gain > 0


def test_indexed_finds_and_small_collections_get_none(store: statekeep.Store) -> None:
    store.save_many(Row(owner=str(i % 100), shelf=str(i % 100)) for i in range(20_000))
    for i in range(30):
        list(store.find(Row, shelf=str(i)))  # an index serves them
    assert "index_a_field" not in rules(store)

    class Tiny(statekeep.Entity):
        owner: str = ""

    store.save_many(Tiny(owner=str(i)) for i in range(20))
    for i in range(30):
        list(store.find(Tiny, owner=str(i)))  # a scan of 20 rows: an index would not help
    assert "index_a_field" not in rules(store)


def test_a_save_loop_gets_save_many(store: statekeep.Store) -> None:
    store.save_many([Row() for _ in range(100)])  # its per-entity time is measured
    for _ in range(1000):  # well over 100 in some second, even on a busy machine
        store.save(Row())
    (advice,) = rules(store)["save_many"]
    assert advice.subject == "advice_rows" and "store.save_many" in advice.change
    assert "save_many took" in advice.evidence and advice.gain > 0


def test_saves_in_one_transaction_or_few_saves_get_no_save_many(store: statekeep.Store) -> None:
    with store.transaction():
        for _ in range(300):
            store.save(Row())
    for _ in range(20):
        store.save(Row())
    assert "save_many" not in rules(store)


def test_the_same_entity_saved_again_and_again_gets_enqueue(store: statekeep.Store) -> None:
    row = store.save(Row())
    for i in range(80):
        row.owner = str(i)
        store.save(row)
    (advice,) = rules(store)["enqueue"]
    assert advice.subject == "advice_rows" and "store.enqueue(entity)" in advice.change
    assert "fewer writes" in advice.evidence


def test_saves_of_distinct_entities_get_no_enqueue(store: statekeep.Store) -> None:
    for _ in range(80):
        store.save(Row())
    assert "enqueue" not in rules(store)


def small_batches(store: statekeep.Store, batches: int, rows: int) -> None:
    for _ in range(batches):
        for _ in range(rows):
            store.enqueue(Row())
        assert store.flush(10)


def test_small_write_behind_batches_get_a_longer_window(store: statekeep.Store) -> None:
    small_batches(store, 60, 1)
    (advice,) = rules(store)["batch_window"]
    assert "'window'" in advice.change and "1.0 rows each" in advice.evidence


def test_big_batches_get_no_window_advice(store: statekeep.Store) -> None:
    small_batches(store, 60, 20)
    assert "batch_window" not in rules(store) and "batch_size" not in rules(store)


def test_full_batches_get_a_bigger_max_batch(tmp_path: Path) -> None:
    with statekeep.open(
        f"sqlite:///{tmp_path / 'b.db'}", writebehind={"max_batch": 10, "window": 5.0}
    ) as store:
        for _ in range(1000):
            store.enqueue(Row())
        assert store.flush(30)
        (advice,) = rules(store)["batch_size"]
        assert "'max_batch': 40" in advice.change


def test_a_slow_sync_handler_gets_advice(store: statekeep.Store) -> None:
    def slow(event: statekeep.Event) -> None:
        time.sleep(0.002)

    store.on(Row, slow)
    for _ in range(25):
        store.save(Row())
    (advice,) = rules(store)["slow_handler"]
    assert advice.subject.endswith("slow") and "async def" in advice.change


def test_fast_and_async_handlers_get_none(store: statekeep.Store) -> None:
    calls: list[statekeep.Event] = []
    awaited: list[statekeep.Event] = []

    async def slow_but_async(event: statekeep.Event) -> None:
        time.sleep(0.002)  # on the bus's event loop, not the committing thread
        awaited.append(event)

    store.on(Row, calls.append)
    store.on(Row, slow_but_async)
    for _ in range(25):
        store.save(Row())
    deadline = time.monotonic() + 10
    while len(awaited) < 25 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(calls) == 25 and len(awaited) == 25
    assert "slow_handler" not in rules(store)


def test_many_conflicts_get_advice_and_a_few_do_not(store: statekeep.Store) -> None:
    rows = [store.save(Row()) for _ in range(100)]
    for row in rows[:3]:  # 3 stale copies: below the threshold
        stale = row.model_copy()
        store.save(row)
        with pytest.raises(statekeep.ConflictError):
            store.save(stale)
    assert "conflicts" not in rules(store)
    for row in rows[3:15]:
        stale = row.model_copy()
        store.save(row)
        with pytest.raises(statekeep.ConflictError):
            store.save(stale)
    (advice,) = rules(store)["conflicts"]
    assert advice.subject == "save" and "15 of" in advice.evidence


def test_advice_comes_ranked_by_gain(store: statekeep.Store) -> None:
    def slow(event: statekeep.Event) -> None:
        time.sleep(0.003)

    store.on(Row, slow)
    row = store.save(Row())
    for _ in range(60):
        store.save(row)
    found = store.advice()
    assert len(found) >= 2
    assert [a.gain for a in found] == sorted((a.gain for a in found), reverse=True)
    assert str(found[0]).count("\n") == 2  # title, evidence, change


def test_a_store_without_metrics_has_no_advice(tmp_path: Path) -> None:
    with statekeep.open(f"sqlite:///{tmp_path / 'c.db'}", metrics=False) as store:
        row = store.save(Row())
        for _ in range(200):
            store.save(row)
        assert store.advice() == [] and len(store.metrics()) == 0
