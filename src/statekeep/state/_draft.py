"""Drafts: a snapshot changed like a normal object, then frozen as one version.

`state.update(fn)` and `with state.batch() as draft:` hand out a Draft of the
current snapshot. Reading it reads the snapshot; a container read through it
(a model, a dict, a list) is a Draft too, made on first touch. Each
assignment is validated against the Shape at its path at once (a bad value
raises there, and the draft is dropped whole), and its path is recorded.
`finish` builds the new tree: only the containers that changed are copied
(a dict's changes go into one `immutables` mutation), the rest is shared.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..errors import FrozenStateError, StateError, StatePathError
from ._node import Map, Node, make, plain, values_of
from ._shape import ListShape, MapShape, ModelShape, OptionalShape, Shape


class _Missing:
    __slots__ = ()


_MISSING: Any = _Missing()  # no value: not set here, or deleted


class Changes:
    """The paths changed in one draft, in the order they were first changed."""

    __slots__ = ("checking", "paths")

    def __init__(self) -> None:
        self.paths: dict[tuple[Any, ...], None] = {}
        self.checking = True  # False while a draft is only looked at (==, repr)

    def add(self, path: tuple[Any, ...]) -> None:
        self.paths[path] = None

    def close(self) -> None:
        """The draft's update() or batch() has ended: a change to it now raises."""
        self.paths = _Ended()


class _Ended(dict[tuple[Any, ...], None]):
    def __setitem__(self, key: tuple[Any, ...], value: None) -> None:
        raise _ended()


def _ended() -> StateError:
    return StateError(
        "this draft's update() or batch() has ended: its changes are applied, and a "
        "change to it now would be lost; make it with a new update() or batch()"
    )


def draft_of(value: Any, shape: Shape, path: tuple[Any, ...], changes: Changes) -> Any:
    """value as a Draft when it is a container, else value itself."""
    if isinstance(shape, OptionalShape):
        if value is None:
            return None
        shape = shape.inner
    kind = type(value)
    if isinstance(value, Node):
        node_shape = shape if isinstance(shape, ModelShape) else ModelShape(value._model)
        return NodeDraft(value, node_shape, path, changes)
    untyped = shape.annotation is Any  # inside a value of no declared shape
    draft: Draft
    if kind is Map and (untyped or isinstance(shape, MapShape)):
        draft = MapDraft(value, shape if isinstance(shape, MapShape) else None, path, changes)
    elif kind is tuple and (untyped or isinstance(shape, ListShape)):
        draft = ListDraft(value, shape if isinstance(shape, ListShape) else None, path, changes)
    elif kind is Map or kind is tuple or kind is frozenset:  # a leaf: a fixed tuple, a set...
        cls = MapDraft if kind is Map else ListDraft if kind is tuple else SetDraft
        draft = cls(value, None, path, changes)  # its items unchecked until it ends:
        object.__setattr__(draft, "_check", shape)  # then checked whole
        return draft
    else:
        return value  # a scalar
    if shape.checked:  # a constrained dict or list: checked whole when the draft ends
        object.__setattr__(draft, "_check", shape)
    return draft  # a scalar, or a value checked whole (set it whole to change it)


def finish(value: Any) -> Any:
    """A draft's frozen value (its base when nothing in it changed)."""
    return value._finish() if isinstance(value, Draft) else value


def _incoming(value: Any, shape: Shape, where: str) -> Any:
    """A value assigned into a draft, validated and frozen."""
    if isinstance(value, Draft):
        value = value._finish()
    return shape.freeze(value, where)


