"""live()'s rows kept from the changes this process commits (statekeep.web._rows):
whatever it applies without reading must equal what a read gives, on every
backend, for where / order_by / limit of every kind; where it is not certain,
it asks for a read."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import AsyncGenerator, Iterator
from typing import Any, cast

import pytest

import statekeep
from statekeep import Entity
from statekeep.events import Lifecycle
from statekeep.web import _live
from statekeep.web._feed import Feed
from statekeep.web._rows import Rows
from statekeep.web._signals import plain


class RowItem(Entity, collection="web_row_item"):
    rank: int = 0
    group: str = "a"
    done: bool = False
    score: float | None = None
    note: str = ""


F = RowItem.f
SELECTIONS: list[tuple[str, Any, Any, int | None]] = [
    ("all by rank", None, "rank", None),
    ("top 5 by rank", None, "rank", 5),
    ("top 5 by -rank", None, "-rank", 5),
    ("open, top 4", [F.done == False], "rank", 4),
    ("rank below 10", [F.rank < 10], F.rank.desc(), 6),
    ("groups a and b", [F.group.in_(["a", "b"])], ["group", "rank"], 5),
    ("not group c", [F.group != "c", F.rank >= 3], "rank", 3),
    ("by score", [F.score >= 0.5], "score", 4),
    ("by note, text", None, "note", 3),
    ("id order", None, None, 4),
    ("prefix", [F.note.startswith("x")], "rank", 3),
    ("equals", {"group": "b"}, "rank", None),
    ("limit 0", None, "rank", 0),
]


@pytest.fixture
def store(store_url: str) -> Iterator[statekeep.Store]:
    store = statekeep.open(store_url)
    yield store
    store.close()


def _query(where: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if where is None:
        return (), {}
    if isinstance(where, dict):
        return (), where
    return tuple(where), {}


def _read(store: statekeep.Store, where: Any, order_by: Any, limit: int | None) -> list[Any]:
    conditions, equals = _query(where)
    found = store.find(RowItem, *conditions, order_by=order_by, limit=limit, **equals)
    return [entity.model_dump(mode="json") for entity in found]


def _change(store: statekeep.Store, rng: random.Random, items: dict[str, RowItem]) -> None:
    roll = rng.random()
    if roll < 0.15 or len(items) < 4:
        item = store.save(_random_item(rng))
        items[item.id] = item
    elif roll < 0.25:
        gone = items.pop(rng.choice(sorted(items)))
        store.delete(RowItem, gone.id)
    else:
        item = items[rng.choice(sorted(items))]
        what = rng.random()
        if what < 0.5:
            item.note = rng.choice(["", "x1", "y", "x2", "z"])  # mostly a field no query orders by
            if rng.random() < 0.5:
                item.note = item.note  # (unchanged: an update all the same)
        elif what < 0.7:
            item.rank = rng.randrange(20)
        elif what < 0.8:
            item.group = rng.choice("abc")
        elif what < 0.9:
            item.done = not item.done
        else:
            item.score = rng.choice([None, 0.25, 0.5, 0.75, 1.0])
        items[item.id] = store.save(item)


def _random_item(rng: random.Random) -> RowItem:
    return RowItem(
        rank=rng.randrange(20),
        group=rng.choice("abc"),
        done=rng.random() < 0.3,
        score=rng.choice([None, 0.25, 0.5, 0.75, 1.0]),
        note=rng.choice(["", "x1", "y"]),
    )


@pytest.mark.parametrize("selection", SELECTIONS, ids=[s[0] for s in SELECTIONS])
def test_what_is_applied_equals_what_a_read_gives(
    store: statekeep.Store, selection: tuple[str, Any, Any, int | None]
) -> None:
    _, where, order_by, limit = selection
    conditions, equals = _query(where)
    info = RowItem.__statekeep__
    rows = Rows(RowItem, info.filters(conditions, equals), info.orders(order_by), limit)
    rng = random.Random(f"{selection[0]}-{store.url}")
    items = {item.id: item for item in (store.save(_random_item(rng)) for _ in range(12))}
    events: list[Lifecycle] = []
    subscription = store.on(RowItem, lambda event: events.append(event))
    rows.reset(_read(store, where, order_by, limit))
    applied = read = 0
    for _ in range(120):
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            _change(store, rng, items)
        batch, events[:] = list(events), []
        truth = _read(store, where, order_by, limit)
        if rows.apply(batch):
            applied += 1
            assert rows.rows == [plain(row) for row in truth]
        else:
            read += 1
            assert rows.rows is None
            rows.reset(truth)
    store.off(subscription)
    assert applied + read == 120


def test_in_place_updates_and_entities_that_stay_out_need_no_read(
    store: statekeep.Store,
) -> None:
    """What live() meets most (a row of the selection edited, an entity far
    outside it edited) is applied; a row that leaves or moves, or an entity
    that comes in, is read."""
    items = [store.save(RowItem(rank=n)) for n in range(10)]
    info = RowItem.__statekeep__
    rows = Rows(RowItem, (), info.orders("rank"), 3)
    events: list[Lifecycle] = []
    store.on(RowItem, lambda event: events.append(event))
    rows.reset(_read(store, None, "rank", 3))

    def after(change: Any) -> bool:
        events.clear()
        change()
        return rows.apply(list(events))

    def edit(item: RowItem, **values: Any) -> Any:
        def change() -> None:
            for name, value in values.items():
                setattr(item, name, value)
            store.save(item)

        return change

    assert after(edit(items[1], note="in place"))
    assert rows.rows is not None and rows.rows[1]["note"] == "in place"
    assert after(edit(items[7], note="far out"))  # rank 7 > rank 2, the last of 3
    assert not after(edit(items[8], rank=0))  # comes in
    rows.reset(_read(store, None, "rank", 3))
    assert not after(edit(items[0], rank=50))  # leaves
    rows.reset(_read(store, None, "rank", 3))
    assert not after(lambda: store.delete(RowItem, items[1].id))  # a row goes
    rows.reset(_read(store, None, "rank", 3))
    assert after(lambda: store.delete(RowItem, items[9].id))  # not a row


def test_a_change_dispatched_late_does_not_undo_a_newer_one(store: statekeep.Store) -> None:
    """Two threads saving one entity may deliver their events in either order:
    the older event is not applied over the newer row."""
    item = store.save(RowItem(rank=1, note="v1"))
    info = RowItem.__statekeep__
    rows = Rows(RowItem, (), info.orders("rank"), None)
    events: list[Lifecycle] = []
    store.on(RowItem, lambda event: events.append(event))
    rows.reset(_read(store, None, "rank", None))
    item.note = "v2"
    store.save(item)
    item.note = "v3"
    store.save(item)
    older, newer = events
    assert rows.apply([newer, older])
    assert rows.rows is not None and rows.rows[0]["note"] == "v3"


def _selection(store: statekeep.Store, *, poll: float = 60.0) -> Any:
    return _live._Selection(store, ("k",), RowItem, (), {}, "rank", 5, "items", poll, 0.0)


def test_a_selection_reads_again_when_a_poll_is_due_or_changes_piled_up(
    store: statekeep.Store,
) -> None:
    items = [store.save(RowItem(rank=n)) for n in range(8)]
    selection = _selection(store, poll=0.3)
    selection.subscribe()
    try:
        assert selection.quick() is None  # nothing read yet
        first = selection.read()
        assert [row["rank"] for row in first["items"].values()] == [0, 1, 2, 3, 4]
        assert selection.quick() == first  # poked for changes already taken: no read
        items[2].note = "edited"
        store.save(items[2])
        tree = selection.quick()
        assert tree is not None and tree["items"]["2"]["note"] == "edited"
        assert tree == selection.read()  # the same as reading it
        assert selection.applied == 1
        time.sleep(0.35)
        store.save(items[3])
        assert selection.quick() is None  # the poll is due: changes of other processes
        selection.read()
        for _ in range(_live.QUICK_MOST + 1):
            store.save(items[4])
        assert selection.quick() is None  # too many for the event loop: read on a thread
        selection.read()
        selection._overflow = True  # (what PENDING_MOST changes held set)
        store.save(items[4])
        assert selection.quick() is None
    finally:
        selection.unsubscribe()


def test_writes_from_threads_end_in_the_rows_a_read_gives(store: statekeep.Store) -> None:
    """Four threads editing rows in and out of the selection while the reader
    applies their changes: after the last write, the selection equals a read."""
    items = [store.save(RowItem(rank=n)) for n in range(40)]
    selection = _selection(store)
    selection.subscribe()
    try:
        selection.read()

        def edit(offset: int) -> None:
            rng = random.Random(offset)
            for n in range(300):
                item = store.get(RowItem, items[(offset + 4 * n) % 40].id)
                item.note = f"{offset}-{n}"
                if rng.random() < 0.05:
                    item.rank = rng.randrange(40)
                store.save(item)

        threads = [threading.Thread(target=edit, args=(k,)) for k in range(4)]
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            if selection.quick() is None:
                selection.read()
        for thread in threads:
            thread.join()
        final = selection.quick() or selection.read()
        assert final == selection.read()
        # how many changes the loop could apply on the way depends on how the
        # threads ran; one more write is applied, not read, and still agrees
        applied = selection.applied
        item = store.get(RowItem, items[0].id)
        item.note = "last"
        store.save(item)
        assert selection.quick() == selection.read()
        assert selection.applied == applied + 1
    finally:
        selection.unsubscribe()


def test_a_late_doorbell_does_not_spin_the_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    """A poke's wake-up that lands after the read it asked for must not leave
    the reader looping until its next timed read (a busy loop on the server's
    event loop, which measured as most of its CPU)."""
    waits = 0
    original = asyncio.Event.wait

    async def counted(event: asyncio.Event) -> Any:
        nonlocal waits
        waits += 1
        return await original(event)

    async def main() -> None:
        feed = Feed("spin", lambda: {"n": 1}, every=2.0, gap=0.0)
        stream = cast(AsyncGenerator[bytes, None], feed.follow())
        await stream.__anext__()  # the first state
        monkeypatch.setattr(asyncio.Event, "wait", counted)
        try:
            assert feed._wake is not None
            feed._wake.set()  # a doorbell whose poke was already read
            await asyncio.sleep(0.3)
        finally:
            monkeypatch.undo()
            await stream.aclose()

    asyncio.run(main())
    assert waits < 20, f"the reader waited {waits} times in 0.3 s: it spins"
