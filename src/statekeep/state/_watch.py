"""Subscriptions to parts of a state, found by the paths a version changed.

Every subscription is filed in a trie under the paths it depends on: its
path (`"doc.title"`, `"meters.*"`: `*` is any one part), or the paths its
selector function read. A version changes a few paths; for each, the trie
gives the subscriptions filed at that path, above it (their value contains
it) and below it (a container they read was replaced), following `*` at
each level. So an update costs the same whatever the number of
subscriptions on other parts of the state.

A candidate is then checked: its value in the new snapshot against the one
it was last called with (identity first, `==` second); it is called only
when they differ, once per version.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Iterable
from typing import Any

from ._node import Map, Node, values_of
from ._track import tracked

log = logging.getLogger("statekeep.state")

WILDCARD = "*"
_UNSEEN: Any = object()
ABSENT = object()  # what select_absent gives where a path names nothing


class Trie:
    __slots__ = ("children", "watches")

    def __init__(self) -> None:
        self.children: dict[Any, Trie] = {}
        self.watches: dict[Watch, None] = {}

    def walk(self) -> Iterable[Trie]:
        yield self
        for child in self.children.values():
            yield from child.walk()


class Index:
    """Watches filed by path; `candidates(paths)` finds those a change may touch."""

    __slots__ = ("memo", "root")

    def __init__(self) -> None:
        self.root = Trie()
        # changed path -> its candidates in order: an update of the same path
        # again (a meter, a cursor) costs one lookup; forgotten on any change here
        self.memo: dict[tuple[Any, ...], tuple[Watch, ...]] = {}

    def of(self, path: tuple[Any, ...]) -> tuple[Watch, ...]:
        """The candidates of one changed path, in subscription order."""
        found = self.memo.get(path)
        if found is not None:
            return found
        node: Trie | None = self.root  # first the common miss: no watch at, above or below
        for part in path:
            assert node is not None
            if node.watches or WILDCARD in node.children:
                break
            node = node.children.get(part)
            if node is None:
                found = ()
                break
        if found is None:
            candidates: dict[Watch, None] = {}
            self.candidates((path,), candidates)
            found = tuple(sorted(candidates, key=order_of))
        memo = self.memo
        if len(memo) >= 256:  # small: what it holds dies young (see Resolver)
            memo.clear()
        memo[path] = found
        return found

    def add(self, path: tuple[Any, ...], watch: Watch) -> None:
        self.memo.clear()
        node = self.root
        for part in path:
            node = node.children.setdefault(part, Trie())
        node.watches[watch] = None

    def remove(self, path: tuple[Any, ...], watch: Watch) -> None:
        self.memo.clear()
        trail = [self.root]
        for part in path:
            child = trail[-1].children.get(part)
            if child is None:
                return
            trail.append(child)
        trail[-1].watches.pop(watch, None)
        for depth in range(len(path), 0, -1):  # prune emptied branches
            node = trail[depth]
            if node.watches or node.children:
                break
            del trail[depth - 1].children[path[depth - 1]]

    def candidates(self, changed: Iterable[tuple[Any, ...]], found: dict[Watch, None]) -> None:
        root = self.root
        if not root.children and not root.watches:
            return
        # a batch changes many keys of one dict: the walk down to their parent is made
        # once per parent, then each key is one lookup among the parent's children
        parents: dict[Any, Any] = {}  # by the parent's path; a key of a field by the field
        for path in changed:
            size = len(path)
            if not size:
                for below in root.walk():
                    found.update(below.watches)
                continue
            prefix = path[0] if size == 2 else path[:-1]  # (no tuple made for the common case)
            parent = parents.get(prefix, _UNSEEN)
            if parent is _UNSEEN:
                parent = parents[prefix] = self._parent(path, found)
            if parent is None:
                continue
            if type(parent) is tuple:  # a "*" on the way: followed for each path
                depth, node = parent
                self._branching(path, depth, [node], found)
                continue
            node = parent.children.get(path[-1])
            if node is not None:  # at or below the change: a container they read was replaced
                for below in node.walk():
                    found.update(below.watches)

    def _parent(self, path: tuple[Any, ...], found: dict[Watch, None]) -> Any:
        """The trie node of path's parent (the watches above it are found on
        the way); None when nothing is filed there; (depth, node) where a "*"
        branches off on the way."""
        node: Trie | None = self.root
        last = len(path) - 1
        for depth, part in enumerate(path):
            assert node is not None
            if node.watches:
                found.update(node.watches)  # above the change: their value holds it
            if WILDCARD in node.children:
                return depth, node
            if depth == last:
                return node
            node = node.children.get(part)
            if node is None:
                return None
        return None

    @staticmethod
    def _branching(
        path: tuple[Any, ...], depth: int, nodes: list[Trie], found: dict[Watch, None]
    ) -> None:
        """From depth on, following each part and "*" (nodes' own watches are in found)."""
        for i, part in enumerate(path[depth:]):
            following = []
            for node in nodes:
                if i:
                    found.update(node.watches)
                children = node.children
                child = children.get(part)
                if child is not None:
                    following.append(child)
                if part != WILDCARD:
                    child = children.get(WILDCARD)
                    if child is not None:
                        following.append(child)
            nodes = following
            if not nodes:
                return
        for node in nodes:
            for below in node.walk():
                found.update(below.watches)


def order_of(watch: Watch) -> int:
    return watch.order


class Watch:
    """One subscription: what it selects, the value it last saw, its callback."""

    __slots__ = (
        "call",
        "callback",
        "deps",
        "failed",
        "filed",
        "last",
        "loop",
        "order",
        "pattern",
        "selector",
    )
    _orders = itertools.count()

    def __init__(
        self,
        callback: Callable[[Any, Any], Any],
        pattern: tuple[Any, ...] | None,
        selector: Callable[[Any], Any] | None,
        loop: asyncio.AbstractEventLoop | None,
    ) -> None:
        self.callback = callback
        self.call: Callable[[Any, Any], Any] = callback  # how it is called (async: scheduled)
        self.pattern = pattern  # a path (with "*" parts), or None for a selector function
        # where it is filed: a negative index (the last item) under any index
        self.filed = (
            None
            if pattern is None
            else tuple(WILDCARD if type(p) is int and p < 0 else p for p in pattern)
        )
        self.selector = selector
        self.loop = loop
        self.order = next(self._orders)
        self.deps: set[tuple[Any, ...]] = set()
        self.last: Any = None
        self.failed = 0

    def __repr__(self) -> str:
        what = self.selector if self.pattern is None else ".".join(map(str, self.pattern))
        return f"<subscription to {what!r}: {self.callback!r}>"

    def start(self, root: Any, index: Index) -> None:
        """Files the watch and remembers its value in root."""
        if self.pattern is None:
            self.last = self._select(root, index)
        else:
            assert self.filed is not None
            index.add(self.filed, self)
            self.last = select(root, self.pattern) if WILDCARD not in self.pattern else None

    def stop(self, index: Index) -> None:
        for path in self.deps if self.filed is None else (self.filed,):
            index.remove(path, self)

    def _select(self, root: Any, index: Index) -> Any:
        assert self.selector is not None
        value, deps = tracked(self.selector, root)
        if deps != self.deps:
            for path in self.deps - deps:
                index.remove(path, self)
            for path in deps - self.deps:
                index.add(path, self)
            self.deps = deps
        return value

    def change(
        self, old_root: Any, new_root: Any, changed: Iterable[tuple[Any, ...]], index: Index
    ) -> tuple[Any, Any] | None:
        """(old, new) when its value changed in this version, else None."""
        pattern = self.pattern
        if pattern is None:
            new = self._select(new_root, index)
        elif WILDCARD in pattern:
            return _wildcard_change(pattern, old_root, new_root, changed)
        else:
            new = select(new_root, pattern)
        old = self.last
        if new is old or _equal(new, old):
            return None
        self.last = new
        return old, new


def _equal(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - a value that cannot be compared has changed
        return False


def select(root: Any, path: tuple[Any, ...]) -> Any:
    """The value at a path of names in a snapshot; None where there is none."""
    value = root
    for part in path:
        value = _part(value, part)
        if value is ABSENT:
            return None
    return value


def _part(value: Any, part: Any) -> Any:
    if isinstance(value, Node):
        index = value._index.get(part) if isinstance(part, str) else None
        return ABSENT if index is None else values_of(value)[index]
    kind = type(value)
    if kind is Map:
        return value.get(part, ABSENT)
    if kind is tuple and type(part) is int and -len(value) <= part < len(value):
        return value[part]
    return ABSENT


def _children(value: Any) -> Iterable[tuple[Any, Any]]:
    if isinstance(value, Node):
        return zip(value._names, values_of(value), strict=True)
    kind = type(value)
    if kind is Map:
        items: Iterable[tuple[Any, Any]] = value.items()
        return items
    if kind is tuple:
        return enumerate(value)
    return ()


def expand(root: Any, pattern: tuple[Any, ...]) -> dict[Any, Any]:
    """Every value the pattern matches in root, by what its `*` parts matched."""
    found: dict[Any, Any] = {}

    def visit(value: Any, depth: int, matched: tuple[Any, ...]) -> None:
        if depth == len(pattern):
            found[matched[0] if len(matched) == 1 else matched] = value
            return
        part = pattern[depth]
        if part == WILDCARD:
            for key, child in _children(value):
                visit(child, depth + 1, (*matched, key))
        else:
            child = _part(value, part)
            if child is not ABSENT:
                visit(child, depth + 1, matched)

    visit(root, 0, ())
    return found


def _wildcard_change(
    pattern: tuple[Any, ...], old_root: Any, new_root: Any, changed: Iterable[tuple[Any, ...]]
) -> tuple[Any, Any] | None:
    """The matches that changed: ({key: old}, {key: new}); a key added is
    absent from old, a key removed absent from new."""
    size = len(pattern)
    concrete: set[tuple[Any, ...]] = set()
    for path in changed:
        if len(path) < size and _matches(path, pattern):  # a container above was replaced
            old_all, new_all = expand(old_root, pattern), expand(new_root, pattern)
            return _differences(old_all, new_all, old_all.keys() | new_all.keys())
        if _matches(path[:size], pattern):
            concrete.add(path[:size])
    if not concrete:
        return None
    olds: dict[Any, Any] = {}
    news: dict[Any, Any] = {}
    for path in concrete:
        key = tuple(p for p, q in zip(path, pattern, strict=True) if q == WILDCARD)
        name = key[0] if len(key) == 1 else key
        old, new = select_absent(old_root, path), select_absent(new_root, path)
        if old is not ABSENT:
            olds[name] = old
        if new is not ABSENT:
            news[name] = new
    return _differences(olds, news, olds.keys() | news.keys())


def select_absent(root: Any, path: tuple[Any, ...]) -> Any:
    value = root
    for part in path:
        value = _part(value, part)
        if value is ABSENT:
            break
    return value


def _differences(
    olds: dict[Any, Any], news: dict[Any, Any], keys: Iterable[Any]
) -> tuple[Any, Any] | None:
    old_out, new_out = {}, {}
    for key in keys:
        old, new = olds.get(key, ABSENT), news.get(key, ABSENT)
        if old is new or (old is not ABSENT and new is not ABSENT and _equal(old, new)):
            continue
        if old is not ABSENT:
            old_out[key] = old
        if new is not ABSENT:
            new_out[key] = new
    return (old_out, new_out) if old_out or new_out else None


def _matches(path: tuple[Any, ...], pattern: tuple[Any, ...]) -> bool:
    return all(q == WILDCARD or p == q for p, q in zip(path, pattern, strict=False))
