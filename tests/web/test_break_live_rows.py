"""Breaking live()'s rows kept from committed changes (statekeep.web._rows and
_Selection.quick): whatever quick() publishes without reading must be what a
read gives at that moment, on every backend."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Annotated, Any

import psycopg
import pytest

import statekeep
from statekeep import Entity, Indexed
from statekeep.events import Lifecycle, Updated
from statekeep.web import _live
from statekeep.web._rows import Rows
from statekeep.web._signals import plain


class BigNumber(Entity, collection="web_break_big_number"):
    real: Annotated[int | float, Indexed()] = 0  # a column of doubles
    whole: int = 0  # in the body only
    note: str = ""


class Shared(Entity, collection="web_break_shared", shared=True):
    rank: int = 0
    note: str = ""


class SharedWithSecret(Entity, collection="web_break_shared", shared=True):
    """Another class over the same collection, with a field the page must not get."""

    rank: int = 0
    note: str = ""
    secret: str = "hunter2"


class Item(Entity, collection="web_break_item"):
    rank: int = 0
    note: str = ""


@pytest.fixture
def store(store_url: str) -> Iterator[statekeep.Store]:
    store = statekeep.open(store_url)
    yield store
    store.close()


def _applied_or_read(
    store: statekeep.Store, cls: type[Entity], where: list[Any], order_by: Any, limit: int
) -> tuple[Rows, list[Lifecycle]]:
    """Rows read now, and the events of what is saved next (to apply to them)."""
    info = cls.__statekeep__
    rows = Rows(cls, info.filters(where, {}), info.orders(order_by), limit)
    rows.reset(
        [e.model_dump(mode="json") for e in store.find(cls, *where, order_by=order_by, limit=limit)]
    )
    events: list[Lifecycle] = []
    store.on(cls, events.append)
    return rows, events


NUMBERS: list[tuple[str, bool, str, dict[str, Any], dict[str, Any]]] = [
    # (case, where real == 2**53, order_by, the row there, the entity saved after the read)
    (
        "equal in a column of doubles",
        True,
        "real",
        {"id": "b", "real": 2**53},
        {"id": "c", "real": 2**53 + 1},
    ),
    (
        "order in a column of doubles",
        False,
        "real",
        {"id": "b", "real": 2**53},
        {"id": "a", "real": 2**53 + 1},
    ),
    (
        "order of ints beyond 64 bits",
        False,
        "whole",
        {"id": "b", "whole": 2**64},
        {"id": "a", "whole": 2**64 + 1},
    ),
]


@pytest.mark.parametrize("case", NUMBERS, ids=[case[0] for case in NUMBERS])
def test_numbers_a_backend_compares_as_doubles_are_not_judged_exactly(
    store: statekeep.Store, case: tuple[str, bool, str, dict[str, Any], dict[str, Any]]
) -> None:
    """2**53 + 1 and 2**53 are one double: a column of doubles (an indexed
    `int | float`), or SQLite's JSON for ints beyond 64 bits, ties them (and
    the tie goes to the ids), where Python tells them apart: "certainly out"
    is not certain there."""
    _, filtered, order_by, there, saved = case
    where: list[Any] = [BigNumber.f.real == 2**53] if filtered else []
    limit = 5 if filtered else 1
    store.save(BigNumber(**there))
    rows, events = _applied_or_read(store, BigNumber, where, order_by, limit)
    store.save(BigNumber(**saved))
    truth = [
        plain(e.model_dump(mode="json"))
        for e in store.find(BigNumber, *where, order_by=order_by, limit=limit)
    ]
    if rows.apply(events):
        assert rows.rows == truth, "applied without a read, and not what a read gives"


def test_a_change_through_another_class_of_a_shared_collection_shows_the_selections_fields(
    store: statekeep.Store,
) -> None:
    """live(store, Shared) shows Shared's fields: a save through another class
    of the collection (or a write-behind save of Shared itself, whose event is
    made as the collection's last class) must not put that class's fields
    (`secret`) in the page."""
    for n in range(3):
        store.save(Shared(id=f"s{n}", rank=n))
    selection = _live._Selection(store, ("k",), Shared, (), {}, "rank", None, "rows", 60.0, 0.0)
    selection.subscribe()
    try:
        selection.read()
        other = store.get(SharedWithSecret, "s1")
        other.note = "through the other class"
        store.save(other)
        quick = selection.quick()
        assert quick is None or quick == selection.read()
        mine = store.get(Shared, "s2")
        mine.note = "write-behind"
        store.enqueue(mine)
        store.flush()
        quick = selection.quick()
        assert quick is None or quick == selection.read()
        assert quick is None or "secret" not in quick["rows"]["2"]
    finally:
        selection.unsubscribe()


def test_a_late_update_of_a_deleted_entity_is_not_applied_over_the_one_created_again(
    store: statekeep.Store,
) -> None:
    """Thread A updates x and is slow to dispatch; meanwhile x is deleted,
    created again (version 1 again) and y edited, and the selection is read.
    A's event (version 2 of the old x) is newer than the row only by the
    version's number: applying it shows the old x beside the new y, a state
    the store never held."""
    store.save(Item(id="x", rank=1, note="x1"))
    store.save(Item(id="y", rank=2, note="y1"))
    gate, held = threading.Event(), threading.Event()

    def slow_dispatch(event: Any) -> None:  # a handler before live()'s: A's dispatch waits
        if isinstance(event, Updated) and event.entity_id == "x" and event.entity.note == "A":
            held.set()
            gate.wait(5)

    store.on(Item, slow_dispatch)
    selection = _live._Selection(store, ("k",), Item, (), {}, "rank", None, "rows", 60.0, 0.0)
    selection.subscribe()
    try:
        selection.read()

        def update() -> None:
            x = store.get(Item, "x")
            x.note = "A"
            store.save(x)

        thread = threading.Thread(target=update)
        thread.start()
        assert held.wait(5)
        store.delete(Item, "x")
        store.save(Item(id="x", rank=1, note="created again"))
        y = store.get(Item, "y")
        y.note = "y2"
        store.save(y)
        assert selection.quick() is None  # a row was deleted: read
        selection.read()
        gate.set()
        thread.join(5)
        quick = selection.quick()
        assert quick is None or quick == selection.read()
    finally:
        gate.set()
        selection.unsubscribe()


@pytest.mark.requires("postgresql")
def test_a_read_that_fails_does_not_lose_the_changes_it_took(
    store: statekeep.Store, store_url: str
) -> None:
    """A read clears the pending changes before it queries; when the query
    fails (a dropped connection), the rows it had stay, and the next change
    is applied to them without the one the failed read took: the page shows
    t0 before its edit beside t1 after its, a state the store never held."""
    for n in range(3):
        store.save(Item(id=f"t{n}", rank=n))
    selection = _live._Selection(store, ("k",), Item, (), {}, "rank", None, "rows", 0.1, 0.0)
    selection.subscribe()
    try:
        selection.read()
        time.sleep(0.15)  # a poll is due: the next change is read, not applied
        t0 = store.get(Item, "t0")
        t0.note = "edited"
        store.save(t0)
        assert selection.quick() is None
        backend: Any = store.backend
        with backend._connections.borrowed("finding its pid") as conn:  # the pool's one
            pid = conn.info.backend_pid
        with psycopg.connect(store_url.partition("?")[0], autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(statekeep.errors.StatekeepError):
            selection.read()  # the connection went (a feed logs this and goes on)
        t1 = store.get(Item, "t1")
        t1.note = "edited"
        store.save(t1)
        quick = selection.quick()
        assert quick is None or quick == selection.read()
    finally:
        selection.unsubscribe()
