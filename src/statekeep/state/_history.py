"""The versions an AppState keeps: for `at(version)`, `undo()` and `redo()`.

A version is a snapshot, and consecutive snapshots share everything but the
containers along the changed paths, so keeping the last N costs only what
changed between them. Kept versions are bounded by count (`history=`) and
by an estimate of the bytes they do not share (`history_bytes=`): each
version is charged for the containers its changes copied (a Node's tuple, a
list's tuple, about log32(n) trie nodes of a dict of n keys). `memory()` on
the state measures the real figure by walking the trees.
"""

from __future__ import annotations

import math
import sys
from collections import deque
from collections.abc import Iterable
from typing import Any

from ._node import Map, Node, values_of

_TRIE_NODE = 304  # bytes of one full node of an immutables.Map (32 slots), measured


def copied_bytes(root: Any, changed: Iterable[tuple[Any, ...]]) -> int:
    """About how many bytes a version's changes copied (not shared): the
    containers along each changed path, and the value set there whole (a
    dict or list replaced whole shares nothing with the one before)."""
    total = 0
    for path in changed:
        value = root
        for part in path:
            if isinstance(value, Node):
                total += sys.getsizeof(values_of(value)) + 32
                index = value._index.get(part) if isinstance(part, str) else None
                value = None if index is None else values_of(value)[index]
            elif type(value) is Map:
                total += 64 + _TRIE_NODE * max(1, math.ceil(math.log(len(value) + 1, 32)))
                value = value.get(part)
            elif type(value) is tuple:
                total += sys.getsizeof(value)
                value = (
                    value[part] if type(part) is int and -len(value) <= part < len(value) else None
                )
            else:
                break
        else:
            total += whole_bytes(value)
    return total


_ENTRY = 64  # bytes of a dict entry made anew: its share of trie nodes, a key, a value
_LOOKS = 4096  # values a whole value's estimate looks at; the rest is scaled from them


def whole_bytes(value: Any) -> int:
    """About the bytes of a value set whole (nothing shared with the version
    before): its containers and texts, all the way down; past _LOOKS values
    the bytes of those seen are scaled by how many were left unseen."""
    total = seen = 0
    unseen = 0  # values known to exist but not looked at
    stack = [value]
    while stack:
        item = stack.pop()
        if seen >= _LOOKS:
            unseen += 1 + _count(item)
            continue
        seen += 1
        if type(item) is Map:
            total += 64 + _ENTRY * len(item)
            stack.extend(item.values())
        elif isinstance(item, tuple | frozenset):  # a list, a Node, a set
            total += sys.getsizeof(item)
            stack.extend(item)
        elif isinstance(item, str | bytes):
            total += sys.getsizeof(item)
    if unseen and seen:
        total += total * unseen // seen
    return total


def _count(item: Any) -> int:
    """How many values a container holds at its top level (0 for a scalar)."""
    return len(item) if isinstance(item, Map | tuple | frozenset) else 0


# a kept version: (version, root, the paths changed from the version before,
# the bytes it does not share with the version before (estimated, 0 when not
# bounded by bytes), the root of the version before). An entry is also a step
# of undo() (back to its root before) and of redo() (forward to its root).
Entry = tuple[int, Any, tuple[tuple[Any, ...], ...], int, Any]


class History:
    """The last versions (newest last), and the undo and redo stacks."""

    __slots__ = ("bytes", "entries", "limit", "limit_bytes", "redo", "undo")

    def __init__(self, limit: int, limit_bytes: int | None) -> None:
        self.limit = limit
        self.limit_bytes = limit_bytes
        self.entries: deque[Entry] = deque(maxlen=limit)
        self.bytes = 0
        self.undo: deque[Entry] = deque(maxlen=limit - 1)  # newest last (history=1: none)
        self.redo: list[Entry] = []  # the next one last

    def add_bounded(self, entry: Entry) -> None:
        """Keeps entry, within history_bytes too."""
        entries = self.entries
        if len(entries) == entries.maxlen:
            self.bytes -= entries[0][3]
        entries.append(entry)
        self.bytes += entry[3]
        while self.limit_bytes is not None and self.bytes > self.limit_bytes and len(entries) > 1:
            self.bytes -= entries.popleft()[3]
            if len(self.undo) >= len(entries):
                self.undo.popleft()

    def trim(self, keep: int) -> None:
        entries = self.entries
        while len(entries) > max(1, keep):
            self.bytes -= entries.popleft()[3]
        while len(self.undo) > max(0, keep - 1):
            self.undo.popleft()
        del self.redo[: max(0, len(self.redo) - keep)]

    def at(self, version: int) -> Entry | None:
        entries = self.entries
        if not entries:
            return None
        first = entries[0][0]
        if not first <= version <= entries[-1][0]:
            return None
        entry = entries[version - first]  # versions are kept in order, without gaps
        return entry if entry[0] == version else None

    def versions(self) -> list[int]:
        return [entry[0] for entry in self.entries]

    def restart(self, entry: Entry) -> None:
        """Forgets every version but entry (a state restored from storage)."""
        self.entries.clear()
        self.entries.append(entry)
        self.bytes = entry[3]
        self.undo.clear()
        self.redo.clear()
