# mypy: ignore-errors
# (hostile input: these tests pass the wrong types and odd options on purpose)
"""Hostile-user attacks on the two thread pools of an AsyncStore (`threads`
for single calls, `blocks` for transaction blocks, find iterations, flush and
enqueue_wait waits) and on cancellation of what keeps a holder thread.

The first section holds the defects a breaker found (each docstring says
what it was; all fixed: blocks take a turn of their own, finds and flushes
threads of a pool with no limit, a cancelled flush or enqueue_wait leaves at
once, open() checks its options first); the last one, attacks that found
nothing, kept as regression tests."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
import time

import pytest

import statekeep
import statekeep.aio
from conformance.models import Note, Todo

from .conftest import with_store

# -- defects ------------------------------------------------------------------


def test_a_find_in_a_task_started_inside_a_block_does_not_wait_for_ever(store_url: str) -> None:
    """docs/async.md: "a task started inside a block, or a call made while a
    find is read, never waits behind them". A find (and flush, enqueue_wait)
    takes its thread from the same `blocks` pool as the block: a child task's
    find waits for the thread its own parent block keeps. With blocks=1 this
    hangs for ever (no error, no timeout)."""

    async def body(store: statekeep.aio.AsyncStore) -> None:
        await store.save_many([Note(id=f"n{i}", text="x") for i in range(3)])
        async with asyncio.timeout(5), store.transaction():
            await store.save(Todo(title="in the block"))
            found = await asyncio.create_task(store.find(Note).all())
            assert len(found) == 3

    with_store(store_url, body, blocks=1)


def test_a_find_inside_a_find_iteration_does_not_wait_for_ever(store_url: str) -> None:
    """The find twin of the threads=1 deadlock the two pools were made to fix:
    an N+1 style inner find while an outer one is read waits for a holder
    thread the outer find keeps. With blocks=1 it hangs for ever; with the
    default 64 it hangs once 64 requests do this at once."""

    async def body(store: statekeep.aio.AsyncStore) -> None:
        await store.save_many([Note(id=f"n{i}", text="x") for i in range(2)])
        await store.save(Todo(title="x"))
        pairs = 0
        async with asyncio.timeout(5):
            async for _note in store.find(Note):
                async for _todo in store.find(Todo):
                    pairs += 1
        assert pairs == 2

    with_store(store_url, body, blocks=1)


def test_flush_inside_a_block_does_not_wait_for_ever(store_url: str) -> None:
    """`await store.flush()` inside a block needs a second holder thread:
    with blocks=1 it waits for ever for the one its own block keeps."""

    async def body(store: statekeep.aio.AsyncStore) -> None:
        async with asyncio.timeout(5), store.transaction():
            await store.save(Todo(title="x"))
            assert await store.flush()

    with_store(store_url, body, blocks=1, writebehind={"drain_on_sigterm": False})


def test_as_many_request_blocks_as_the_default_pool_each_gathering_a_find(
    store_url: str,
) -> None:
    """64 concurrent requests (the default `blocks`), each a block that
    gathers a find and a count in child tasks (the Starlette pattern of
    test_workers.py, with a find): every holder thread is kept by a block, so
    the finds wait for one; the block holding the write lock waits on its
    find, the others on the write lock: TransientBackendError ("timed out
    after 5.0s waiting for the write lock") after 5 s. 63 requests pass."""

    async def request(store: statekeep.aio.AsyncStore, n: int) -> None:
        async with store.transaction():
            await store.save(Todo(id=f"t{n}", title="request"))
            found, counted = await asyncio.gather(store.find(Note).all(), store.count(Note))
            assert len(found) == counted == 3

    async def body(store: statekeep.aio.AsyncStore) -> None:
        await store.save_many([Note(id=f"n{i}", text="x") for i in range(3)])
        async with asyncio.timeout(25):
            await asyncio.gather(*(request(store, n) for n in range(64)))
        assert await store.count(Todo) == 64

    with_store(store_url, body)


@pytest.mark.requires("postgresql")
def test_more_request_blocks_than_the_postgresql_pool_each_gathering_reads(
    store_url: str,
) -> None:
    """docs/async.md: "blocks beyond [pool_max] wait for one". They do, but
    the first ten blocks keep all ten connections while they await child
    tasks' reads, which need a connection too: none is ever free, and after
    5 s every request fails with TransientBackendError ("no connection while
    starting a transaction"). test_workers.py's request test uses 8 blocks,
    under pool_max=10; 12 fail."""

    async def request(store: statekeep.aio.AsyncStore, n: int) -> None:
        async with store.transaction():
            await store.save(Todo(id=f"t{n}", title="request"))
            notes = await asyncio.gather(*(store.get(Note, f"n{i}") for i in range(3)))
            assert [note.text for note in notes] == ["x"] * 3

    async def body(store: statekeep.aio.AsyncStore) -> None:
        await store.save_many([Note(id=f"n{i}", text="x") for i in range(3)])
        async with asyncio.timeout(25):
            await asyncio.gather(*(request(store, n) for n in range(12)))
        assert await store.count(Todo) == 12

    with_store(store_url, body)


@pytest.fixture
def stuck_writebehind(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """The write-behind's batches wait (a stuck database) until the event is
    set, or 3 s at most; its writes stay pending meanwhile."""
    from statekeep.writebehind import _engine

    gate = threading.Event()
    store_batch = _engine.store_batch

    def stuck(*args, **kwargs):
        gate.wait(3.0)
        return store_batch(*args, **kwargs)

    monkeypatch.setattr(_engine, "store_batch", stuck)
    return gate


@pytest.mark.timeout(30)
def test_a_cancelled_flush_returns_promptly(store_url: str, stuck_writebehind) -> None:
    """asyncio.timeout(0.3) around `await store.flush()` (flush with no
    timeout of its own) while the write-behind is stuck: the cancellation is
    delivered, but call() waits for the sync flush on its holder thread to
    end, so the timeout takes as long as the stall (here 3 s; with a stuck
    database, for ever). Nothing needs finishing: a flush is only a wait."""

    async def body(store: statekeep.aio.AsyncStore) -> None:
        store.enqueue(Todo(id="behind", title="behind"))
        started = time.monotonic()
        try:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):
                    await store.flush()
        finally:
            took = time.monotonic() - started
            stuck_writebehind.set()
        assert took < 1.5, f"the cancelled flush took {took:.1f} s"

    with_store(store_url, body, writebehind={"drain_on_sigterm": False})


@pytest.mark.timeout(30)
def test_a_cancelled_enqueue_wait_returns_promptly_and_enqueues_nothing(
    store_url: str, stuck_writebehind
) -> None:
    """asyncio.timeout(0.3) around `await store.enqueue_wait(e)` with the
    pending set full (the write-behind stuck): the caller gets TimeoutError
    only once room was made (3 s here; up to block_timeout, 30 s by default),
    and e is enqueued and stored anyway, its receipt lost to the cancelled
    caller."""

    async def body(store: statekeep.aio.AsyncStore) -> None:
        store.enqueue(Todo(id="first", title="behind"))
        store.enqueue(Todo(id="second", title="behind"))
        started = time.monotonic()
        receipt = None
        try:
            async with asyncio.timeout(0.3):
                receipt = await store.enqueue_wait(Todo(id="cancelled", title="late"))
        except TimeoutError:
            pass
        finally:
            took = time.monotonic() - started
            stuck_writebehind.set()
        assert await store.flush(10)
        stored = await store.count(Todo, id="cancelled")
        if receipt is None:  # cancelled (where room came in time, nothing to see)
            assert took < 1.5, f"the cancelled enqueue_wait took {took:.1f} s"
            assert stored == 0, "a cancelled enqueue_wait still stored its entity"

    with_store(store_url, body, writebehind={"max_pending": 2, "drain_on_sigterm": False})


def test_open_with_a_bad_blocks_option_leaves_no_store_open(store_url: str) -> None:
    """open() checks `threads` before opening the Store but `blocks` only
    after (in AsyncStore()): open(url, blocks=0) raises ConfigurationError
    and leaves the Store it opened open (its connection, its pool on
    PostgreSQL, its write-behind), unreachable to the caller."""

    def open_stores() -> set[int]:
        gc.collect()
        return {id(s) for s in gc.get_objects() if isinstance(s, statekeep.Store) and not s.closed}

    async def main() -> None:
        before = open_stores()
        with pytest.raises(statekeep.ConfigurationError, match="blocks"):
            await statekeep.aio.open(store_url, blocks=0)
        leaked = open_stores() - before
        assert not leaked, "open(blocks=0) left its Store open"

    asyncio.run(main())


def test_a_waiter_on_a_stopped_loop_does_not_swallow_the_free_thread(store_url: str) -> None:
    """Workers.give() wakes one waiter only, the first in line, whatever its
    loop: a task waiting for a holder on a loop that has stopped (not
    closed: a per-call `loop.run_until_complete` bridge, as asgiref's or the
    test suite's) is given the turn and never takes it, and a block of a
    running loop waits for ever with the pool free."""
    store = asyncio.run(statekeep.aio.open(store_url, blocks=1))
    kept = []

    def other_loop() -> None:
        async def waits_for_a_holder() -> None:
            async with store.transaction():
                await store.save(Todo(title="other loop"))

        loop = asyncio.new_event_loop()
        kept.append((loop, loop.create_task(waits_for_a_holder())))
        loop.run_until_complete(asyncio.sleep(0.2))  # stops; the task waits on

    async def hold() -> None:
        async with store.transaction():
            await asyncio.sleep(0.5)

    async def main() -> None:
        holder = asyncio.create_task(hold())
        await asyncio.sleep(0.05)
        thread = threading.Thread(target=other_loop)
        thread.start()
        await asyncio.to_thread(thread.join)

        async def queued_behind_it() -> None:  # waits, after the other loop's task
            async with store.transaction():
                await store.save(Todo(title="main"))

        try:
            async with asyncio.timeout(5):
                await asyncio.gather(holder, queued_behind_it())
        finally:
            await store.close()

    try:
        asyncio.run(main())
    finally:
        for loop, task in kept:
            # ended on its own loop before that closes: a coroutine left pending
            # in a closed loop is finalized by whichever thread's garbage
            # collection finds it (it crashed CPython 3.11 once, in a later test)
            task.cancel()
            loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
            loop.close()


# -- attacks that found nothing (regression tests) ------------------------------


def test_cancelling_blocks_and_finds_at_every_point_with_one_holder_thread(
    store_url: str,
) -> None:
    """A grid of cancellation delays (and a second cancel while the first is
    being handled) over a block that reads a find and saves, and over a
    plain find: with blocks=1 the single holder thread must come back clean
    every time, and the block is all or nothing."""

    async def block_with_find(store: statekeep.aio.AsyncStore, tag: str) -> None:
        async with store.transaction():
            await store.save(Todo(id=f"{tag}-a", title=tag))
            async for _ in store.find(Note):
                await asyncio.sleep(0)
            await store.save(Todo(id=f"{tag}-b", title=tag))

    async def plain_find(store: statekeep.aio.AsyncStore, tag: str) -> None:
        async for _ in store.find(Note):
            await asyncio.sleep(0)

    async def body(store: statekeep.aio.AsyncStore) -> None:
        await store.save_many([Note(id=f"n{i:04}", text="x") for i in range(300)])
        for step in range(24):
            make = block_with_find if step % 2 == 0 else plain_find
            tag = f"s{step}"
            task = asyncio.create_task(make(store, tag))
            await asyncio.sleep(0.0007 * step)
            task.cancel()
            if step % 3 == 0:
                await asyncio.sleep(0)
                task.cancel()  # again, while the first is being handled
            with contextlib.suppress(asyncio.CancelledError):
                await task
            assert await store.count(Todo, title=tag) in (0, 2)
            async with asyncio.timeout(5), store.transaction():
                await store.save(Note(id=f"probe{step}", text="p"))

    with_store(store_url, body, blocks=1)


def test_anyio_cancel_scopes_around_blocks_and_finds_leave_the_holder_free(
    store_url: str,
) -> None:
    """anyio re-delivers its cancellation on every step while the scope is
    cancelled; the blocks' ends and the cursors' closes still run."""
    anyio = pytest.importorskip("anyio")

    async def main() -> None:
        async with await statekeep.aio.open(store_url, blocks=1) as store:
            await store.save_many([Note(id=f"n{i:04}", text="x") for i in range(500)])
            for delay in (0, 0.001, 0.005, 0.02):
                with anyio.move_on_after(delay):
                    async with store.transaction():
                        await store.save(Todo(id=f"cs{delay}", title="x"))
                        await store.save_many([Todo(title="m") for _ in range(100)])
                        await anyio.sleep(1)
                with anyio.move_on_after(delay):
                    async for _ in store.find(Note):
                        await anyio.sleep(0)
            assert await store.count(Todo) == 0  # every block was cancelled
            with anyio.fail_after(5):
                async with store.transaction():
                    await store.save(Todo(title="probe"))

    anyio.run(main)


@pytest.mark.requires("persistent")
def test_sigkill_mid_block_leaves_whole_blocks_only(store_url: str, tmp_path) -> None:
    """A child process runs 4 tasks of 20-save blocks and is SIGKILLed at a
    random moment, three times: each block is stored whole or not at all."""
    import collections
    import os
    import random
    import signal
    import subprocess
    import sys

    child = tmp_path / "child.py"
    child.write_text(
        "import asyncio, sys\n"
        "import statekeep.aio\n"
        "from conformance.models import Todo\n"
        "async def main(url, run):\n"
        "    async with await statekeep.aio.open(url) as store:\n"
        "        async def worker(w):\n"
        "            g = 0\n"
        "            while True:\n"
        "                async with store.transaction():\n"
        "                    for i in range(20):\n"
        "                        tag = f'{run}w{w}g{g}'\n"
        "                        await store.save(Todo(id=f'{tag}i{i}', title=tag))\n"
        "                g += 1\n"
        "        print('ready', flush=True)\n"
        "        await asyncio.gather(*(worker(w) for w in range(4)))\n"
        "asyncio.run(main(sys.argv[1], sys.argv[2]))\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    rnd = random.Random(3)
    for run in range(3):
        proc = subprocess.Popen(
            [sys.executable, str(child), store_url, f"r{run}"], stdout=subprocess.PIPE, env=env
        )
        try:
            assert proc.stdout.readline() == b"ready\n"
            time.sleep(rnd.uniform(0.05, 0.4))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            proc.stdout.close()
        with statekeep.open(store_url, writebehind={"drain_on_sigterm": False}) as store:
            groups = collections.Counter(t.title for t in store.find(Todo))
        assert all(n == 20 for n in groups.values()), groups
