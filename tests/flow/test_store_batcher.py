"""`store.batcher(Model)` on every backend: entities added one at a time are
saved a batch at a time, each handle gives the saved entity, one bad entity
fails alone, bad input is refused at add(), and the async twin."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import statekeep
import statekeep.aio
from conformance.models import Note, Todo
from statekeep.errors import ConfigurationError, ConflictError, StoreClosedError, ValidationError


def test_added_entities_are_saved_a_batch_at_a_time(store_url: str) -> None:
    with statekeep.open(store_url) as store:
        with store.batcher(Todo, max_size=100, max_delay=0.01) as batcher:
            todos = [Todo(title=f"t{i}") for i in range(1000)]
            handles = [batcher.add(todo) for todo in todos]
            saved = [handle.result(30) for handle in handles]
        assert saved == todos and {t.version for t in saved} == {1}
        assert store.count(Todo) == 1000
        stats = batcher.stats().counts
        assert stats["succeeded"] == 1000 and 10 <= stats["batches"] <= 1000


def test_one_stale_entity_fails_alone(store_url: str) -> None:
    with statekeep.open(store_url) as store:
        stale = store.save(Todo(id="stale", title="first"))
        store.save(stale.model_copy(update={"title": "second"}))  # moves it to version 2
        with store.batcher(Todo, max_size=50, max_delay=0.01) as batcher:
            good = [batcher.add(Todo(title=f"g{i}")) for i in range(20)]
            bad = batcher.add(stale)  # version 1: stale
            more = [batcher.add(Todo(title=f"h{i}")) for i in range(20)]
            with pytest.raises(ConflictError):
                bad.result(30)
            assert all(h.result(30).version == 1 for h in good + more)
        assert store.count(Todo) == 41
        assert store.get(Todo, "stale").title == "second"


def test_bad_input_is_refused_at_add_and_nothing_is_stored(store_url: str) -> None:
    with statekeep.open(store_url) as store:
        with pytest.raises(ConfigurationError):
            store.batcher(int)  # type: ignore[type-var]
        with pytest.raises(ConfigurationError):
            store.batcher(Todo, process=print)
        with pytest.raises(ConfigurationError):
            store.batcher(Todo, max_size=0)
        with store.batcher(Todo, max_delay=0.01) as batcher:
            with pytest.raises(ValidationError):
                batcher.add(Note(text="not a todo"))  # type: ignore[arg-type]
            with pytest.raises(ValidationError):
                batcher.add("nothing")  # type: ignore[arg-type]
        assert store.count(Todo) == 0 and store.count(Note) == 0


def test_a_batcher_left_open_when_the_store_closes_fails_its_items() -> None:
    store = statekeep.open("memory://")
    batcher = store.batcher(Todo, max_delay=60.0)
    handle = batcher.add(Todo(title="late"))
    store.close()
    batcher.flush(5)
    with pytest.raises(StoreClosedError):
        handle.result(5)
    batcher.close()


def test_the_async_store_batcher_saves_off_the_loop(store_url: str) -> None:
    async def main() -> None:
        async with await statekeep.aio.open(store_url) as store:
            async with store.batcher(Todo, max_size=64, max_delay=0.005) as batcher:
                handles = [await batcher.add(Todo(title=f"a{i}")) for i in range(300)]
                saved: list[Any] = [await handle for handle in handles]
            assert len({t.id for t in saved}) == 300
            assert await store.count(Todo) == 300

    asyncio.run(main())
