"""Which parts of a snapshot a selector function reads.

`state.subscribe(lambda s: s.doc.title, callback)` runs the selector on a
tracking view of the snapshot: every value it reads through the view is
recorded by path (`("doc", "title")`), and a container it iterates, measures
or returns whole is recorded as the container's path. Those paths index the
subscription, so an update elsewhere in the tree never runs the selector.
The selector runs again (tracked again) whenever a change touches one of
its paths; what it reads may differ from one run to the next.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from ._node import Map, Node

Deps = set[tuple[Any, ...]]


class _View:
    __slots__ = ("_deps", "_path", "_value")
    _deps: Deps
    _path: tuple[Any, ...]
    _value: Any

    def __init__(self, value: Any, path: tuple[Any, ...], deps: Deps) -> None:
        object.__setattr__(self, "_value", value)
        object.__setattr__(self, "_path", path)
        object.__setattr__(self, "_deps", deps)

    def _whole(self) -> Any:
        self._deps.add(self._path)
        return self._value

    def __eq__(self, other: object) -> bool:
        return bool(self._whole() == (other._whole() if isinstance(other, _View) else other))

    def __hash__(self) -> int:
        return hash(self._whole())

    def __repr__(self) -> str:
        return repr(self._whole())

    def __bool__(self) -> bool:
        return bool(self._whole())

    def __len__(self) -> int:
        return len(self._whole())

    # what a snapshot's value offers besides reading its parts reads it whole:
    # a tuple's count() and index(), +, *, comparisons, `in`
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._whole(), name)

    def __contains__(self, item: Any) -> bool:
        return _plain(item) in self._whole()

    def __lt__(self, other: Any) -> bool:
        return bool(self._whole() < _plain(other))

    def __le__(self, other: Any) -> bool:
        return bool(self._whole() <= _plain(other))

    def __gt__(self, other: Any) -> bool:
        return bool(self._whole() > _plain(other))

    def __ge__(self, other: Any) -> bool:
        return bool(self._whole() >= _plain(other))

    def __add__(self, other: Any) -> Any:
        return self._whole() + _plain(other)

    def __radd__(self, other: Any) -> Any:
        return _plain(other) + self._whole()

    def __mul__(self, other: Any) -> Any:
        return self._whole() * _plain(other)

    __rmul__ = __mul__


def _plain(value: Any) -> Any:
    return value._whole() if isinstance(value, _View) else value


def _view(value: Any, path: tuple[Any, ...], deps: Deps) -> Any:
    if isinstance(value, Node):
        return NodeView(value, path, deps)
    kind = type(value)
    if kind is Map:
        return MapView(value, path, deps)
    if kind is tuple:
        return ListView(value, path, deps)
    deps.add(path)
    return value


class NodeView(_View):
    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        return _view(getattr(self._value, name), (*self._path, name), self._deps)


class MapView(_View):
    __slots__ = ()

    def __getitem__(self, key: Any) -> Any:
        try:
            value = self._value[key]
        except KeyError:
            self._deps.add((*self._path, key))
            raise
        return _view(value, (*self._path, key), self._deps)

    def get(self, key: Any, default: Any = None) -> Any:
        if key in self._value:
            return self[key]
        self._deps.add((*self._path, key))
        return default

    def __contains__(self, key: Any) -> bool:
        self._deps.add((*self._path, key))
        return key in self._value

    def __iter__(self) -> Iterator[Any]:
        return iter(self._whole())

    def keys(self) -> Any:
        return self._whole().keys()

    def values(self) -> Any:
        return self._whole().values()

    def items(self) -> Any:
        return self._whole().items()


class ListView(_View):
    __slots__ = ()

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return self._whole()[index]
        value = self._value[index]
        return _view(value, (*self._path, index % len(self._value)), self._deps)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._whole())


def unwrap(value: Any) -> Any:
    if isinstance(value, _View):
        return value._whole()
    kind = type(value)
    if kind is tuple or kind is list:
        return kind(unwrap(v) for v in value)
    if kind is dict:
        return {unwrap(k): unwrap(v) for k, v in value.items()}
    return value


def tracked(selector: Callable[[Any], Any], root: Any) -> tuple[Any, Deps]:
    """The selector's value on root, and the paths it read."""
    deps: Deps = set()
    value = unwrap(selector(_view(root, (), deps)))
    return value, deps
