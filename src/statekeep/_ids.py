"""Entity ids: short, unique across processes, and ordered by creation time.

An id is 11 hex digits of milliseconds since the epoch, 8 of a random prefix
drawn once per process (and again after fork), and 7 of a counter: ordered
ids keep B-tree inserts at the right edge of the index.
"""

from __future__ import annotations

import itertools
import os
import time

_prefix = ""
_counter = itertools.count()


def _reseed() -> None:
    global _prefix, _counter
    _prefix = os.urandom(4).hex()
    _counter = itertools.count(int.from_bytes(os.urandom(3), "big"))


_reseed()
os.register_at_fork(after_in_child=_reseed)


def new_id() -> str:
    return spelled(time.time_ns(), next(_counter), _prefix)


def spelled(ns: int, count: int, prefix: str) -> str:
    """The id made at ns (time.time_ns()) with a counter's count and a process's
    prefix: new_id's, for an id whose parts were taken earlier (events.Carrying)."""
    return f"{ns // 1_000_000:011x}{prefix}{count & 0xFFFFFFF:07x}"
