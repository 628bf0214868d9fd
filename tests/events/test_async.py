"""Coroutine handlers: they run on the loop that was running where they
subscribed (else on the bus's own loop thread), scheduled without waiting,
so a writer never waits for them."""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import Coroutine
from typing import Any

import pytest

import statekeep

from ._support import Recorder, close_store, wait_for
from .models import Todo


def test_a_handler_subscribed_in_a_loop_runs_on_it_and_never_blocks_the_writer(
    store: statekeep.Store,
) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop_thread = threading.get_ident()
        gate = asyncio.Event()  # set only after both saves returned
        started: list[tuple[str, bool, bool]] = []
        finished: list[str] = []
        all_done = asyncio.Event()

        async def handler(event: statekeep.Event) -> None:
            on_loop = asyncio.get_running_loop() is loop
            started.append((event.entity_id, on_loop, threading.get_ident() == loop_thread))
            await gate.wait()
            finished.append(event.entity_id)
            if len(finished) == 3:
                all_done.set()

        store.on(Todo, handler)
        # on the loop's own thread: save() returns before the handler can start
        store.save(Todo(id="a", title="x"))
        assert started == []
        # from other threads (as an async facade would): save() returns while the
        # handler waits on the gate; if it waited for the handler it would never return
        try:
            await asyncio.wait_for(asyncio.to_thread(store.save, Todo(id="b", title="x")), 10)

            def in_a_transaction() -> None:
                with store.transaction():
                    store.save(Todo(id="c", title="x"))

            await asyncio.wait_for(asyncio.to_thread(in_a_transaction), 10)
            await asyncio.sleep(0.05)
            assert finished == []
        finally:
            gate.set()  # a failure above must not leave the writer thread stuck
        await asyncio.wait_for(all_done.wait(), 10)
        assert started == [("a", True, True), ("b", True, True), ("c", True, True)]
        assert finished == ["a", "b", "c"]

    asyncio.run(main())
    assert store.bus.stats.delivered == 3
    assert store.bus._own_loop is None  # no loop thread was started


def test_a_handler_subscribed_outside_a_loop_runs_on_the_bus_loop_thread(
    store: statekeep.Store,
) -> None:
    gate = threading.Event()
    ran: list[tuple[str, str, asyncio.AbstractEventLoop]] = []
    finished: list[str] = []

    async def handler(event: statekeep.Event) -> None:
        ran.append((event.entity_id, threading.current_thread().name, asyncio.get_running_loop()))
        while not gate.is_set():
            await asyncio.sleep(0.001)
        finished.append(event.entity_id)

    store.on(Todo.Created, handler)
    try:
        store.save(Todo(id="a", title="x"))
        store.save(Todo(id="b", title="x"))
        assert finished == []  # the writer did not wait for the handler
    finally:
        gate.set()
    wait_for(lambda: len(finished) == 2, what="the async handler")
    assert [(id, thread) for id, thread, _ in ran] == [
        ("a", "statekeep-events-loop"),
        ("b", "statekeep-events-loop"),
    ]
    assert ran[0][2] is ran[1][2] is store.bus._own_loop
    wait_for(lambda: store.bus.stats.delivered == 2, what="the delivered count")


def test_sync_and_async_handlers_together(store: statekeep.Store) -> None:
    recorder = Recorder()
    got: list[str] = []

    async def handler(event: statekeep.Event) -> None:
        got.append(event.entity_id)

    store.on(Todo, handler, priority=5)
    store.on(Todo, recorder)
    store.save_many([Todo(id=f"t{n}", title="x") for n in range(5)])
    assert len(recorder) == 5  # the sync handler ran before save_many returned
    wait_for(lambda: len(got) == 5, what="the async handler")
    assert got == [f"t{n}" for n in range(5)]  # scheduled in order


def test_a_failing_async_handler_is_logged_counted_and_reported(
    store: statekeep.Store, caplog: pytest.LogCaptureFixture
) -> None:
    reports: list[tuple[str, type[BaseException]]] = []
    store.bus.on_error.append(lambda s, e, x: reports.append((e.entity_id, type(x))))

    async def handler(event: statekeep.Event) -> None:
        await asyncio.sleep(0)
        raise ValueError("async handler failed")

    store.on(Todo, handler)
    with caplog.at_level(logging.ERROR, logger="statekeep.events"):
        assert store.save(Todo(id="a", title="x")).version == 1
        wait_for(lambda: bool(reports), what="the error report")
    assert reports == [("a", ValueError)]
    assert store.bus.stats.failed == 1
    assert any(r.name == "statekeep.events" and r.exc_info for r in caplog.records)


def test_an_object_with_an_async_call_is_an_async_handler(store: statekeep.Store) -> None:
    got: list[str] = []

    class Handler:
        async def __call__(self, event: statekeep.Event) -> None:
            got.append(threading.current_thread().name)

    subscription = store.on(Todo, Handler())
    assert subscription.is_async
    store.save(Todo(id="a", title="x"))
    wait_for(lambda: got == ["statekeep-events-loop"], what="the handler")


def test_regression_bus_close_leaves_its_loop_open(open_store: object) -> None:
    store = open_store()  # type: ignore[operator]

    async def handler(event: statekeep.Event) -> None:
        pass

    store.on(Todo, handler)
    loop = store.bus._own_loop
    assert loop is not None
    try:
        store.close()
        wait_for(lambda: not loop.is_running(), what="the loop to stop")
        assert loop.is_closed()
    finally:
        if not loop.is_closed():
            loop.close()  # what close_store() does for every other test


def test_regression_a_handler_whose_loop_closed_leaves_a_coroutine_never_awaited(
    store: statekeep.Store,
) -> None:
    made: list[Coroutine[Any, Any, None]] = []

    async def handler(event: statekeep.Event) -> None:
        pass

    def making(event: statekeep.Event) -> Coroutine[Any, Any, None]:
        made.append(handler(event))
        return made[-1]

    async def subscribe() -> statekeep.Subscription:
        return store.on(Todo, handler)

    subscription = asyncio.run(subscribe())  # the loop it ran on is closed now
    subscription.handler = making  # to see the coroutine the bus makes
    store.save(Todo(id="a", title="x"))  # the handler fails (counted), the save does not
    assert store.get(Todo, "a").version == 1
    assert store.bus.stats.failed == 1
    (coroutine,) = made
    state = inspect.getcoroutinestate(coroutine)
    coroutine.close()  # else it warns when collected, in whichever test runs then
    assert state == inspect.CORO_CLOSED


def test_close_store_helper_closes_the_bus_loop(open_store: object) -> None:
    """The fixture's workaround for the bug above works (so no test leaks a loop)."""
    store = open_store()  # type: ignore[operator]

    async def handler(event: statekeep.Event) -> None:
        pass

    store.on(Todo, handler)
    loop = store.bus._own_loop
    close_store(store)
    assert loop is not None and loop.is_closed()
