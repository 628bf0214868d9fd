"""A durable subscription reading the outbox while other writers commit gets
every event exactly once, in commit order: on files:// a listing of the
outbox folder is no snapshot (it may hold event n + 1 but not n), and a reader
that moved its checkpoint past n would skip n for good."""

from __future__ import annotations

import threading
from collections.abc import Callable

import statekeep

from ._support import Recorder, outbox_events
from .conftest import Backend
from .models import Item

BEFORE = 2_000  # transactions already in the outbox: a long listing on files://
WRITERS, EACH = 3, 300

OpenStore = Callable[..., statekeep.Store]


def test_a_subscriber_misses_nothing_while_writers_commit(
    open_store: OpenStore, backend: Backend
) -> None:
    fast = {"fsync": False} if "files" in backend.capabilities else {}
    store = open_store(outbox=True, outbox_retention=None, **fast)
    for n in range(BEFORE):
        store.save(Item(id=f"before{n}"))
    seen = Recorder()
    subscription = store.subscribe("all", seen)
    assert subscription.wait_idle(60)
    errors: list[BaseException] = []

    def write(prefix: str) -> None:
        try:
            for n in range(EACH):
                store.save(Item(id=f"{prefix}{n}", n=n))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    writers = [threading.Thread(target=write, args=(f"w{k}-",)) for k in range(WRITERS)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    assert errors == []
    assert subscription.wait_idle(60)

    committed = [event.event_id for event in outbox_events(store)]
    assert len(committed) == BEFORE + WRITERS * EACH
    delivered = [event.event_id for event in seen.events]
    missed = set(committed) - set(delivered)
    assert not missed, f"{len(missed)} of {len(committed)} events never delivered"
    assert delivered == committed  # each once, in commit order
