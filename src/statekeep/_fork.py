"""Fork safety: a child process forked from one with open stores can use them.

A forked child inherits the parent's memory but only the thread that forked:
connections (whose sockets and files it shares with the parent), locks that
other threads held, write-behind and event threads that are not there. Once
in each child (os.register_at_fork), every open store lets go of what is the
parent's without using or closing it, and starts afresh: new connections at
first use, fresh locks, no transaction, a write-behind engine of its own at
the next enqueue (the parent's pending writes stay the parent's to store).
This is what `gunicorn --preload` needs: open the store in the parent, use
it in every worker.
"""

from __future__ import annotations

import os
import weakref
from typing import Protocol


class ForkAware(Protocol):
    def _after_fork(self) -> None: ...


_open: weakref.WeakSet[ForkAware] = weakref.WeakSet()


def track(store: ForkAware) -> None:
    _open.add(store)


def _in_child() -> None:
    for store in list(_open):
        store._after_fork()


os.register_at_fork(after_in_child=_in_child)
