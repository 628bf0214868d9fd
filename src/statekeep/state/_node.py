"""Frozen values: what a snapshot of an AppState is made of.

A pydantic model's value becomes a Node: one class per model, its fields in
one tuple behind read-only properties (a read is one C-level tuple index), so
copying it with one field changed is one tuple slice; a stdlib dataclass's
value (pydantic accepts them as fields) becomes one too. A dict becomes an
`immutables.Map` (a hash array mapped trie: a change copies about log32(n)
small nodes and shares the rest), a list a tuple, a set a frozenset; scalars
stay as they are. Nothing in a snapshot can be changed in place, so a
snapshot may be held, shared between threads and compared by identity.
"""

from __future__ import annotations

import collections
import dataclasses
import operator
from collections.abc import Mapping
from typing import Any

import immutables
import pydantic

from ..errors import FrozenStateError, ValidationError

Map = immutables.Map


class Node(tuple):  # type: ignore[type-arg]
    """A frozen pydantic model value: attributes read like the model's (a
    property per field over a tuple of the values, as a namedtuple's), and
    nothing can be set. `==` compares values of the same model, frozen or
    not (`snapshot.cursor == Cursor(line=3)`); a Node is hashable when its
    values are, with the hash of its model's value (a frozen model's), so a
    dict keyed by frozen models is read with the models themselves. A
    dataclass, or a model with an `__eq__` or `__hash__` of its own, is
    compared and hashed by its class's own, on the value thawed."""

    __slots__ = ()
    _model: type  # a pydantic model, or a stdlib dataclass
    _names: tuple[str, ...]
    _index: dict[str, int]
    _init: tuple[int, ...] | None  # the fields a dataclass is made from (None: all)
    _delegate: bool  # compared and hashed as its class does, on the value thawed
    _rooted: bool  # a RootModel's: its value is its one field's

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenStateError(
            f"a state snapshot never changes: set {type(self).__name__}.{name} "
            "with state.set(), state.update() or state.batch()"
        )

    def __delattr__(self, name: str) -> None:
        self.__setattr__(name, None)

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if type(other) is type(self):
            return (
                as_instance(self) == as_instance(other)
                if self._delegate
                else tuple.__eq__(self, other)
            )
        if type(other) is self._model:
            return (
                as_instance(self) == other
                if self._delegate
                else tuple.__eq__(self, freeze_any(other))
            )
        return False

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        # as the model's own hash: pydantic hashes its fields' values (one field: that
        # value itself; none: 0)
        if self._delegate:
            return hash(as_instance(self))
        if len(self) == 1:
            return hash(self[0])
        return tuple.__hash__(self) if self else hash(0)

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={v!r}" for n, v in zip(self._names, self, strict=True))
        return f"{type(self).__name__}({fields})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self._model, tuple(self)))

    def __copy__(self) -> Node:
        return self

    def __deepcopy__(self, memo: Any) -> Node:
        return self


def _rebuild(model: type, values: tuple[Any, ...]) -> Node:
    return make(node_class(model), values)


_CLASSES: dict[type, type[Node]] = {}


def node_class(model: type) -> type[Node]:
    """The Node class of a pydantic model or a stdlib dataclass (made once per class)."""
    cls = _CLASSES.get(model)
    if cls is None:
        init: tuple[int, ...] | None = None
        if issubclass(model, pydantic.BaseModel):
            names = tuple(model.model_fields)
            delegate = _own_eq_or_hash(model)
        else:
            fields = dataclasses.fields(model)  # type: ignore[arg-type]  # a dataclass
            names = tuple(f.name for f in fields)
            init = tuple(i for i, f in enumerate(fields) if f.init)
            delegate = True
        namespace: dict[str, Any] = {
            "__slots__": (),
            "__module__": model.__module__,
            "__qualname__": model.__qualname__,
            "_model": model,
            "_names": names,
            "_index": {name: i for i, name in enumerate(names)},
            "_init": init,
            "_delegate": delegate,
            "_rooted": issubclass(model, pydantic.RootModel),
        }
        for i, name in enumerate(names):
            namespace[name] = property(operator.itemgetter(i), doc=f"{model.__name__}.{name}")
        cls = _CLASSES.setdefault(model, type(model.__name__, (Node,), namespace))
    return cls


def _own_eq_or_hash(model: type[pydantic.BaseModel]) -> bool:
    """Whether a model (or a base below BaseModel) defines __eq__ or __hash__
    itself (pydantic's own hash of a frozen model is made by make_hash_func)."""
    for cls in model.__mro__:
        if cls is pydantic.BaseModel:
            return False
        own = vars(cls)
        if "__eq__" in own:
            return True
        hash_of = own.get("__hash__")
        if hash_of is not None and "make_hash_func" not in getattr(hash_of, "__qualname__", ""):
            return True
    return False


