"""A handler that raises breaks neither the write nor the other handlers: the
error is logged, counted and passed to the bus's on_error callbacks."""

from __future__ import annotations

import logging
from typing import Any

import pytest

import statekeep

from ._support import Recorder
from .models import Note, Todo


class HandlerError(Exception):
    pass


def failing(event: statekeep.Event) -> None:
    raise HandlerError(f"cannot handle {event.name}")


def test_a_raising_handler_breaks_neither_the_write_nor_the_others(
    store: statekeep.Store, caplog: pytest.LogCaptureFixture
) -> None:
    before, after = Recorder(), Recorder()
    store.on(Todo, before, priority=1)
    store.on(Todo, failing)
    store.on(Todo, after, priority=-1)
    reports: list[tuple[statekeep.Subscription, statekeep.Event, BaseException]] = []
    bus = store.bus
    bus.on_error.append(lambda s, e, x: reports.append((s, e, x)))

    with caplog.at_level(logging.ERROR, logger="statekeep.events"):
        saved = store.save(Todo(id="a", title="x"))
        with store.transaction():
            store.save(Todo(id="b", title="x"))
            store.save(Note(id="n", text="x"))

    assert saved.version == 1
    assert store.get(Todo, "a").version == 1 and store.count(Todo) == 2
    assert store.count(Note) == 1
    assert before.seen == after.seen == [("todo.created", "a", 1), ("todo.created", "b", 1)]

    assert bus.stats.failed == 2
    assert bus.stats.delivered == 4
    assert [(s.handler, e.entity_id, type(x)) for s, e, x in reports] == [
        (failing, "a", HandlerError),
        (failing, "b", HandlerError),
    ]
    records = [r for r in caplog.records if r.name == "statekeep.events"]
    assert len(records) == 2
    assert all(r.levelno == logging.ERROR and r.exc_info for r in records)
    assert "todo.created" in records[0].getMessage()
    assert records[0].exc_info is not None and records[0].exc_info[0] is HandlerError


def test_a_raising_on_error_callback_is_logged_too(
    store: statekeep.Store, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    store.on(Todo, failing)
    store.on(Todo, recorder, priority=-1)
    reported: list[Any] = []

    def broken(*args: Any) -> None:
        raise RuntimeError("the reporter is broken too")

    store.bus.on_error.extend([broken, lambda *args: reported.append(args)])
    with caplog.at_level(logging.ERROR, logger="statekeep.events"):
        store.save(Todo(id="a", title="x"))
    assert len(recorder) == 1 and len(reported) == 1
    assert any("on_error" in r.getMessage() for r in caplog.records)


def test_a_failing_handler_does_not_keep_a_transaction_from_delivering(
    store: statekeep.Store,
) -> None:
    recorder = Recorder()
    store.on(Todo.Created, failing, priority=1)
    store.on(Todo.Created, recorder)
    store.save_many([Todo(id=f"t{n}", title="x") for n in range(5)], chunk_size=2)
    assert [e.entity_id for e in recorder.events] == [f"t{n}" for n in range(5)]
    assert store.bus.stats.failed == 5


def test_a_failing_handler_under_write_behind(store: statekeep.Store) -> None:
    recorder = Recorder()
    store.on(Todo, failing)
    store.on(Todo, recorder)
    receipts = [store.enqueue(Todo(id=f"t{n}", title="x")) for n in range(10)]
    assert store.flush(10)
    assert all(r.stored for r in receipts)
    assert store.count(Todo) == 10 and len(recorder) == 10
    assert store.writebehind.dead_letters() == []
    assert store.bus.stats.failed == 10


def test_a_failure_is_also_an_event(store: statekeep.Store) -> None:
    """HandlerFailed names the handler, the event and the error; a handler of
    HandlerFailed that fails itself makes no further one (no loop)."""
    failures: list[statekeep.HandlerFailed] = []
    store.on(Todo.Created, failing)
    store.on(statekeep.HandlerFailed, failures.append)
    store.on(statekeep.HandlerFailed, failing)  # fails on every failure event

    saved = store.save(Todo(id="a", title="x"))

    assert saved.version == 1
    assert len(failures) == 1
    failure = failures[0]
    assert (failure.handler, failure.failed_event, failure.collection) == (
        "failing",
        "todo.created",
        "statekeep",
    )
    assert failure.error == "HandlerError: cannot handle todo.created"
    assert failure.entity_id == "a" and failure.version == 1
    assert store.bus.stats.failed == 2  # the handler, and the failure handler
