"""PostgreSQL outbox writers never wait for each other, and a subscriber still
gets every event once, in commit order: an event committed after one that is
still being written waits for it (or for its rollback), it does not pass it."""

from __future__ import annotations

import random
import threading
from collections import defaultdict
from collections.abc import Callable

import pytest

import statekeep

from ._support import Recorder, outbox_events
from .models import Item

pytestmark = pytest.mark.requires("postgresql")

OpenStore = Callable[..., statekeep.Store]

HELD = (
    '{"kind":"created","event":{"event_id":"0held","at":"2026-01-01T00:00:00Z",'
    '"collection":"ev_item","entity_id":"held","version":1}}'
)


@pytest.mark.parametrize("ending", ["commit", "rollback"])
def test_a_writer_does_not_wait_for_one_adding_events_and_is_delivered_after_it(
    open_store: OpenStore, ending: str
) -> None:
    store = open_store(outbox=True, outbox_retention=None, timeout=2)
    store.save(Item(id="first"))
    seen = Recorder()
    subscription = store.subscribe("all", seen)
    assert subscription.wait_idle(20)
    backend = store.backend
    appended, release, done = threading.Event(), threading.Event(), threading.Event()

    def hold() -> None:  # a transaction that has added its events, not yet committed
        backend.begin()
        try:
            backend.append_events([HELD])
            appended.set()
            release.wait(30)
        finally:
            if ending == "commit":
                backend.commit()
            else:
                backend.rollback()
            done.set()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert appended.wait(20)
        store.save(Item(id="quick"))  # the old global lock made this a lock timeout
        # "quick" came after "held" took its position: not delivered before it
        # ends, and so not idle: "quick" was committed before the call
        assert not subscription.wait_idle(0.5)
        assert [e.entity_id for e in seen.events] == ["first"]
    finally:
        release.set()
        holder.join()
    assert done.is_set()
    assert subscription.wait_idle(20)
    expected = ["first", "held", "quick"] if ending == "commit" else ["first", "quick"]
    assert [e.entity_id for e in seen.events] == expected


def test_concurrent_writers_of_every_size_each_event_once_in_order(
    open_store: OpenStore,
) -> None:
    store = open_store(outbox=True, outbox_retention=None)
    seen = Recorder()
    subscription = store.subscribe("all", seen)
    errors: list[BaseException] = []

    def write(k: int) -> None:
        rng = random.Random(k)
        items = [Item(id=f"w{k}-{n}") for n in range(200)]
        try:
            for round in range(15):  # sizes on both sides of the COPY threshold (100)
                batch = rng.sample(items, rng.choice([1, 3, 19, 150]))
                for item in batch:
                    item.n = round
                if len(batch) > 19 or rng.random() < 0.5:
                    store.save_many(batch)
                else:
                    for item in batch:
                        store.save(item)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    writers = [threading.Thread(target=write, args=(k,)) for k in range(4)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    assert errors == []
    assert subscription.wait_idle(60)
    committed = [e.event_id for e in outbox_events(store)]
    assert [e.event_id for e in seen.events] == committed
    versions: dict[str, int] = defaultdict(int)
    for event in seen.events:  # per entity, versions one after another
        assert event.version == versions[event.entity_id] + 1, event
        versions[event.entity_id] = event.version


def test_an_outbox_of_the_earlier_version_is_brought_up_to_date(
    store_url: str, open_store: OpenStore
) -> None:
    """Made by a version that held one lock through commit: its events have
    no markers, its sequence moves by one. Opening it adds what is missing."""
    import psycopg

    base, _, query = store_url.partition("?")
    schema = dict(part.split("=", 1) for part in query.split("&"))["schema"]
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        admin.execute(
            f'CREATE TABLE "{schema}".statekeep_outbox '
            "(position bigserial PRIMARY KEY, body text NOT NULL)"
        )
        admin.execute(
            f'INSERT INTO "{schema}".statekeep_outbox (body) VALUES (%s), (%s)',
            (HELD, HELD.replace("0held", "1held").replace('"held"', '"held2"')),
        )
    store = open_store(outbox=True, outbox_retention=None)
    seen = Recorder()
    subscription = store.subscribe("all", seen)
    assert subscription.wait_idle(20)
    store.save(Item(id="new"))
    assert subscription.wait_idle(20)
    assert [e.entity_id for e in seen.events] == ["held", "held2", "new"]