class Draft:
    __slots__ = ("_base", "_changes", "_check", "_dirty", "_path")
    _base: Any
    _changes: Changes
    _check: Shape | None
    _dirty: bool
    _path: tuple[Any, ...]

    def __init__(self, base: Any, path: tuple[Any, ...], changes: Changes) -> None:
        object.__setattr__(self, "_base", base)
        object.__setattr__(self, "_path", path)
        object.__setattr__(self, "_changes", changes)
        object.__setattr__(self, "_dirty", False)
        object.__setattr__(self, "_check", None)

    def _checked(self, value: Any) -> Any:
        """A changed value of a constrained container, checked whole."""
        if self._check is None or not self._changes.checking:
            return value
        return self._check.freeze(value, ".".join(map(str, self._path)))

    def _changed(self, part: Any = _MISSING) -> None:
        object.__setattr__(self, "_dirty", True)
        self._changes.add(self._path if part is _MISSING else (*self._path, part))

    def _writable(self) -> None:
        """Raises before a change to a draft whose update or batch has ended."""
        if type(self._changes.paths) is _Ended:
            raise _ended()

    def _peek(self) -> Any:
        """The value now, a constrained container not checked yet (it may be
        over its bounds for a while, as long as it is within them at the end)."""
        changes = self._changes
        checking, changes.checking = changes.checking, False
        try:
            return self._finish()
        finally:
            changes.checking = checking

    def _where(self, part: Any) -> str:
        return ".".join(str(p) for p in (*self._path, part))

    def _finish(self) -> Any:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        """Equal to a value equal to what it holds now: a dict draft to a dict
        of its items, a list draft to a list (a snapshot's Map or tuple too)."""
        other = other._peek() if isinstance(other, Draft) else other
        value = self._peek()
        if value == other:
            return True
        return type(other) in (dict, list) and bool(plain(value) == other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"draft of {self._peek()!r}"


class NodeDraft(Draft):
    # __dict__: a child draft, once made, is an attribute (read without __getattr__)
    __slots__ = ("__dict__", "_overlay", "_shape")
    _overlay: dict[int, Any]
    _shape: ModelShape

    def __init__(
        self, base: Node, shape: ModelShape, path: tuple[Any, ...], changes: Changes
    ) -> None:
        super().__init__(base, path, changes)
        object.__setattr__(self, "_shape", shape)
        object.__setattr__(self, "_overlay", {})

    def _field(self, name: str) -> tuple[int, Shape]:
        try:
            return self._shape.fields[name]
        except KeyError:
            known = ", ".join(self._shape.fields)
            raise StatePathError(
                f"{self._where(name)}: {self._shape.model.__name__} has no field {name!r}; "
                f"its fields are: {known}",
                self._where(name),
            ) from None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        index, shape = self._field(name)
        overlay = self._overlay
        value = overlay.get(index, _MISSING)
        if isinstance(value, Draft):
            return value
        if value is _MISSING:
            value = values_of(self._base)[index]
        child = draft_of(value, shape, (*self._path, name), self._changes)
        if isinstance(child, Draft):  # (a value assigned whole is drafted too: it changes on)
            overlay[index] = child
            self.__dict__[name] = child
        return child

    def __setattr__(self, name: str, value: Any) -> None:
        self._writable()
        if value is self.__dict__.get(name, _MISSING):  # `d.meters |= ...`: changed already
            return
        index, shape = self._field(name)
        if type(value) is not shape.fast:
            value = _incoming(value, shape, self._where(name))
        self._overlay[index] = value
        self.__dict__.pop(name, None)
        self._changed(name)

    def __delattr__(self, name: str) -> None:
        raise FrozenStateError(f"{self._where(name)}: a field cannot be deleted; set it instead")

    def _finish(self) -> Any:
        overlay = self._overlay
        if not overlay:
            return self._base
        values = list(values_of(self._base))
        changed = self._dirty
        for index, value in overlay.items():
            if isinstance(value, Draft):
                value = value._finish()
            if value is not values[index]:
                values[index] = value
                changed = True
        return make(type(self._base), tuple(values)) if changed else self._base


class MapDraft(Draft):
    """A dict's draft: its values go straight into one `immutables` mutation
    of the base (made on the first change), so a batch of sets costs little
    more than the mutation itself; a container value read through it is a
    draft of its own, kept in the overlay until the draft is finished."""

    __slots__ = ("_key", "_key_fast", "_mutation", "_overlay", "_value", "_value_fast")
    _key: MapShape | None
    _key_fast: Any
    _mutation: Any  # an immutables MapMutation of the base, once something changed
    _overlay: dict[Any, Draft]
    _value: Shape
    _value_fast: Any  # a value of exactly this type is stored as it is

    def __init__(
        self, base: Map[Any, Any], shape: MapShape | None, path: tuple[Any, ...], changes: Changes
    ) -> None:
        super().__init__(base, path, changes)
        object.__setattr__(self, "_key", shape)
        object.__setattr__(self, "_key_fast", shape.key.fast if shape is not None else object)
        value = shape.value if shape is not None else Shape(Any)
        object.__setattr__(self, "_value", value)
        object.__setattr__(self, "_value_fast", value.fast)
        object.__setattr__(self, "_mutation", None)
        object.__setattr__(self, "_overlay", {})  # key -> the draft of a container read

    def _a_key(self, key: Any) -> Any:
        if type(key) is self._key_fast or self._key is None:
            return key
        return self._key.a_key(key, self._where(key))

    def _mutated(self) -> Any:
        mutation = self._mutation
        if mutation is None:
            mutation = self._base.mutate()
            object.__setattr__(self, "_mutation", mutation)
            object.__setattr__(self, "_dirty", True)
        return mutation

    def _now(self) -> Any:
        """The keys and values now (a mutation reads like its Map)."""
        mutation = self._mutation
        return self._base if mutation is None else mutation

    def __getitem__(self, key: Any) -> Any:
        key = self._a_key(key)
        overlay = self._overlay
        child = overlay.get(key)
        if child is not None:
            return child
        value = self._now()[key]
        child = draft_of(value, self._value, (*self._path, key), self._changes)
        if isinstance(child, Draft):
            overlay[key] = child
        return child

    def get(self, key: Any, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __setitem__(self, key: Any, value: Any) -> None:
        if type(key) is not self._key_fast:
            key = self._a_key(key)
        overlay = self._overlay
        if overlay:
            if overlay.get(key, _MISSING) is value:  # `d.nested["a"] |= ...`: changed already
                return
            overlay.pop(key, None)  # a draft of the value it replaces
        if type(value) is not self._value_fast:
            value = _incoming(value, self._value, self._where(key))
        self._changes.paths[(*self._path, key)] = None  # first: an ended draft raises here
        mutation = self._mutation
        if mutation is None:
            mutation = self._mutated()
        mutation[key] = value

    def __delitem__(self, key: Any) -> None:
        self._writable()
        key = self._a_key(key)
        if key not in self:
            raise KeyError(key)
        self._overlay.pop(key, None)
        del self._mutated()[key]
        self._changed(key)

    def pop(self, key: Any, default: Any = _MISSING) -> Any:
        if key not in self:
            if default is _MISSING:
                raise KeyError(key)
            return default
        value = finish(self[key])
        del self[key]
        return value

    def update(self, other: Any = (), **more: Any) -> None:
        items = other.items() if hasattr(other, "items") else other
        for key, value in [*items, *more.items()]:
            self[key] = value

    def setdefault(self, key: Any, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def __contains__(self, key: Any) -> bool:
        try:
            key = self._a_key(key)
        except StatePathError:
            return False
        return key in self._now()

    def keys(self) -> Iterator[Any]:
        # a mutation cannot be iterated: its Map so far is, and the changes go on in a
        # new mutation of that Map
        now = self._base
        if self._mutation is not None:
            now = self._mutation.finish()
            object.__setattr__(self, "_mutation", now.mutate())
        return iter(list(now.keys()))

    __iter__ = keys

    def values(self) -> Iterator[Any]:
        return (self[k] for k in list(self.keys()))

    def items(self) -> Iterator[tuple[Any, Any]]:
        return ((k, self[k]) for k in list(self.keys()))

    def __len__(self) -> int:
        return len(self._now())

    def _finish(self) -> Any:
        mutation = self._mutation
        for key, child in self._overlay.items():
            value = child._finish()
            if value is not child._base:  # changed inside
                if mutation is None:
                    mutation = self._mutated()
                mutation[key] = value
        if mutation is None:
            return self._base
        done = mutation.finish()
        object.__setattr__(self, "_mutation", done.mutate())  # it may be changed on
        return self._checked(done)

    def clear(self) -> None:
        for key in list(self.keys()):
            del self[key]

    def popitem(self) -> tuple[Any, Any]:
        for key in self.keys():
            return key, self.pop(key)
        raise KeyError("popitem(): the dict is empty")

    def __ior__(self, other: Any) -> MapDraft:
        self.update(other)
        return self

    def copy(self) -> dict[Any, Any]:
        """A plain dict of the draft's keys and (frozen) values now."""
        return {key: finish(value) for key, value in self.items()}


class ListDraft(Draft):
    __slots__ = ("_item", "_items")
    _item: Shape
    _items: list[Any] | None

    def __init__(
        self,
        base: tuple[Any, ...],
        shape: ListShape | None,
        path: tuple[Any, ...],
        changes: Changes,
    ) -> None:
        super().__init__(base, path, changes)
        object.__setattr__(self, "_item", shape.item if shape is not None else Shape(Any))
        object.__setattr__(self, "_items", None)  # a list, once the first item is touched

    def _list(self) -> list[Any]:
        if self._items is None:
            object.__setattr__(self, "_items", list(self._base))
        return self._items  # type: ignore[return-value]

    def __getitem__(self, index: Any) -> Any:
        items = self._list()
        if isinstance(index, slice):
            return [finish(v) for v in items[index]]
        value = items[index]
        if isinstance(value, Draft):
            return value
        child = draft_of(value, self._item, (*self._path, index % len(items)), self._changes)
        if isinstance(child, Draft):
            items[index] = child
        return child

    def __setitem__(self, index: int | slice, value: Any) -> None:
        self._writable()
        items = self._list()
        if isinstance(index, slice):
            new = [_incoming(v, self._item, self._where(index)) for v in value]
            try:
                items[index] = new
            except ValueError as exc:  # an extended slice of another length
                raise StatePathError(f"{self._where(index)}: {exc}", self._where(index)) from None
            self._changed()
            return
        self._in_range(index)
        if items[index] is value:  # `d.rows[0] += ...`: changed in place already
            return
        items[index] = _incoming(value, self._item, self._where(index))
        self._changed(index % len(items))

    def __delitem__(self, index: int | slice) -> None:
        self._writable()
        if not isinstance(index, slice):
            self._in_range(index)
        del self._list()[index]
        self._changed()

    def _in_range(self, index: Any) -> None:
        if type(index) is not int:
            raise StatePathError(
                f"{self._where(index)}: a list's part is an index, not {index!r}",
                self._where(index),
            )
        if not -len(self) <= index < len(self):
            raise StatePathError(f"{self._where(index)}: index out of range", self._where(index))

    def __iadd__(self, values: Any) -> ListDraft:
        self.extend(values)
        return self

    def __add__(self, values: Any) -> list[Any]:
        return [*(finish(v) for v in self._list()), *values]

    def __imul__(self, times: int) -> ListDraft:
        self._writable()
        items = self._list()
        items[:] = [finish(v) for v in items] * times
        self._changed()
        return self

    def __mul__(self, times: int) -> list[Any]:
        return [finish(v) for v in self._list()] * times

    def sort(self, *, key: Any = None, reverse: bool = False) -> None:
        self._writable()
        items = self._list()
        items[:] = sorted((finish(v) for v in items), key=key, reverse=reverse)
        self._changed()

    def reverse(self) -> None:
        self._writable()
        self._list().reverse()
        self._changed()

    def index(self, value: Any, *args: Any) -> int:
        return [finish(v) for v in self._list()].index(finish(value), *args)

    def count(self, value: Any) -> int:
        return [finish(v) for v in self._list()].count(finish(value))

    def append(self, value: Any) -> None:
        self._writable()
        self._list().append(_incoming(value, self._item, self._where(len(self._list()))))
        self._changed()

    def extend(self, values: Any) -> None:
        for value in values:
            self.append(value)

    def insert(self, index: int, value: Any) -> None:
        self._writable()
        self._list().insert(index, _incoming(value, self._item, self._where(index)))
        self._changed()

    def pop(self, index: int = -1) -> Any:
        self._writable()
        value = finish(self._list().pop(index))
        self._changed()
        return value

    def remove(self, value: Any) -> None:
        items = [finish(v) for v in self._list()]
        frozen = _incoming(value, self._item, self._where("?"))
        del self[items.index(frozen)]

    def clear(self) -> None:
        self._writable()
        self._list().clear()
        self._changed()

    def __len__(self) -> int:
        return len(self._base) if self._items is None else len(self._items)

    def __iter__(self) -> Iterator[Any]:
        return (self[i] for i in range(len(self)))

    def __contains__(self, value: Any) -> bool:
        return any(finish(v) == finish(value) for v in self._list())

    def _finish(self) -> Any:
        if self._items is None:
            return self._base
        items = tuple(finish(v) for v in self._items)
        if len(items) == len(self._base) and all(
            a is b for a, b in zip(items, self._base, strict=True)
        ):
            return self._base
        return self._checked(items)


class SetDraft(Draft):
    """A set field's draft: a set's methods; its items are checked (with
    the field's type) when the draft ends."""

    __slots__ = ("_items",)
    _items: set[Any] | None

    def __init__(
        self, base: frozenset[Any], shape: None, path: tuple[Any, ...], changes: Changes
    ) -> None:
        super().__init__(base, path, changes)
        object.__setattr__(self, "_items", None)

    def _set(self) -> set[Any]:
        if self._items is None:
            object.__setattr__(self, "_items", set(self._base))
        return self._items  # type: ignore[return-value]

    def _now(self) -> Any:
        return self._base if self._items is None else self._items

    def add(self, value: Any) -> None:
        self._writable()
        self._set().add(finish(value))
        self._changed()

    def discard(self, value: Any) -> None:
        self._writable()
        self._set().discard(finish(value))
        self._changed()

    def remove(self, value: Any) -> None:
        if finish(value) not in self._now():
            raise KeyError(value)
        self.discard(value)

    def pop(self) -> Any:
        self._writable()
        value = self._set().pop()
        self._changed()
        return value

    def clear(self) -> None:
        self._writable()
        self._set().clear()
        self._changed()

    def update(self, *others: Any) -> None:
        self._writable()
        for other in others:
            self._set().update(finish(v) for v in other)
        self._changed()

    def difference_update(self, *others: Any) -> None:
        self._writable()
        for other in others:
            self._set().difference_update(finish(v) for v in other)
        self._changed()

    def __ior__(self, other: Any) -> SetDraft:
        self.update(other)
        return self

    def __isub__(self, other: Any) -> SetDraft:
        self.difference_update(other)
        return self

    def __iand__(self, other: Any) -> SetDraft:
        self._writable()
        self._set().intersection_update(finish(v) for v in other)
        self._changed()
        return self

    def __contains__(self, value: Any) -> bool:
        return finish(value) in self._now()

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self._now()))

    def __len__(self) -> int:
        return len(self._now())

    def _finish(self) -> Any:
        if self._items is None or self._items == self._base:
            return self._base
        return self._checked(frozenset(self._items))


def thaw(value: Any) -> Any:
    """A frozen value (or a draft) as plain data."""
    return plain(finish(value))
