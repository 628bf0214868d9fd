"""Bad input to enqueue gets a typed error and stores nothing; permanent
failures go to the dead-letter list, with their error, and can be requeued."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast

import pytest

import statekeep
from statekeep import (
    ConfigurationError,
    ConflictError,
    Priority,
    QueryError,
    StatekeepError,
    StoreClosedError,
    ValidationError,
    WriteBehindOptions,
)

from ._support import Recorder
from .conftest import OpenStore
from .models import Doc


def nothing_stored(store: statekeep.Store) -> None:
    assert store.flush(timeout=30)
    assert store.count(Doc) == 0
    stats = store.writebehind.stats()
    assert stats.stored == 0 and stats.total_pending == 0 and stats.dead_lettered == 0


BAD_ENQUEUES: dict[str, Callable[[statekeep.Store], object]] = {
    "not an entity": lambda s: s.enqueue({"id": "x", "title": "dict"}),  # type: ignore[arg-type]
    "an entity class": lambda s: s.enqueue(Doc),  # type: ignore[arg-type]
    "None": lambda s: s.enqueue(None),  # type: ignore[arg-type]
    "priority 7": lambda s: s.enqueue(Doc(id="x"), 7),  # type: ignore[arg-type]
    "priority 'high'": lambda s: s.enqueue(Doc(id="x"), "high"),  # type: ignore[arg-type]
    "priority -1": lambda s: s.enqueue(Doc(id="x"), -1),  # type: ignore[arg-type]
    "negative deadline": lambda s: s.enqueue(Doc(id="x"), deadline=-1),
    "deadline nan": lambda s: s.enqueue(Doc(id="x"), deadline=math.nan),
    "deadline inf": lambda s: s.enqueue(Doc(id="x"), deadline=math.inf),
    "deadline text": lambda s: s.enqueue(Doc(id="x"), deadline="soon"),  # type: ignore[arg-type]
    "deadline True": lambda s: s.enqueue(Doc(id="x"), deadline=True),
    "expect_version -1": lambda s: s.enqueue(Doc(id="x"), expect_version=-1),
    "expect_version 1.5": lambda s: s.enqueue(Doc(id="x"), expect_version=1.5),  # type: ignore[arg-type]
    "expect_version '1'": lambda s: s.enqueue(Doc(id="x"), expect_version="1"),  # type: ignore[arg-type]
    "expect_version True": lambda s: s.enqueue(Doc(id="x"), expect_version=True),
    "text with NUL": lambda s: s.enqueue(Doc(id="x", title="a\x00b")),
    "delete without an id": lambda s: s.enqueue_delete(Doc),
    "delete with an empty id": lambda s: s.enqueue_delete(Doc, ""),
    "delete with an int id": lambda s: s.enqueue_delete(Doc, 5),  # type: ignore[arg-type]
    "delete of a non-entity class": lambda s: s.enqueue_delete(dict, "x"),  # type: ignore[arg-type]
    "delete with a bad priority": lambda s: s.enqueue_delete(Doc, "x", priority=9),  # type: ignore[arg-type]
    "delete with a negative deadline": lambda s: s.enqueue_delete(Doc, "x", deadline=-0.5),
    "delete with a bad expect_version": lambda s: s.enqueue_delete(Doc, "x", expect_version=-2),
    "delete of an entity and an id": lambda s: s.enqueue_delete(Doc(id="x"), "y"),
}

EXPECTED = {
    "not an entity": ValidationError,
    "an entity class": ValidationError,
    "None": ValidationError,
    "text with NUL": ValidationError,
    "delete of a non-entity class": ConfigurationError,
}


@pytest.mark.parametrize("case", list(BAD_ENQUEUES))
def test_bad_input_is_refused_with_a_typed_error_and_nothing_is_stored(
    open_store: OpenStore, case: str
) -> None:
    store = open_store(window=0.01)
    with pytest.raises(EXPECTED.get(case, QueryError)):
        BAD_ENQUEUES[case](store)
    nothing_stored(store)


def test_a_good_enqueue_after_bad_ones_is_unaffected(open_store: OpenStore) -> None:
    store = open_store(window=0.01)
    for case, attempt in BAD_ENQUEUES.items():
        if case == "delete of an entity and an id":
            continue  # it queues a delete today (see the test above); not this test's point
        with pytest.raises(StatekeepError):
            attempt(store)
    receipt = store.enqueue(Doc(id="x", title="good"))
    assert receipt.wait_stored(timeout=30)
    assert [d.title for d in store.find(Doc)] == ["good"]


def test_enqueue_after_close_is_refused(open_store: OpenStore) -> None:
    store = open_store(window=0.01)
    assert store.enqueue(Doc(id="x", title="before")).wait_stored(timeout=30)
    store.close()
    for attempt in (
        lambda: store.enqueue(Doc(id="y", title="after")),
        lambda: store.enqueue(Doc(id="y"), Priority.CRITICAL, deadline=1),
        lambda: store.enqueue_delete(Doc, "x"),
        lambda: store.enqueue_delete(Doc(id="x")),
        lambda: store.flush(),
        lambda: store.writebehind,
    ):
        with pytest.raises(StoreClosedError):
            attempt()


def test_enqueue_on_a_store_closed_before_any_write_behind_is_refused(
    open_store: OpenStore,
) -> None:
    store = open_store()
    store.close()
    with pytest.raises(StoreClosedError):
        store.enqueue(Doc(id="y", title="after"))


@pytest.mark.parametrize(
    "options",
    [
        {"max_pending": 0},
        {"max_pending": -5},
        {"policy": "drop_all"},
        {"window": 0},
        {"max_batch": 0},
        {"max_batch": 1.5},
        {"retry_base": -1},
        {"low_max_age": "5"},
        {"block_timeout": "soon"},
        {"drain_timeout": "x"},
        {"on_event": "not a callable"},
        # NaN passed `<= 0`: a NaN window kept NORMAL writes waiting for ever;
        # an infinite one stopped the flusher thread (OverflowError)
        {"window": math.nan},
        {"window": math.inf},
        {"low_max_age": math.nan},
        {"retry_base": math.nan},
        {"retry_cap": math.inf},
        {"block_timeout": math.nan},
        {"drain_timeout": math.nan},
        {"drain_timeout": math.inf},
    ],
    ids=str,
)
def test_bad_options_are_a_configuration_error(
    open_store: OpenStore, options: dict[str, Any]
) -> None:
    with pytest.raises(ConfigurationError):
        open_store(**options)


def test_a_failing_on_event_callback_does_not_stop_the_pipeline(open_store: OpenStore) -> None:
    """The callback is the application's code; the flusher runs it and must
    go on storing writes whatever it raises."""

    def on_event(name: str, info: dict[str, Any]) -> None:
        raise RuntimeError(f"the application's callback failed on {name}")

    store = open_store(window=0.01, on_event=on_event, drain_timeout=1)
    store.save(Doc(id="x", title="stored"))
    stale = store.enqueue(Doc(id="x", title="stale"), expect_version=7)  # a dead_letter event
    with pytest.raises(ConflictError):
        stale.wait_stored(timeout=2)
    later = store.enqueue(Doc(id="y", title="later"))
    assert later.wait_stored(timeout=2), "the flusher stopped"
    assert store.flush(timeout=2)
    assert store.get(Doc, "y").title == "later"


def test_a_conflict_under_expect_version_is_dead_lettered_and_can_be_requeued(
    open_store: OpenStore,
) -> None:
    events = Recorder()
    store = open_store(window=0.01, on_event=events)
    store.save(Doc(id="x", title="stored"))  # version 1
    receipt = store.enqueue(Doc(id="x", title="conditional"), expect_version=2)
    with pytest.raises(ConflictError):
        receipt.wait_stored(timeout=30)
    assert isinstance(receipt.error, ConflictError) and not receipt.stored
    assert store.get(Doc, "x").title == "stored"  # nothing overwritten
    (letter,) = store.writebehind.dead_letters()
    assert (letter.collection, letter.id, letter.delete) == ("wb_doc", "x", False)
    assert "ConflictError" in letter.error
    assert [e["id"] for e in events.of("dead_letter")] == ["x"]
    stats = store.writebehind.stats()
    assert stats.dead_lettered == 1 and stats.total_pending == 0
    assert "x" in (stats.last_error or "")

    stored = store.get(Doc, "x")
    store.save(stored)  # now at version 2: the conditional write can go through
    again = store.writebehind.requeue(letter)
    assert again.wait_stored(timeout=30) and again.version == 3
    assert store.get(Doc, "x").title == "conditional"
    assert store.writebehind.dead_letters() == []


def test_a_matching_expect_version_is_stored(open_store: OpenStore) -> None:
    store = open_store(window=0.01)
    store.save(Doc(id="x", title="stored"))
    receipt = store.enqueue(Doc(id="x", title="conditional"), expect_version=1)
    assert receipt.wait_stored(timeout=30) and receipt.version == 2
    new = store.enqueue(Doc(id="new", title="created"), expect_version=0)
    assert new.wait_stored(timeout=30) and new.version == 1
    delete = store.enqueue_delete(Doc, "x", expect_version=2)
    assert delete.wait_stored(timeout=30)
    assert [d.id for d in store.find(Doc)] == ["new"]


def test_only_the_failing_write_of_a_batch_is_dead_lettered(open_store: OpenStore) -> None:
    store = open_store(window=3600)
    store.save(Doc(id="x", title="stored"))
    good = [store.enqueue(Doc(id=f"g{k}", title="good")) for k in range(10)]
    bad = store.enqueue(Doc(id="x", title="stale"), expect_version=0)
    bad_delete = store.enqueue_delete(Doc, "missing", expect_version=1)
    assert store.flush(timeout=30)
    assert all(r.stored for r in good)
    assert isinstance(bad.error, ConflictError)
    assert bad_delete.error is not None and not bad_delete.stored
    assert sorted(d.id for d in store.writebehind.dead_letters()) == ["missing", "x"]
    assert store.count(Doc) == 11
    assert store.get(Doc, "x").title == "stored"


@pytest.mark.requires("persistent")
def test_dead_letters_are_kept_across_a_restart(open_store: OpenStore) -> None:
    store = open_store(window=0.01)
    store.save(Doc(id="x", title="stored"))
    receipt = store.enqueue(Doc(id="x", title="stale"), expect_version=5)
    with pytest.raises(ConflictError):
        receipt.wait_stored(timeout=30)
    store.close()
    reopened = open_store(window=0.01)
    (letter,) = reopened.writebehind.dead_letters()
    assert letter.id == "x" and "ConflictError" in letter.error
    assert reopened.get(Doc, "x").title == "stored"
    # requeued, it conflicts again (nothing changed), and is dead-lettered again
    again = reopened.writebehind.requeue(letter)
    with pytest.raises(ConflictError):
        again.wait_stored(timeout=30)
    assert len(reopened.writebehind.dead_letters()) == 1
    reopened.close()
    assert [d.id for d in open_store().writebehind.dead_letters()] == ["x"]


def test_a_requeue_that_cannot_be_enqueued_keeps_the_dead_letter(open_store: OpenStore) -> None:
    store = open_store(max_pending=1, policy="raise", window=3600, low_max_age=3600)
    store.save(Doc(id="x", title="stored"))
    store.enqueue(Doc(id="x", title="stale"), expect_version=7)
    assert store.flush(timeout=30)
    [letter] = store.writebehind.dead_letters()
    store.enqueue(Doc(id="y", title="fills the queue"))
    with pytest.raises(statekeep.QueueFullError):
        store.writebehind.requeue(letter)
    assert store.writebehind.dead_letters() == [letter]  # not dropped on the way


def test_an_on_event_callback_may_use_the_store(open_store: OpenStore) -> None:
    """Callbacks run with no engine lock held: reading stats or enqueueing from
    one neither deadlocks nor stalls the pipeline."""
    seen: list[tuple[str, int]] = []
    holder: list[statekeep.Store] = []

    def on_event(name: str, info: dict[str, object]) -> None:
        store = holder[0]
        seen.append((name, store.writebehind.stats().total_pending))
        if name == "dead_letter":
            store.enqueue(Doc(id="from-callback", title="enqueued by a callback"))

    store = open_store(max_pending=10, on_event=on_event)
    holder.append(store)
    receipts = [store.enqueue(Doc(id=f"d{n}", title="t")) for n in range(9)]
    receipts.append(store.enqueue(Doc(id="d0", title="stale"), expect_version=5))
    assert store.flush(timeout=30)
    assert any(name == "health.high" for name, _ in seen), seen
    assert any(name == "dead_letter" for name, _ in seen)
    assert store.flush(timeout=30)
    assert store.get(Doc, "from-callback").title == "enqueued by a callback"


@pytest.mark.parametrize("name", ["max_pending", "max_batch"])
def test_a_bound_beyond_64_bits_is_a_whole_number_as_before(name: str) -> None:
    """max_pending and max_batch bound a queue and a batch, and are never stored:
    any positive int is one (as before write-behind's checks moved to _numbers)."""
    assert getattr(WriteBehindOptions(**cast(dict[str, Any], {name: 2**80})), name) == 2**80
    with statekeep.open("memory://", writebehind={name: 2**80}) as store:
        receipt = store.enqueue(Doc(title="big bound"))
        store.flush(5)
        assert receipt.stored


@pytest.mark.requires("persistent")
def test_a_discarded_dead_letter_is_gone_for_good(open_store: OpenStore) -> None:
    store = open_store(window=0.01)
    store.save(Doc(id="x", title="stored"))
    for stale in (5, 6):
        receipt = store.enqueue(Doc(id="x", title=f"stale {stale}"), expect_version=stale)
        with pytest.raises(ConflictError):
            receipt.wait_stored(timeout=30)
    first, second = store.writebehind.dead_letters()

    assert store.writebehind.discard(first) is True
    assert store.writebehind.discard(first) is False  # not there any more
    assert store.writebehind.dead_letters() == [second]
    store.close()
    reopened = open_store(window=0.01)
    assert [d.journal_record["e"] for d in reopened.writebehind.dead_letters()] == [6]
    assert reopened.get(Doc, "x").title == "stored"
