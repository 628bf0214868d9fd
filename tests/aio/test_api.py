"""The AsyncStore's own surface: events on the loop, write-behind inside
blocks, a shared sync Store, Active Record, bad input, the lifecycle."""

from __future__ import annotations

import asyncio
import threading

import pytest

import statekeep
import statekeep.aio
from conformance.models import Note, Todo

from .conftest import with_store


def test_coroutine_handlers_run_on_the_loop_after_commit_only(store_url: str) -> None:
    async def body(store: statekeep.aio.AsyncStore) -> None:
        loop = asyncio.get_running_loop()
        seen: list[tuple[str, bool]] = []
        arrived = asyncio.Event()

        async def on_created(event: statekeep.Created) -> None:
            seen.append((event.entity.title, asyncio.get_running_loop() is loop))
            arrived.set()

        store.on(Todo.Created, on_created)
        with pytest.raises(KeyError):
            async with store.transaction():
                await store.save(Todo(title="rolled back"))
                raise KeyError
        await store.save(Todo(title="committed"))
        await asyncio.wait_for(arrived.wait(), 5)
        await asyncio.sleep(0.05)
        assert seen == [("committed", True)]

    with_store(store_url, body)


def test_enqueue_inside_a_block_waits_for_its_commit_or_is_dropped(store_url: str) -> None:
    async def body(store: statekeep.aio.AsyncStore) -> None:
        with pytest.raises(RuntimeError):
            async with store.transaction():
                dropped = store.enqueue(Todo(id="dropped", title="dropped"))
                raise RuntimeError
        with pytest.raises(statekeep.TransactionError):
            await dropped
        async with store.transaction():
            kept = store.enqueue(Todo(id="kept", title="kept"))
            deleted = store.enqueue_delete(Note, "nothing-there")
        await kept
        await deleted  # a delete of what is not there: done, as write-behind does it
        assert [t.id for t in await store.find(Todo).all()] == ["kept"]
        assert await store.flush(5)

    with_store(store_url, body)


def test_an_async_store_over_a_sync_store_shares_it(store_url: str) -> None:
    with statekeep.open(store_url) as sync:
        astore = statekeep.aio.AsyncStore(sync)
        assert astore.sync is sync and astore.backend is sync.backend

        async def main() -> None:
            created: list[str] = []
            astore.on(Todo.Created, lambda event: created.append(event.entity.title))
            writer = threading.Thread(target=lambda: sync.save(Todo(title="from a thread")))
            writer.start()
            await astore.save(Todo(title="from a task"))
            writer.join()
            assert sorted(created) == ["from a task", "from a thread"]
            assert await astore.count(Todo) == 2

        asyncio.run(main())
        asyncio.run(astore.close())
        assert sync.closed


def test_active_record_methods_need_the_matching_default(store_url: str) -> None:
    async def body(store: statekeep.aio.AsyncStore) -> None:
        with statekeep.use(store):
            todo = await Todo(title="ar").asave()
            assert (await Todo.aget(todo.id)).title == "ar"
            assert await Todo.acount() == 1
            assert [t.id for t in await Todo.afind(title="ar").all()] == [todo.id]
            with pytest.raises(statekeep.ConfigurationError, match="asave"):
                todo.save()
            await todo.adelete()
            assert await Todo.acount() == 0
        with statekeep.use(store.sync), pytest.raises(statekeep.ConfigurationError, match="aio"):
            await Todo(title="x").asave()

    with_store(store_url, body)


BAD_CALLS = [
    ("save", ("not an entity",), {}),
    ("save_many", ("not entities",), {}),
    ("save_many", (Todo(title="one"),), {}),
    ("save_many", ([],), {"chunk_size": 0}),
    ("save_many", ([Todo(title="a"), "b"],), {}),
    ("get", (Todo, None), {}),
    ("get", (Todo, "a\x00b"), {}),
    ("get", (str, "seed"), {}),
    ("get_many", (Todo, "seed"), {}),
    ("delete", (Todo(title="x"), "id"), {}),
    ("delete", (Todo, None), {}),
    ("count", (Todo,), {"nope": 1}),
]


@pytest.mark.parametrize(("name", "args", "kwargs"), BAD_CALLS, ids=lambda v: repr(v)[:30])
def test_bad_input_gets_the_sync_stores_typed_error_and_changes_nothing(
    store_url: str, name: str, args: tuple[object, ...], kwargs: dict[str, object]
) -> None:
    async def body(store: statekeep.aio.AsyncStore) -> None:
        await store.save(Todo(id="seed", title="seed"))
        with pytest.raises(statekeep.StatekeepError) as sync_error:
            getattr(store.sync, name)(*args, **kwargs)
        with pytest.raises(type(sync_error.value)):
            await getattr(store, name)(*args, **kwargs)
        assert [(t.id, t.version, t.title) for t in await store.find(Todo).all()] == [
            ("seed", 1, "seed")
        ]

    with_store(store_url, body)


def test_bad_input_of_what_is_not_awaited(store_url: str) -> None:
    async def body(store: statekeep.aio.AsyncStore) -> None:
        with pytest.raises(statekeep.UnknownFieldError):
            store.find(Todo, nope=1)
        with pytest.raises(statekeep.ValidationError):
            store.enqueue("not an entity")  # type: ignore[arg-type]
        with pytest.raises(statekeep.ConfigurationError):
            statekeep.aio.AsyncStore("sqlite://")  # type: ignore[arg-type]
        with pytest.raises(statekeep.ConfigurationError):
            await statekeep.aio.open("memory://", threads=0)
        results = store.find(Todo)
        assert await results.all() == []
        with pytest.raises(statekeep.QueryError, match="read already"):
            await results.all()

    with_store(store_url, body)


def test_after_close_every_call_is_refused(store_url: str) -> None:
    async def main() -> None:
        store = await statekeep.aio.open(store_url)
        await store.save(Todo(title="before"))
        await store.close()
        await store.close()  # twice: nothing more
        assert store.closed
        for call in (store.save(Todo(title="after")), store.get(Todo, "x"), store.count(Todo)):
            with pytest.raises(statekeep.StoreClosedError):
                await call
        with pytest.raises(statekeep.StoreClosedError):
            store.find(Todo)
        with pytest.raises(statekeep.StoreClosedError):
            async with store.transaction():
                pass

    asyncio.run(main())
