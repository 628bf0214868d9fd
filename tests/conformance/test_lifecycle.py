"""Closing, reopening, and what survives."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest

import statekeep
from statekeep import ConflictError, NotFoundError, StoreClosedError

from .models import Note, Todo

CALLS: dict[str, Callable[[statekeep.Store, Todo], Any]] = {
    "save": lambda s, t: s.save(Todo(title="new")),
    "save stored": lambda s, t: s.save(t),
    "save a non-entity": lambda s, t: s.save(cast(Any, 42)),
    "save_many": lambda s, t: s.save_many([Todo(title="new")]),
    "save_many empty": lambda s, t: s.save_many([]),
    "get": lambda s, t: s.get(Todo, t.id),
    "get_many": lambda s, t: s.get_many(Todo, [t.id]),
    "find": lambda s, t: s.find(Todo),
    "count": lambda s, t: s.count(Todo),
    "delete entity": lambda s, t: s.delete(t),
    "delete by id": lambda s, t: s.delete(Todo, t.id),
    "transaction": lambda s, t: s.transaction(),
}


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
def test_use_after_close_raises_store_closed(
    store_url: str, call: Callable[[statekeep.Store, Todo], Any]
) -> None:
    store = statekeep.open(store_url)
    todo = store.save(Todo(title="stored"))
    store.close()
    with pytest.raises(StoreClosedError):
        call(store, todo)
    assert todo.version == 1


def test_close_twice_and_context_manager(store_url: str) -> None:
    with statekeep.open(store_url) as store:
        store.save(Todo(title="x"))
    with pytest.raises(StoreClosedError):
        store.count(Todo)
    store.close()  # closing again is harmless
    with pytest.raises(StoreClosedError):
        store.get(Todo, "x")


def test_a_result_read_after_close_raises_store_closed(store_url: str) -> None:
    store = statekeep.open(store_url)
    store.save_many(Todo(title=f"t{i}") for i in range(10))
    found = store.find(Todo)
    store.close()
    with pytest.raises(StoreClosedError):
        list(found)


def test_active_record_on_a_closed_default_store(store_url: str) -> None:
    store = statekeep.open(store_url)
    todo = store.save(Todo(title="x"))
    store.close()
    with statekeep.use(store):
        with pytest.raises(StoreClosedError):
            todo.save()
        with pytest.raises(StoreClosedError):
            Todo.get(todo.id)
        with pytest.raises(StoreClosedError):
            Todo.count()
    assert todo.version == 1


@pytest.mark.requires("persistent")
def test_data_survives_reopening(store_url: str) -> None:
    with statekeep.open(store_url) as first:
        kept = first.save(Todo(id="kept", title="kept", priority=1))
        edited = first.save(Todo(id="edited", title="draft"))
        edited.title = "final"
        first.save(edited)
        gone = first.save(Todo(id="gone", title="gone"))
        first.delete(gone)
        first.save(Note(id="n", text="note"))
        first.save_many(Todo(id=f"bulk-{i:04d}", title="bulk") for i in range(1500))
    with statekeep.open(store_url) as second:
        assert second.get(Todo, "kept") == kept
        assert (second.get(Todo, "edited").title, second.get(Todo, "edited").version) == (
            "final",
            2,
        )
        with pytest.raises(NotFoundError):
            second.get(Todo, "gone")
        assert second.get(Note, "n").text == "note"
        assert second.count(Todo, title="bulk") == 1500
        assert [t.id for t in second.find(Todo, priority=1)] == ["kept"]
        # versions carry on: a stale copy still conflicts, a fresh one saves
        kept.title = "changed"
        second.save(kept)
        assert kept.version == 2
        stale = Todo(id="edited", title="stale", version=1)
        with pytest.raises(ConflictError):
            second.save(stale)
    with statekeep.open(store_url) as third:
        assert (third.get(Todo, "kept").title, third.get(Todo, "kept").version) == ("changed", 2)


@pytest.mark.requires("persistent")
def test_rolled_back_work_does_not_survive_reopening(store_url: str) -> None:
    with statekeep.open(store_url) as first:
        first.save(Todo(id="committed", title="yes"))
        with pytest.raises(RuntimeError), first.transaction():
            first.save(Todo(id="rolled-back", title="no"))
            raise RuntimeError
    with statekeep.open(store_url) as second:
        assert [t.id for t in second.find(Todo)] == ["committed"]


@pytest.mark.requires("persistent")
def test_a_second_store_sees_only_committed_work(store_url: str, store: statekeep.Store) -> None:
    with statekeep.open(store_url) as other:
        store.save(Todo(id="before", title="before"))
        with store.transaction():
            store.save(Todo(id="inside", title="inside"))
            assert [t.id for t in other.find(Todo)] == ["before"]
            with pytest.raises(NotFoundError):
                other.get(Todo, "inside")
        assert [t.id for t in other.find(Todo)] == ["before", "inside"]
        # and writes from the other store are checked against the same versions
        mine = store.get(Todo, "before")
        theirs = other.get(Todo, "before")
        other.save(theirs)
        with pytest.raises(ConflictError):
            store.save(mine)


@pytest.mark.requires("persistent", "sqlite")
def test_relative_and_absolute_sqlite_urls(
    backend: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with statekeep.open("sqlite:///relative.db") as relative:
        relative.save(Todo(id="r", title="relative"))
    assert (tmp_path / "relative.db").is_file()
    with statekeep.open(f"sqlite:///{tmp_path / 'relative.db'}") as absolute:
        assert absolute.get(Todo, "r").title == "relative"
    (tmp_path / "sub").mkdir()
    with statekeep.open("sqlite:///sub/nested.db?synchronous=full&timeout=2") as nested:
        nested.save(Todo(id="n", title="nested"))
    with statekeep.open("sqlite:///sub/nested.db", synchronous="normal") as again:
        assert again.get(Todo, "n").title == "nested"


def test_stores_opened_separately_are_independent(
    make_store: Callable[[], statekeep.Store],
) -> None:
    first, second = make_store(), make_store()
    first.save(Todo(id="only-in-first", title="x"))
    assert second.count(Todo) == 0
    with pytest.raises(NotFoundError):
        second.get(Todo, "only-in-first")


CLOSE_CHILD = Path(__file__).resolve().parent.parent / "_close_child.py"


def test_close_while_threads_write(backend: Any, store_url: str) -> None:
    """Item 12: writers that had not started get StoreClosedError at once,
    those in flight finish (or roll back) cleanly; never a crash (a process
    of its own, so a segfault fails here), a hang, a lock timeout or an OS error.
    Everything a writer saw stored is stored (where the data outlives the store)."""
    outcome = subprocess.run(
        [sys.executable, str(CLOSE_CHILD), store_url, "6"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert outcome.returncode == 0, (outcome.returncode, outcome.stderr[-3000:])
    report = json.loads(outcome.stdout)
    assert report["errors"] == []
    assert report["alive"] == 0
    assert report["close_seconds"] < 3  # no writer waited out a 5 s lock timeout
    assert report["stop_seconds"] < 3
    acknowledged = {job for jobs in report["stored"] for job in jobs}
    assert all(report["stored"])  # every writer stored something before the close
    if "persistent" in backend.capabilities:
        with statekeep.open(store_url) as again:
            found = {job.id for job in again.find(CloseJob)}
        assert acknowledged <= found
        # a block or save that was cut short by the close left nothing behind
        assert len(found - acknowledged) <= 2 * 6


class CloseJob(statekeep.Entity, collection="close_job"):
    writer: int = 0


def test_a_block_open_when_the_store_closes_commits_nothing(store_url: str) -> None:
    store = statekeep.open(store_url)
    store.save(Todo(id="before", title="before"))
    todo = Todo(id="inside", title="inside")
    with pytest.raises(StoreClosedError), store.transaction():
        store.save(todo)
        store.close()
    assert todo.version == 0
    with pytest.raises(StoreClosedError):
        store.save(todo)


def test_close_does_not_wait_out_a_writer_queued_behind_an_open_block(store_url: str) -> None:
    """A block held open in one thread, a writer queued behind it in another:
    close() does not wait out the lock timeout (5 s) for the writer, which
    gives up with StoreClosedError having written nothing (or, where writers
    do not queue, PostgreSQL, is stored); the block, ended after the close,
    commits nothing."""
    store = statekeep.open(store_url)
    store.save(Todo(id="t", title="stored"))  # the block makes no table the writer waits for
    inside, leave = threading.Event(), threading.Event()
    outcomes: dict[str, Any] = {}

    def holder() -> None:
        try:
            with store.transaction():
                store.save(Todo(id="held", title="held"))
                inside.set()
                leave.wait(20)
        except BaseException as exc:  # noqa: BLE001 - checked below
            outcomes["holder"] = exc

    def writer() -> None:
        started = time.monotonic()
        try:
            store.save(Todo(id="queued", title="queued"))
            outcomes["writer"] = "stored"
        except BaseException as exc:  # noqa: BLE001 - checked below
            outcomes["writer"] = exc
        outcomes["writer seconds"] = time.monotonic() - started

    threads = [threading.Thread(target=holder), threading.Thread(target=writer)]
    threads[0].start()
    assert inside.wait(10)
    threads[1].start()
    time.sleep(0.3)  # the writer is queued behind the block (or done, on PostgreSQL)
    started = time.monotonic()
    store.close()
    close_seconds = time.monotonic() - started
    leave.set()
    for thread in threads:
        thread.join(20)
    assert close_seconds < 2
    assert outcomes["writer seconds"] < 2.5
    assert outcomes["writer"] == "stored" or isinstance(outcomes["writer"], StoreClosedError)
    assert isinstance(outcomes["holder"], StoreClosedError)


def test_close_from_a_handler_of_a_write_behind_event(backend: Any, store_url: str) -> None:
    """A handler of an event delivered by the write-behind engine (its own
    thread) closes the store: close() returns at once and the store is
    closed, instead of waiting drain_timeout for that very thread, failing
    with "cannot join current thread" and leaving the store closing for good."""
    store = statekeep.open(store_url)
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def close_it(event: Any) -> None:
        started = time.monotonic()
        try:
            store.close()
            outcome["seconds"] = time.monotonic() - started
        except BaseException as exc:  # noqa: BLE001 - checked below
            outcome["error"] = exc
        done.set()

    store.on(Todo.Created, close_it)
    store.enqueue(Todo(id="queued", title="queued"), statekeep.Priority.CRITICAL)
    assert done.wait(30)
    assert "error" not in outcome, outcome
    assert outcome["seconds"] < 5  # drain_timeout (10 s) is what it used to wait
    assert store.closed and not store.closing
    with pytest.raises(StoreClosedError):
        store.save(Todo(title="after"))
    if "persistent" in backend.capabilities:
        with statekeep.open(store_url) as again:
            assert again.get(Todo, "queued").title == "queued"


def test_close_called_while_another_thread_closes_waits_for_it(
    backend: Any, store_url: str
) -> None:
    """Two close() at once (a signal handler and the main thread, say): the
    second returns once the store is closed, its enqueued writes stored,
    not at once while the first is still draining them."""
    store = statekeep.open(store_url)
    storing = threading.Event()

    def slow(event: Any) -> None:  # holds the drain up while the second close() comes
        storing.set()
        time.sleep(0.5)

    store.on(Todo.Created, slow)
    store.enqueue(Todo(id="queued", title="queued"))
    first = threading.Thread(target=store.close)
    first.start()
    assert storing.wait(10)
    store.close()
    assert repr(store).endswith(" closed>")
    first.join(30)
    if "persistent" in backend.capabilities:
        with statekeep.open(store_url) as again:
            assert again.get(Todo, "queued").title == "queued"


_HOLD_MEMORY_STORE = """
import sys, time, statekeep
store = statekeep.open("sqlite://:memory:")
print(store.backend._folder, flush=True)
time.sleep(60)
"""


def test_sqlite_memory_folders_of_killed_processes_are_removed() -> None:
    """sqlite://:memory: lives in a folder on /dev/shm (memory until a reboot):
    the folder of a process killed without close() (kill -9) is removed by
    the next sqlite://:memory: store opened; that of a living process is kept."""

    def holder() -> tuple[subprocess.Popen[str], Path]:
        process = subprocess.Popen(
            [sys.executable, "-c", _HOLD_MEMORY_STORE], stdout=subprocess.PIPE, text=True
        )
        assert process.stdout is not None
        folder = process.stdout.readline().strip()
        # never Path(""), which is "." and would be removed below
        assert folder.startswith("/"), f"the child printed no folder: {folder!r}"
        return process, Path(folder)

    killed, killed_folder = holder()
    living, living_folder = holder()
    try:
        killed.kill()
        killed.wait(10)
        assert killed_folder.is_dir()
        with statekeep.open("sqlite://:memory:") as store:
            store.save(Todo(id="t", title="t"))
        assert not killed_folder.exists()
        assert living_folder.is_dir()
    finally:
        for process in (killed, living):
            process.kill()
            process.communicate(timeout=10)
        shutil.rmtree(living_folder, ignore_errors=True)


@pytest.mark.requires("persistent")
def test_close_from_a_durable_subscription_handler_keeps_its_checkpoint(
    store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A durable subscription's handler closes the store (a "shut down"
    event): the event counts as handled, its checkpoint saved before the
    store closes, so it does not come again (and close the store again) at
    the next start; and nothing is logged as a failure."""
    store = statekeep.open(store_url, outbox=True)
    closed = threading.Event()

    def close_it(event: Any) -> None:
        store.close()
        closed.set()

    store.subscribe("closer", close_it)
    store.save(Todo(id="shutdown", title="shut down"))
    assert closed.wait(10)
    time.sleep(0.2)  # what the subscription's thread does after the handler
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text
    seen: list[str] = []
    with statekeep.open(store_url, outbox=True) as again:
        subscription = again.subscribe("closer", lambda event: seen.append(event.entity_id))
        again.save(Todo(id="later", title="later"))
        assert subscription.wait_idle(10)
    assert seen == ["later"]
