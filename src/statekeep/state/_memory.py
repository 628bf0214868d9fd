"""How much memory kept versions take, and how much of it they share.

Measured on the real trees: every object reachable from a version's root
(Nodes and their value tuples, `immutables.Map` and the trie nodes inside
it, tuples, and the values at the leaves) is counted once by identity with
`sys.getsizeof`. A container met again in a later version is shared, with
everything below it (snapshots never change), so each further version is
walked only where it differs from the one before.
"""

from __future__ import annotations

import gc
import sys
from dataclasses import dataclass
from typing import Any

from ._node import Map, Node

_CONTAINERS = (Node, Map, tuple, frozenset)


@dataclass(frozen=True)
class MemoryReport:
    versions: int  # how many versions were measured
    version_bytes: int  # what the newest version takes alone
    total_bytes: int  # what all of them take together
    shared_bytes: int  # of the versions after the first: bytes shared with those kept before
    walked_bytes: int  # of the versions after the first: their whole size

    @property
    def sharing(self) -> float:
        """Bytes each version shares with those kept before it / its size (1.0: all)."""
        return self.shared_bytes / self.walked_bytes if self.walked_bytes else 1.0

    @property
    def copies_bytes(self) -> int:
        """What the same versions would take as full copies."""
        return self.version_bytes * self.versions


def _descend(value: Any) -> bool:
    return isinstance(value, _CONTAINERS) or type(value).__name__.startswith("map_")


def _children(value: Any) -> list[Any]:
    return [r for r in gc.get_referents(value) if not isinstance(r, type)]


def _new_bytes(root: Any, seen: set[int]) -> int:
    """Bytes of the objects under root not in seen (then added to it); a
    container already seen is not entered: all below it is seen too."""
    new = 0
    stack = [root]
    while stack:
        value = stack.pop()
        key = id(value)
        if key in seen:
            continue
        seen.add(key)
        new += sys.getsizeof(value)
        if _descend(value):
            stack.extend(_children(value))
    return new


def _size(value: Any, memo: dict[int, int]) -> int:
    """The bytes of value and everything below it (a subtree's total is
    remembered: snapshots never change)."""
    if not _descend(value):
        return sys.getsizeof(value)
    key = id(value)
    found = memo.get(key)
    if found is None:
        found = sys.getsizeof(value) + sum(_size(child, memo) for child in _children(value))
        memo[key] = found
    return found


def measure(roots: list[Any]) -> MemoryReport:
    if not roots:
        return MemoryReport(0, 0, 0, 0, 0)
    seen: set[int] = set()
    memo: dict[int, int] = {}
    total = _new_bytes(roots[0], seen)
    shared_sum = walked_sum = 0
    for root in roots[1:]:
        new = _new_bytes(root, seen)
        size = _size(root, memo)
        total += new
        shared_sum += max(0, size - new)
        walked_sum += size
    return MemoryReport(len(roots), _size(roots[-1], memo), total, shared_sum, walked_sum)
