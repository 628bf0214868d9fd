"""asyncio and threads: a transaction belongs to the thread and the task that
opened it. Another task never sees its uncommitted writes; a write from
another task or thread neither joins it nor escapes its rollback (a
TransactionError at once, nothing written); a task or thread started inside
a block writes in its own transaction once the block has ended."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from typing import Any

import pytest

import statekeep
from statekeep import TransactionError

from .models import Counter, Note, Todo

# tasks and threads sharing one sync Store; an AsyncStore's own rules for
# tasks (each task's block on a thread of its own) are tested in tests/aio
pytestmark = pytest.mark.sync_only("asyncio tasks and threads calling a sync Store")

AT_ONCE = 2.0  # seconds: a refusal comes well before any lock timeout (5 s)


class BoomError(Exception):
    pass


def test_a_task_never_reads_another_tasks_uncommitted_writes(store: statekeep.Store) -> None:
    """Item 9: a withdrawal rolled back must never be seen by a reader task
    on the same event loop (and so the same thread)."""
    store.save(Counter(id="balance", total=100))
    store.save(Todo(id="kept", title="kept"))
    seen: list[Any] = []

    async def withdraw(written: asyncio.Event, read: asyncio.Event) -> None:
        with pytest.raises(BoomError), store.transaction():
            account = store.get(Counter, "balance")
            account.total -= 5100
            store.save(account)
            store.save(Todo(id="uncommitted", title="uncommitted"))
            store.delete(Todo, "kept")
            written.set()
            await read.wait()
            raise BoomError

    async def audit(written: asyncio.Event, read: asyncio.Event) -> None:
        await written.wait()
        seen.append(store.get(Counter, "balance").total)
        seen.append(sorted(t.id for t in store.find(Todo)))
        seen.append(store.count(Todo))
        seen.append(sorted(store.get_many(Todo, ["kept", "uncommitted"])))
        seen.append(sorted(t.id for t in store.find(Todo, Todo.f.title == "uncommitted")))
        read.set()

    async def main() -> None:
        written, read = asyncio.Event(), asyncio.Event()
        await asyncio.gather(withdraw(written, read), audit(written, read))

    asyncio.run(main())
    assert seen == [100, ["kept"], 1, ["kept"], []]
    assert store.get(Counter, "balance").total == 100
    assert [t.id for t in store.find(Todo)] == ["kept"]


def test_a_task_writing_while_another_tasks_transaction_is_open_is_refused_at_once(
    store: statekeep.Store,
) -> None:
    """Item 9: the second task may not join the first one's transaction (nor
    wait for it while blocking the loop): TransactionError at once."""
    store.save(Note(id="n", text="stored"))  # the collection exists
    outcome: list[Any] = []

    async def first(opened: asyncio.Event, tried: asyncio.Event) -> None:
        with pytest.raises(BoomError), store.transaction():
            store.save(Todo(id="first", title="first"))
            opened.set()
            await tried.wait()
            raise BoomError

    async def second(opened: asyncio.Event, tried: asyncio.Event) -> None:
        await opened.wait()
        for attempt in (
            lambda: store.save(Todo(id="second", title="second")),
            lambda: store.save_many([Todo(id="many", title="many")]),
            lambda: store.delete(Note, "n"),
            store.transaction().__enter__,
        ):
            started = time.monotonic()
            try:
                attempt()
            except TransactionError as exc:
                outcome.append((type(exc), time.monotonic() - started < AT_ONCE))
            else:
                outcome.append(None)
        tried.set()

    async def main() -> None:
        opened, tried = asyncio.Event(), asyncio.Event()
        await asyncio.gather(first(opened, tried), second(opened, tried))

    asyncio.run(main())
    assert outcome == [(TransactionError, True)] * 4
    assert store.count(Todo) == 0
    assert store.get(Note, "n").text == "stored"
    store.save(Todo(id="after", title="after"))  # nothing was left half-open
    assert [t.id for t in store.find(Todo)] == ["after"]


def test_tasks_taking_turns_each_commit_their_own_transaction(store: statekeep.Store) -> None:
    async def worker(n: int, lock: asyncio.Lock) -> None:
        for i in range(3):
            async with lock:
                with store.transaction():
                    store.save(Todo(id=f"{n}-{i}", title=f"task {n}"))
                    await asyncio.sleep(0)
                    store.save(Note(id=f"{n}-{i}", text="with it"))

    async def main() -> None:
        lock = asyncio.Lock()
        await asyncio.gather(*(worker(n, lock) for n in range(3)))

    asyncio.run(main())
    assert store.count(Todo) == 9
    assert store.count(Note) == 9


@pytest.mark.parametrize("how", ["to_thread", "copied context thread"])
def test_a_write_from_a_thread_inside_a_block_is_refused_and_nothing_escapes(
    store: statekeep.Store, how: str
) -> None:
    """Item 10: `await asyncio.to_thread(store.save, x)` inside a block neither
    commits on its own (escaping the block's rollback) nor waits for the
    block's lock: TransactionError at once, the same on every backend."""
    store.save(Note(id="n", text="stored"))
    results: list[Any] = []

    def in_thread(call: Any) -> Any:
        if how == "to_thread":
            return asyncio.to_thread(call)
        context = contextvars.copy_context()
        done: list[Any] = []

        def run() -> None:
            try:
                done.append(context.run(call))
            except BaseException as exc:  # noqa: BLE001 - handed to the task
                done.append(exc)

        async def wait() -> Any:
            thread = threading.Thread(target=run)
            thread.start()
            while thread.is_alive():
                await asyncio.sleep(0.01)
            if isinstance(done[0], BaseException):
                raise done[0]
            return done[0]

        return wait()

    async def main() -> None:
        with pytest.raises(BoomError), store.transaction():
            store.save(Todo(id="inside", title="inside"))
            for call in (
                lambda: store.save(Todo(id="escaped", title="from a thread")),
                lambda: store.delete(Note, "n"),
                lambda: store.save_many([Todo(id="many", title="many")]),
            ):
                started = time.monotonic()
                with pytest.raises(TransactionError, match=r"asyncio\.to_thread"):
                    await in_thread(call)
                results.append(time.monotonic() - started < AT_ONCE)
            # reads from the thread see what is committed (never the block's writes)
            results.append(await in_thread(lambda: store.count(Todo)))
            raise BoomError

    asyncio.run(main())
    assert results == [True, True, True, 0]
    assert store.count(Todo) == 0
    assert store.get(Note, "n").text == "stored"


def test_a_thread_started_inside_a_committed_block_writes_on_its_own(
    store: statekeep.Store,
) -> None:
    """A thread with a copy of the block's context that writes after the block
    committed: its write is a transaction of its own (not refused, not lost)."""
    delivered: list[str] = []
    store.on(Todo.Created, lambda event: delivered.append(event.entity_id))
    go = threading.Event()
    errors: list[BaseException] = []

    def later() -> None:
        go.wait(10)
        try:
            store.save(Todo(id="later", title="after the block"))
        except BaseException as exc:  # noqa: BLE001 - checked below
            errors.append(exc)

    with store.transaction():
        store.save(Todo(id="inside", title="inside"))
        context = contextvars.copy_context()
        thread = threading.Thread(target=context.run, args=(later,))
        thread.start()
    go.set()
    thread.join(10)
    assert not errors
    assert sorted(t.id for t in store.find(Todo)) == ["inside", "later"]
    assert sorted(delivered) == ["inside", "later"]


def test_a_task_created_inside_a_block_writes_after_commit_with_its_events(
    store: statekeep.Store,
) -> None:
    """Item 11: a task created inside a block that saves once the block has
    committed: the row is stored, in a transaction of its own, and its
    Created event is delivered."""
    delivered: list[str] = []
    store.on(Todo.Created, lambda event: delivered.append(event.entity_id))

    async def later(committed: asyncio.Event) -> None:
        await committed.wait()
        store.save(Todo(id="later", title="saved by the task"))
        with store.transaction():  # and a block of its own works too
            store.save(Todo(id="block", title="in the task's own block"))

    async def main() -> None:
        committed = asyncio.Event()
        with store.transaction():
            store.save(Todo(id="inside", title="inside"))
            task = asyncio.create_task(later(committed))
        committed.set()
        await task

    asyncio.run(main())
    assert sorted(t.id for t in store.find(Todo)) == ["block", "inside", "later"]
    assert sorted(delivered) == ["block", "inside", "later"]


def test_a_task_created_inside_a_block_writing_while_it_is_open_is_refused(
    store: statekeep.Store,
) -> None:
    async def during() -> str:
        try:
            store.save(Todo(id="during", title="while the block is open"))
        except TransactionError:
            return "refused"
        return "written"

    async def main() -> str:
        with pytest.raises(BoomError), store.transaction():
            store.save(Todo(id="inside", title="inside"))
            outcome = await asyncio.create_task(during())
            raise BoomError
        return outcome

    assert asyncio.run(main()) == "refused"
    assert store.count(Todo) == 0


def test_a_block_in_an_async_generator_ends_in_the_task_that_closes_it(
    store: statekeep.Store,
) -> None:
    """An async generator holding a block is closed by a task of the loop's
    own (the finalizer after `break`, or shutdown_asyncgens), or finished by
    another task: the block still ends there (rolled back on close, committed
    when it runs to its end, events delivered) instead of keeping its
    transaction, and the write lock, open for good."""
    delivered: list[str] = []
    store.on(Todo.Created, lambda event: delivered.append(event.entity_id))

    async def rows(prefix: str) -> Any:
        with store.transaction():
            store.save(Todo(id=f"{prefix}-outer", title=prefix))
            with store.transaction():
                store.save(Todo(id=f"{prefix}-nested", title=prefix))
            yield 1
            yield 2

    async def drain(generator: Any) -> None:
        async for _ in generator:
            pass

    async def main() -> None:
        async for _ in rows("abandoned"):
            break  # the loop closes the generator in a task of its own
        await asyncio.sleep(0.05)
        store.save(Todo(id="same-task", title="after"))
        await asyncio.to_thread(store.save, Todo(id="thread", title="after"))
        finished = rows("finished")
        await finished.__anext__()
        await asyncio.create_task(drain(finished))  # the block ends in that task
        left_open = rows("at-shutdown")
        await left_open.__anext__()
        del left_open  # closed by the loop, not by this task

    started = time.monotonic()
    asyncio.run(main())
    store.save(Todo(id="main-thread", title="after"))
    assert time.monotonic() - started < AT_ONCE
    assert sorted(t.id for t in store.find(Todo)) == [
        "finished-nested",
        "finished-outer",
        "main-thread",
        "same-task",
        "thread",
    ]
    assert sorted(delivered) == sorted(t.id for t in store.find(Todo))
