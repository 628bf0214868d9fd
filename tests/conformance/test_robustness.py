"""Failures at awkward moments leave the store usable, on every backend.

Each test here comes from a defect seen in review: a lock left held, a save
lost to another asyncio task, a read waiting for a writer, a table forgotten
by a rolled-back transaction.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

import pytest

import statekeep
import statekeep.active
from statekeep.errors import BackendError, ConfigurationError, TransactionError

from .models import Todo


def test_keyboard_interrupt_while_waiting_for_another_process_leaves_no_lock(
    tmp_path: Path,
) -> None:
    path = tmp_path / "held.db"
    with statekeep.open(f"sqlite:///{path}", timeout=3) as store:
        store.save(Todo(title="first"))
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sqlite3, sys, time\n"
                f"c = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
                "c.execute('BEGIN IMMEDIATE'); print('held', flush=True)\n"
                "time.sleep(1.0); c.execute('COMMIT')\n",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"

        def interrupt(*_: object) -> None:
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGALRM, interrupt)
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.3)  # Ctrl-C while save() waits
            with pytest.raises(KeyboardInterrupt):
                store.save(Todo(title="second"))
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        holder.communicate(timeout=10)
        started = time.monotonic()
        store.save(Todo(title="third"))  # neither lock nor transaction was left behind
        assert time.monotonic() - started < 2
        assert sorted(t.title for t in store.find(Todo)) == ["first", "third"]


def test_a_thread_that_cannot_open_a_connection_leaves_no_lock(tmp_path: Path) -> None:
    with statekeep.open(f"sqlite:///{tmp_path}/t.db", timeout=1) as store:
        store.save(Todo(title="first"))
        errors: list[BaseException] = []

        def worker() -> None:
            try:
                store.save(Todo(title="from a new thread"))
            except BaseException as exc:  # noqa: BLE001 - the test inspects it
                errors.append(exc)

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        hog = []
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
        try:  # use up every file descriptor, as a process under load might
            while True:
                hog.append(open(os.devnull))  # noqa: SIM115 - closed below
        except OSError:
            pass
        try:
            thread = threading.Thread(target=worker)
            thread.start()
            thread.join()
        finally:
            for handle in hog:
                handle.close()
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        assert len(errors) == 1 and isinstance(errors[0], BackendError), errors
        store.save(Todo(title="after"))  # no lock was left behind
        assert sorted(t.title for t in store.find(Todo)) == ["after", "first"]


@pytest.mark.sync_only(
    "tasks sharing one thread and one sync Store; an AsyncStore runs another "
    "task's save outside the block (tests/aio)"
)
def test_another_asyncio_task_cannot_slip_a_save_into_an_open_transaction(
    store: statekeep.Store,
) -> None:
    outcome: list[str] = []

    async def holder(inside: asyncio.Event, done: asyncio.Event) -> None:
        try:
            with store.transaction():
                store.save(Todo(title="in the block"))
                inside.set()
                await done.wait()
                raise RuntimeError("roll back")
        except RuntimeError:
            pass

    async def other(inside: asyncio.Event, done: asyncio.Event) -> None:
        await inside.wait()
        try:
            store.save(Todo(title="another task"))
            outcome.append("saved")
        except TransactionError:
            outcome.append("refused")
        done.set()

    async def main() -> None:
        inside, done = asyncio.Event(), asyncio.Event()
        await asyncio.gather(holder(inside, done), other(inside, done))

    asyncio.run(main())
    # refused loudly rather than saved into the block and silently rolled back
    assert outcome == ["refused"]
    assert store.count(Todo) == 0


def test_a_rolled_back_first_write_does_not_break_a_waiting_writer(
    store: statekeep.Store,
) -> None:
    inside = threading.Event()
    results: list[str] = []

    def first() -> None:
        try:
            with store.transaction():
                store.save(Todo(title="a"))  # the collection's first write ever
                inside.set()
                time.sleep(0.3)
                raise RuntimeError("roll back")
        except RuntimeError:
            pass

    def second() -> None:
        inside.wait()
        try:
            store.save(Todo(title="b"))
            results.append("ok")
        except statekeep.StatekeepError as exc:
            results.append(repr(exc))

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["ok"]
    assert [t.title for t in store.find(Todo)] == ["b"]


@pytest.mark.requires("persistent")
def test_a_read_of_a_new_collection_does_not_wait_for_a_writer(store_url: str) -> None:
    with statekeep.open(store_url) as writer, statekeep.open(store_url) as reader:
        _read_while_writing(writer, reader)


def _read_while_writing(writer: statekeep.Store, reader: statekeep.Store) -> None:
    with writer.transaction():
        writer.save(Todo(title="pending"))
        started = time.monotonic()
        assert reader.count(Todo) == 0  # nothing committed, and no waiting for it
        assert list(reader.find(Todo)) == []
        assert time.monotonic() - started < 1
    assert reader.count(Todo) == 1


@pytest.mark.parametrize("timeout", ["inf", "-5", "nan", "soon"])
def test_bad_timeouts_are_refused_at_open(store_url: str, timeout: str) -> None:
    with pytest.raises(ConfigurationError):
        statekeep.open(store_url, timeout=timeout)


def test_a_conflict_in_a_batch_names_the_entity_that_conflicts(store: statekeep.Store) -> None:
    store.save(Todo(id="existing", title="old"))
    batch = [Todo(id="fresh-1", title="a"), Todo(id="fresh-2", title="b")]
    batch.append(Todo(id="existing", title="new"))
    with pytest.raises(statekeep.ConflictError) as caught:
        store.save_many(batch)
    assert caught.value.id == "existing"
    assert [t.id for t in store.find(Todo)] == ["existing"]


def test_closing_the_store_inside_a_transaction_commits_nothing(store_url: str) -> None:
    store = statekeep.open(store_url)
    todo = Todo(title="never")
    with pytest.raises(statekeep.StoreClosedError), store.transaction():
        store.save(todo)
        store.close()
    assert todo.version == 0
    with statekeep.open(store_url) as again:
        assert again.count(Todo) == 0


def test_use_as_a_block_is_seen_only_by_its_own_thread(
    make_store: Callable[[], statekeep.Store],
) -> None:
    everyone, mine = make_store(), make_store()
    statekeep.use(everyone)
    ready, done = threading.Event(), threading.Event()
    seen: list[statekeep.Store] = []

    def other_thread() -> None:
        ready.wait()
        seen.append(cast(statekeep.Store, statekeep.active.current_store()))
        done.set()

    thread = threading.Thread(target=other_thread)
    thread.start()
    with statekeep.use(mine):
        ready.set()
        done.wait()
        assert cast(statekeep.Store, statekeep.active.current_store()) is mine
    thread.join()
    assert seen == [everyone]
    assert cast(statekeep.Store, statekeep.active.current_store()) is everyone
