"""Waiting on the write-behind engine from its own thread (an event handler
of a write-behind write, an on_event callback) raises DeadlockError at once
(issue 11, defect 7): that wait could never end."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import statekeep
from statekeep import Event, Priority, Receipt

from ._exact import Mark, attempt
from .conftest import OpenFaulty, OpenStore


@pytest.mark.parametrize("wait", ["flush", "wait_stored", "wait_durable"])
def test_waiting_on_the_engine_from_an_event_handler_raises_at_once(
    open_store: OpenStore, wait: str
) -> None:
    """Defect 7: a handler of a write-behind write runs on the engine's
    thread; waiting there for the engine raises DeadlockError at once.
    wait_durable() of a write already in the journal returns True: it needs
    no wait."""
    store = open_store(window=0.01)
    receipts: dict[str, Receipt] = {}
    enqueued = threading.Event()
    outcome: list[str] = []
    raised: list[BaseException] = []

    def handler(event: Event) -> None:
        assert enqueued.wait(10)
        receipt = receipts["a"]
        calls = {
            "flush": lambda: store.flush(timeout=0.5),
            "wait_stored": lambda: receipt.wait_stored(timeout=0.5),
            "wait_durable": lambda: receipt.wait_durable(timeout=0.5),
        }
        outcome.append(attempt(calls[wait], raised))

    store.on(Mark.Created, handler)
    receipts["a"] = store.enqueue(Mark(id="a", title="x"))
    enqueued.set()
    assert store.flush(timeout=30)
    if wait == "wait_durable" and outcome[0].startswith("returned True"):
        # durable already (in the journal): the answer needs no wait
        assert receipts["a"].durable, outcome
    else:
        assert len(outcome) == 1 and outcome[0].startswith("raised DeadlockError"), outcome
        assert isinstance(raised[0], statekeep.DeadlockError)
    assert receipts["a"].stored


def test_flush_from_an_on_event_callback_raises_at_once(open_faulty: OpenFaulty) -> None:
    """Defect 7: on_event callbacks of the engine's thread (here "retry")
    raise DeadlockError from flush() too."""
    opened: list[statekeep.Store] = []
    outcome: list[str] = []

    def on_event(name: str, info: dict[str, Any]) -> None:
        if name == "retry" and not outcome:
            outcome.append(attempt(lambda: opened[0].flush(timeout=0.5)))

    store, db = open_faulty(window=0.01, retry_base=0.01, retry_cap=0.05, on_event=on_event)
    opened.append(store)
    db.outage(0.3)
    assert store.enqueue(Mark(id="a", title="x"), Priority.CRITICAL).wait_stored(timeout=30)
    assert len(outcome) == 1 and outcome[0].startswith("raised DeadlockError"), outcome
