# mypy: ignore-errors
# (hostile input: these tests pass the wrong types on purpose)
"""Hostile-user attacks on statekeep.aio.open(): options, unreachable servers, loops."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest

import statekeep
import statekeep.aio
from conformance.models import Todo

from .conftest import LagProbe


def test_open_passes_keyword_options_to_the_store(store_url: str) -> None:
    """`statekeep.aio.open(url, writebehind={...})` is how the docs configure
    write-behind: the options must reach statekeep.Store, not crash with
    TypeError inside the worker hop."""

    async def main() -> None:
        store = await statekeep.aio.open(
            store_url, writebehind={"max_pending": 10, "drain_on_sigterm": False}
        )
        try:
            assert store.writebehind.options.max_pending == 10
        finally:
            await store.close()

    asyncio.run(main())


def test_open_passes_outbox_option(store_url: str) -> None:
    async def main() -> None:
        async with await statekeep.aio.open(store_url, outbox=True) as store:
            await store.save(Todo(title="x"))

    asyncio.run(main())


def test_open_of_an_unreachable_postgresql_fails_typed_without_stalling_the_loop() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()

    async def main() -> float:
        async with LagProbe() as probe:
            with pytest.raises(statekeep.errors.BackendError):
                await statekeep.aio.open(
                    f"postgresql://postgres@127.0.0.1:{port}/test?connect_timeout=1"
                )
        return probe.worst

    assert asyncio.run(main()) < 0.1


def test_bad_open_arguments_are_typed_errors() -> None:
    async def main() -> None:
        for threads in (0, -1, True, "2", 1.5):
            with pytest.raises(statekeep.ConfigurationError):
                await statekeep.aio.open("memory://", threads=threads)
        with pytest.raises(statekeep.errors.StatekeepError):
            await statekeep.aio.open("nope://x")
        with pytest.raises(statekeep.ConfigurationError):
            statekeep.aio.AsyncStore("memory://")  # type: ignore[arg-type]

    asyncio.run(main())


def test_one_store_over_two_loops_in_turn_and_two_threads_with_loops_of_their_own(
    store_url: str,
) -> None:
    store = asyncio.run(statekeep.aio.open(store_url))

    async def work(tag: str) -> int:
        await store.save(Todo(title=tag))
        async with store.transaction():
            await store.save(Todo(title=tag + "-block"))
        got = [t async for t in store.find(Todo, title=tag)]
        assert len(got) == 1
        return await store.count(Todo)

    assert asyncio.run(work("one")) == 2
    assert asyncio.run(work("two")) == 4
    results: list[object] = []

    def thread(tag: str) -> None:
        try:
            results.append(asyncio.run(work(tag)))
        except BaseException as exc:  # noqa: BLE001
            results.append(exc)

    threads = [threading.Thread(target=thread, args=(f"t{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert all(isinstance(r, int) for r in results), results
    asyncio.run(store.close())
    assert store.closed
