"""Fork safety: children forked from a process with an open store use it.

The `gunicorn --preload` pattern: the parent opens the store and uses it
(connections, pools, per-thread connections, write-behind threads), then
forks workers that each use the same Store object. Each child must see its
own writes and only committed data, finish quickly, and leave the parent's
store working. Real os.fork() children; each ends with os._exit.
"""

from __future__ import annotations

import functools
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import pytest

import statekeep
from statekeep import Priority, TransactionError, WriteBehindOptions

from .models import Note, Todo

# the bridge's event loop thread is not in a forked child; an AsyncStore
# used across fork is tested in tests/aio/test_fork.py
pytestmark = pytest.mark.sync_only("forked children of a sync Store's process")

CHILDREN = 4
ROWS = 20


def _fork(work: Callable[[], None]) -> int:
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            work()
            code = 0
        except BaseException:  # noqa: BLE001 - reported through the exit code and stderr
            traceback.print_exc()
        finally:
            os._exit(code)
    return pid


def _wait(pids: list[int], timeout: float) -> list[int | str]:
    """The exit code of each child, or "hung" for one killed after timeout."""
    deadline = time.monotonic() + timeout
    outcomes: dict[int, int | str] = {}
    while len(outcomes) < len(pids) and time.monotonic() < deadline:
        for pid in pids:
            if pid in outcomes:
                continue
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                outcomes[pid] = os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    for pid in pids:
        if pid not in outcomes:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            outcomes[pid] = "hung"
    return [outcomes[pid] for pid in pids]


def _child_work(store: statekeep.Store, n: int) -> None:
    mine = f"child {n}"
    for i in range(ROWS):
        todo = store.save(Todo(id=f"c{n}-{i:02d}", title=mine))
        todo.done = True
        store.save(todo)
        assert todo.version == 2
    with store.transaction():
        store.save(Note(id=f"c{n}", text=mine))
        store.delete(Todo, f"c{n}-00")
    found = [t.id for t in store.find(Todo, Todo.f.title == mine)]
    assert found == [f"c{n}-{i:02d}" for i in range(1, ROWS)], found
    assert all(t.version == 2 and t.done for t in store.find(Todo, title=mine))
    assert store.get(Note, f"c{n}").text == mine
    assert store.count(Todo, title="parent") == 10


def test_children_forked_after_open_use_the_store(backend: Any, store: statekeep.Store) -> None:
    """Item 13, the preload pattern: 4 children of a process that opened and
    used the store each write and read their own rows, quickly and correctly,
    while the parent goes on writing; the parent is unaffected. (On memory://
    each child has a copy of the data: the parent does not see its rows.)"""
    store.save_many(Todo(id=f"p-{i}", title="parent") for i in range(10))
    reader = threading.Thread(target=lambda: list(store.find(Todo)))  # a connection per thread
    reader.start()
    reader.join()
    held = store.find(Todo)  # a lazy read open across the fork
    next(held)
    pids = [_fork(functools.partial(_child_work, store, n)) for n in range(CHILDREN)]
    for i in range(ROWS):  # the parent writes while the children do
        store.save(Note(id=f"parent-{i}", text="parent"))
    assert _wait(pids, timeout=60) == [0] * CHILDREN
    assert len(list(held)) == 9
    shared = backend.name != "memory"
    for n in range(CHILDREN):
        assert store.count(Todo, title=f"child {n}") == (ROWS - 1 if shared else 0)
    assert store.count(Note) == ROWS + (CHILDREN if shared else 0)
    store.save(Todo(id="p-after", title="parent"))
    assert store.count(Todo, title="parent") == 11


@pytest.mark.requires("persistent")
def test_a_child_forked_during_write_behind_stores_its_own_enqueues(store_url: str) -> None:
    """Item 13: a fork while the parent's write-behind has writes pending:
    the child's enqueues become durable and stored (by an engine of its own);
    the parent's pending writes are stored once, by the parent."""
    options = WriteBehindOptions(window=0.3)
    with statekeep.open(store_url, writebehind=options) as store:
        store.save(Todo(id="warm", title="warm"))
        receipts = [store.enqueue(Todo(id=f"p-{i}", title="parent")) for i in range(50)]

        def child() -> None:
            receipt = store.enqueue(Todo(id="child", title="child"), Priority.CRITICAL)
            assert receipt.wait_stored(20), receipt
            later = store.enqueue(Todo(id="child-2", title="child"))
            store.close()  # drains
            assert later.stored

        pid = _fork(child)
        assert _wait([pid], timeout=60) == [0]
        assert store.flush(20)
        assert all(r.stored for r in receipts)
        assert store.writebehind.dead_letters() == []
        assert store.writebehind.stats().stored == 50
    with statekeep.open(store_url) as again:
        assert again.count(Todo, title="parent") == 50
        assert {t.id: t.version for t in again.find(Todo, title="child")} == {
            "child": 1,
            "child-2": 1,
        }


def test_a_child_forked_inside_a_block_leaves_the_block_to_the_parent(
    store: statekeep.Store,
) -> None:
    """A block open at the fork is the parent's: in the child a write inside
    it, a nested block and the end of it raise TransactionError, nothing of it
    is committed (or read) by the child, and the parent's block goes on."""
    block = store.transaction()
    block.__enter__()
    store.save(Todo(id="parent", title="parent"))

    def child() -> None:
        with pytest.raises(TransactionError):
            store.save(Todo(id="in-block", title="child"))
        with pytest.raises(TransactionError), store.transaction():
            pass
        with pytest.raises(TransactionError, match="forked"):
            block.__exit__(None, None, None)
        assert store.count(Todo) == 0  # the parent's block is not committed

    pid = _fork(child)
    assert _wait([pid], timeout=60) == [0]
    store.save(Note(id="parent-note", text="in the parent's block"))
    block.__exit__(None, None, None)
    assert [t.id for t in store.find(Todo)] == ["parent"]
    assert store.get(Note, "parent-note").text == "in the parent's block"


