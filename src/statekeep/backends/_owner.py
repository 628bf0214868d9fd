"""Who is calling: the owner a transaction belongs to.

A transaction belongs to the process, the thread and the asyncio task (None
outside one) that began it. Backends hold one transaction per thread; two
tasks of one event loop run on one thread, so a backend also notes the task,
and a call from another task neither sees nor joins that transaction. The
process is told apart by a generation that a forked child moves on.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Iterator

from ..errors import BackendError, StatekeepError, TransactionError

Owner = tuple[int, int, object]

_generation = 0


def _forked() -> None:
    global _generation
    _generation += 1


os.register_at_fork(after_in_child=_forked)


_acting = threading.local()  # .task: the task a block's end runs for (see acting_for)
_NOBODY = object()


def current_task() -> object:
    """The running asyncio task of this thread, or None."""
    task = getattr(_acting, "task", _NOBODY)
    if task is not _NOBODY:
        return task
    loop = asyncio._get_running_loop()
    return None if loop is None else asyncio.current_task(loop)


@contextlib.contextmanager
def acting_for(task: object) -> Iterator[None]:
    """Calls in this thread count as the task's until the end of the `with`.

    The end of a block may run in another task of the thread that opened it:
    an async generator holding a block is closed by the task the event loop
    starts to finalize it (or by shutdown_asyncgens). Its transaction is ended
    there as the task that began it, rather than left open for good."""
    before = getattr(_acting, "task", _NOBODY)
    _acting.task = task
    try:
        yield
    finally:
        if before is _NOBODY:
            del _acting.task
        else:
            _acting.task = before


def current() -> Owner:
    return (_generation, threading.get_ident(), current_task())


def describe(owner: Owner) -> str:
    """Whose the owner is, as the calling thread and task see it."""
    if owner[0] != _generation:
        return "the parent process (it was open when this process forked)"
    if owner[1] != threading.get_ident():
        return "another thread"
    if owner[2] is None:
        return "this thread outside any asyncio task"
    return "another asyncio task"


ANOTHER_TASK = (
    "another asyncio task on this thread has a transaction open: this write would "
    "wait for it while blocking the event loop that task needs to finish. Let one task "
    "write at a time (e.g. hold an asyncio.Lock around transactions), or run this write "
    "in a thread of its own (asyncio.to_thread), where it can wait."
)


def second_transaction(held_by: object) -> StatekeepError:
    """The error for a begin on a thread whose transaction is held by the task held_by."""
    if held_by is current_task():
        return BackendError(
            "this thread already has a transaction open; a thread (or task) runs one at a time"
        )
    return TransactionError(ANOTHER_TASK)
