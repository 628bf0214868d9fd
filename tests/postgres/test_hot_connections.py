"""The get hot path (issue 19): idle connections kept out of the pool, last in
first out (see _postgres_pool), and a get outside a transaction that takes
one with no context manager or retry object.

Each test pins what the shortcut must not lose: a get in a transaction sees
its writes, the pool's bound holds and nobody starves behind a hot
connection, a dead connection is replaced, close and fork leave nothing
behind, another asyncio task does not read through a task's transaction.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

import statekeep
import statekeep.aio
from statekeep.backends import _postgres_pool
from statekeep.errors import NotFoundError, StatekeepError

from .conftest import MakeUrl
from .models import Doc


def backend_pid(store: statekeep.Store) -> int:
    """The server process of the connection a get would use now."""
    backend: Any = store.backend
    with backend._connections.borrowed("finding its pid") as conn:
        pid: int = conn.info.backend_pid
    return pid


def sessions(server: str, application: str) -> int:
    """The connections open on the server under an application_name."""
    with psycopg.connect(server, autocommit=True) as admin:
        row = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (application,)
        ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def url(make_url: MakeUrl) -> str:
    return make_url()


@pytest.fixture
def store(url: str) -> Iterator[statekeep.Store]:
    with statekeep.open(url) as opened:
        opened.save_many([Doc(id=f"d{i}", title=f"t{i}", n=i) for i in range(20)])
        yield opened


def test_gets_one_after_another_use_one_connection_even_when_the_pool_has_grown(
    make_url: MakeUrl,
) -> None:
    """After a burst of threads the pool holds several connections; a thread
    reading alone then keeps to one (psycopg_pool would hand them out in turn)."""
    with statekeep.open(make_url(pool_min=4, pool_max=8)) as store:
        store.save_many([Doc(id=f"d{i}", n=i) for i in range(10)])
        barrier = threading.Barrier(6)

        def burst() -> None:
            with store.transaction():
                barrier.wait(timeout=10)
                store.get(Doc, "d1")

        threads = [threading.Thread(target=burst) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=20)
        first = backend_pid(store)
        for i in range(30):
            assert store.get(Doc, f"d{i % 10}").n == i % 10
            assert backend_pid(store) == first


def test_a_get_in_a_transaction_sees_its_own_writes_and_others_do_not(
    store: statekeep.Store,
) -> None:
    seen_outside: list[int] = []
    with store.transaction():
        doc = store.get(Doc, "d1")
        doc.n = 100
        store.save(doc)
        store.save(Doc(id="new", n=7))
        assert store.get(Doc, "d1").n == 100
        assert store.get(Doc, "new").n == 7

        def other() -> None:
            seen_outside.append(store.get(Doc, "d1").n)
            with pytest.raises(NotFoundError):
                store.get(Doc, "new")

        thread = threading.Thread(target=other)
        thread.start()
        thread.join(timeout=10)
        assert seen_outside == [1]
    assert store.get(Doc, "d1").n == 100
    assert store.get(Doc, "new").n == 7


def test_a_rolled_back_write_is_not_read_by_the_next_get(store: statekeep.Store) -> None:
    with pytest.raises(RuntimeError), store.transaction():
        store.save(Doc(id="gone", n=1))
        raise RuntimeError("roll back")
    with pytest.raises(NotFoundError):
        store.get(Doc, "gone")
    with store.transaction():  # the connection went back clean: a new transaction works
        store.save(Doc(id="kept", n=2))
    assert store.get(Doc, "kept").n == 2


def test_one_connection_serves_gets_and_transactions_of_many_threads(
    make_url: MakeUrl,
) -> None:
    """pool_max=1: the one connection is hot between gets, and a transaction
    (or a get) of another thread must get it, never wait out the timeout."""
    with statekeep.open(make_url(pool_min=1, pool_max=1, timeout=5)) as store:
        store.save_many([Doc(id=f"d{i}", n=i) for i in range(10)])
        errors: list[BaseException] = []

        def work(k: int) -> None:
            try:
                for i in range(40):
                    if i % 4 == k % 4:
                        with store.transaction():
                            doc = store.get(Doc, f"d{k}")
                            doc.n += 1
                            store.save(doc)
                    else:
                        store.get(Doc, f"d{(k + i) % 10}")
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in threads)
        assert errors == []
        assert [store.get(Doc, f"d{k}").n for k in range(8)] == [k + 10 for k in range(8)]


def test_a_killed_hot_connection_is_replaced_by_the_next_get(
    server: str, store: statekeep.Store
) -> None:
    pid = backend_pid(store)
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    assert store.get(Doc, "d3").n == 3  # once more, on another connection
    assert backend_pid(store) != pid
    assert store.get(Doc, "d4").n == 4


def test_every_connection_killed_the_next_get_works(server: str, make_url: MakeUrl) -> None:
    """The hot connections (several, after a burst) and the pool's all dead:
    the first get meets a dead one, sends the hot ones back to the pool to be
    checked, and reads on a fresh connection."""
    name = "sk_hot_killed"
    with statekeep.open(make_url(pool_min=3, pool_max=3, application_name=name)) as store:
        store.save(Doc(id="a", n=1))
        barrier = threading.Barrier(3)

        def burst() -> None:
            with store.transaction():
                barrier.wait(timeout=10)

        threads = [threading.Thread(target=burst) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=20)
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s",
                (name,),
            )
        for i in range(5):
            assert store.get(Doc, "a").n == 1, i


def test_close_closes_the_hot_connections(server: str, make_url: MakeUrl) -> None:
    url = make_url(application_name="sk_hot_close")
    store = statekeep.open(url)
    store.save(Doc(id="a"))
    for _ in range(3):
        store.get(Doc, "a")
    assert sessions(server, "sk_hot_close") >= 1
    store.close()
    assert sessions(server, "sk_hot_close") == 0
    with pytest.raises(StatekeepError):
        store.get(Doc, "a")


def test_a_forked_child_reads_on_its_own_connections(store: statekeep.Store) -> None:
    parent_pid = backend_pid(store)
    assert store.get(Doc, "d2").n == 2  # the parent's hot connection exists
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's result goes through the pipe
        status = 1
        try:
            ok = store.get(Doc, "d5").n == 5 and backend_pid(store) != parent_pid
            status = 0 if ok else 2
        finally:
            os.write(write, bytes([status]))
            os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.close(read)
    os.waitpid(child, 0)
    assert answer == b"\x00"
    assert store.get(Doc, "d6").n == 6  # the parent's connection is whole
    assert backend_pid(store) == parent_pid


def test_another_task_does_not_read_through_a_tasks_transaction(url: str) -> None:
    """Two asyncio tasks on one thread: a get of the one without the
    transaction reads committed data, on a connection of its own."""
    with statekeep.open(url) as store:
        store.save(Doc(id="a", n=1))

        async def main() -> None:
            in_block = asyncio.Event()
            done = asyncio.Event()

            async def writer() -> None:
                with pytest.raises(RuntimeError), store.transaction():
                    doc = store.get(Doc, "a")
                    doc.n = 2
                    store.save(doc)
                    assert store.get(Doc, "a").n == 2
                    in_block.set()
                    await done.wait()
                    raise RuntimeError("roll back")

            async def reader() -> None:
                await in_block.wait()
                try:
                    assert store.get(Doc, "a").n == 1  # not the other task's write
                finally:
                    done.set()

            await asyncio.gather(writer(), reader())

        asyncio.run(main())
        assert store.get(Doc, "a").n == 1


def test_async_gets_of_many_tasks(url: str) -> None:
    async def main() -> None:
        store = await statekeep.aio.open(url)
        try:
            await store.save_many([Doc(id=f"d{i}", n=i) for i in range(50)])
            docs = await asyncio.gather(*(store.get(Doc, f"d{i}") for i in range(50)))
            assert [d.n for d in docs] == list(range(50))
        finally:
            await store.close()

    asyncio.run(main())


def test_the_pool_gets_the_hot_connection_back_now_and_then(
    monkeypatch: pytest.MonkeyPatch, store: statekeep.Store
) -> None:
    """Every RETURN-th give-back goes to the pool, which applies its own rules
    (max_lifetime) to it; the others stay hot, out of the pool's sight."""
    monkeypatch.setattr(_postgres_pool, "RETURN", 4)
    backend: Any = store.backend
    pool = backend._connections._pool
    before = pool.get_stats()["requests_num"]
    for i in range(20):
        assert store.get(Doc, f"d{i}").n == i
    checkouts = pool.get_stats()["requests_num"] - before
    assert 4 <= checkouts <= 6