def test_a_child_forked_while_another_thread_writes_can_write(
    backend: Any, store: statekeep.Store
) -> None:
    """A fork while another thread of the parent is inside a block (a request
    thread, the write-behind engine): the fork waits for that writer, so the
    child inherits no write lock and writes at once (on SQLite the locks of
    the parent's connections live in the process's memory: a child forked
    mid-write could never write)."""
    inside = threading.Event()

    def writer() -> None:
        with store.transaction():
            store.save(Todo(id="thread", title="parent"))
            inside.set()
            time.sleep(0.5)

    thread = threading.Thread(target=writer)
    thread.start()
    assert inside.wait(10)

    def child() -> None:
        started = time.monotonic()
        store.save(Todo(id="child", title="child"))
        assert store.get(Todo, "child").title == "child"
        assert time.monotonic() - started < 2.0

    pid = _fork(child)
    thread.join(10)
    assert _wait([pid], timeout=60) == [0]
    stored = {t.id for t in store.find(Todo)}
    assert stored == ({"thread"} if backend.name == "memory" else {"thread", "child"})  # a copy


@pytest.mark.requires("sqlite")
def test_a_child_forked_inside_a_block_is_told_it_cannot_write_sqlite(
    store: statekeep.Store,
) -> None:
    """SQLite's write lock of a block open at the fork stays the parent's in
    the child's memory: the child's writes are refused at once with a
    TransactionError that says why, not a TransientBackendError after the
    lock timeout (which the write-behind engine would retry for ever)."""
    block = store.transaction()
    block.__enter__()
    store.save(Todo(id="parent", title="parent"))

    def child() -> None:
        with pytest.raises(TransactionError, match="forked"):
            block.__exit__(None, None, None)
        started = time.monotonic()
        with pytest.raises(TransactionError, match="forked while its parent was writing"):
            store.save(Todo(id="child", title="child"))
        assert time.monotonic() - started < 1.0
        assert store.count(Todo) == 0

    pid = _fork(child)
    assert _wait([pid], timeout=60) == [0]
    block.__exit__(None, None, None)
    assert [t.id for t in store.find(Todo)] == ["parent"]


@pytest.mark.requires("postgresql")
def test_a_child_forked_during_a_copy_leaves_the_parents_copy_alone(
    store: statekeep.Store,
) -> None:
    """A fork while another thread of the parent is in the middle of a
    save_many (a COPY left open between chunks): the child frees that
    thread's state, and the COPY's generator, closed by the child's garbage
    collector, used to send a CopyFail on the parent's connection: the
    parent's COPY then waited for ever. Now the parent's save_many stores
    everything, and the child writes on its own connection."""
    rows = 25_000
    copying, forked = threading.Event(), threading.Event()
    outcome: dict[str, Any] = {}

    def entities() -> Any:
        for i in range(rows):
            if i == 15_000:  # the first chunk (10,000) is in the open COPY
                copying.set()
                forked.wait(10)
            yield Todo(id=f"bulk-{i:05d}", title="bulk")

    def bulk() -> None:
        try:
            outcome["saved"] = store.save_many(entities())
        except BaseException as exc:  # noqa: BLE001 - checked below
            outcome["error"] = exc

    thread = threading.Thread(target=bulk)
    thread.start()
    assert copying.wait(30)

    def child() -> None:
        store.save(Note(id="child", text="child"))

    pid = _fork(child)
    forked.set()
    assert _wait([pid], timeout=60) == [0]
    thread.join(60)
    assert not thread.is_alive(), "the parent's save_many hangs"
    assert outcome == {"saved": rows}
    assert store.count(Todo) == rows
    assert store.get(Note, "child").text == "child"


def test_a_child_goes_on_using_the_store_after_the_parent_closes_it(
    store: statekeep.Store,
) -> None:
    """The parent closes its store (or exits) while a forked child still
    uses it: the child's writes and reads go on, from any of its threads
    (on sqlite://:memory: the parent's close() used to remove the database
    file under the child)."""
    store.save(Todo(id="parent", title="parent"))
    closed_r, closed_w = os.pipe()

    def child() -> None:
        os.close(closed_w)
        assert os.read(closed_r, 1) == b"x"  # the parent has closed its store
        store.save(Todo(id="child", title="child"))
        errors: list[BaseException] = []

        def other_thread() -> None:
            try:
                store.save(Todo(id="child-thread", title="child"))
            except BaseException as exc:  # noqa: BLE001 - checked below
                errors.append(exc)

        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join(30)
        assert not errors, errors
        assert store.get(Todo, "child-thread").title == "child"
        store.close()

    pid = _fork(child)
    os.close(closed_r)
    store.close()
    os.write(closed_w, b"x")
    os.close(closed_w)
    assert _wait([pid], timeout=60) == [0]


def test_a_fork_does_not_wait_for_a_store_closed_under_a_block(store_url: str) -> None:
    """A block of another thread, open when the store was closed, ends
    without committing (the store is gone) and its write lock goes with the
    store: later forks of the process do not wait the lock timeout for it."""
    store = statekeep.open(store_url)

    def block_across_close() -> None:
        with pytest.raises(statekeep.StoreClosedError), store.transaction():
            store.save(Todo(id="a", title="a"))
            store.close()

    thread = threading.Thread(target=block_across_close)
    thread.start()
    thread.join(30)
    started = time.monotonic()
    pid = _fork(lambda: None)
    assert time.monotonic() - started < 2.0
    assert _wait([pid], timeout=60) == [0]