def as_instance(node: Node) -> Any:
    """A Node's value as an instance of its class again."""
    model = node._model
    if issubclass(model, pydantic.BaseModel):
        return model.model_validate(plain(node))
    made = _adapter(model).validate_python(plain(node))
    for i, name in enumerate(node._names):  # fields not given to __init__: as they were
        if node._init is not None and i not in node._init:
            object.__setattr__(made, name, node[i])
    return made


_ADAPTERS: dict[type, pydantic.TypeAdapter[Any]] = {}


def _adapter(cls: type) -> pydantic.TypeAdapter[Any]:
    found = _ADAPTERS.get(cls)
    if found is None:
        found = _ADAPTERS.setdefault(cls, pydantic.TypeAdapter(cls))
    return found


_new_tuple = tuple.__new__


def make(cls: type[Node], values: Any) -> Node:
    return _new_tuple(cls, values)


def values_of(node: Node) -> tuple[Any, ...]:
    return node


def replaced(node: Node, index: int, value: Any) -> Node:
    """node with its field at index set to value (the others shared)."""
    return _new_tuple(type(node), (*node[:index], value, *node[index + 1 :]))


def plain(value: Any) -> Any:
    """A frozen value as plain Python data (dicts, lists, scalars), for JSON
    or a model: the inverse of freezing."""
    if isinstance(value, Node):
        if value._rooted:
            return plain(value[0])
        if value._init is not None:  # a dataclass: what its __init__ takes
            names = value._names
            return {names[i]: plain(value[i]) for i in value._init}
        return {n: plain(v) for n, v in zip(value._names, value, strict=True)}
    kind = type(value)
    if kind is Map:
        return {plain_key(k): plain(v) for k, v in value.items()}
    if kind is tuple:
        return [plain(v) for v in value]
    if kind is frozenset:
        return [plain(v) for v in value]
    return value


def plain_key(key: Any) -> Any:
    """A dict key as plain Python data: a Node becomes its model's value
    again (a dict cannot be a key), a tuple a tuple."""
    if type(key) in _PLAIN:
        return key
    if isinstance(key, Node):
        return as_instance(key)
    if type(key) is tuple:
        return tuple(plain_key(v) for v in key)
    return key


_PLAIN = frozenset({str, int, float, bool, bytes, type(None)})  # frozen as they are


def freeze_any(value: Any) -> Any:
    """Freezes a value of no declared shape: a model or a dataclass becomes
    its Node, a mapping a Map (its keys frozen too), a list or tuple a
    tuple, a set a frozenset of frozen items."""
    kind = type(value)
    if kind in _PLAIN or isinstance(value, Node):
        return value
    if isinstance(value, pydantic.BaseModel) or (
        dataclasses.is_dataclass(value) and not isinstance(value, type)
    ):
        if isinstance(value, pydantic.BaseModel) and value.__pydantic_extra__:
            raise extra_refused(value)
        cls = node_class(kind)
        return make(cls, tuple(freeze_any(getattr(value, n)) for n in cls._names))
    if isinstance(value, Mapping) and kind is not Map:
        return Map({freeze_key(k): freeze_any(v) for k, v in value.items()})
    if isinstance(value, list | tuple | collections.deque):
        return tuple(freeze_any(v) for v in value)
    if isinstance(value, set | frozenset):
        return frozenset(freeze_key(v) for v in value)
    if isinstance(value, bytearray):
        return bytes(value)
    return value


def extra_refused(value: pydantic.BaseModel) -> ValidationError:
    """A model's value with fields it does not declare (extra="allow")."""
    names = ", ".join(map(str, value.__pydantic_extra__ or {}))
    return ValidationError(
        f"{type(value).__name__}: fields it does not declare ({names}) are not kept in a "
        "state, which holds a model's declared fields: declare them"
    )


def freeze_key(key: Any) -> Any:
    """A dict key or set item frozen: a frozen model becomes its Node (equal,
    same hash). An instance of a class that compares itself (a dataclass, a
    model with an __eq__ of its own) stays as it is: hashable, so immutable
    as far as its class says, and only its class's __eq__ finds it again."""
    if type(key) in _PLAIN:
        return key
    if (isinstance(key, pydantic.BaseModel) or dataclasses.is_dataclass(key)) and node_class(
        type(key)
    )._delegate:
        return key
    return freeze_any(key)
