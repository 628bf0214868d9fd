"""A snapshot as the user's own objects again, for `state.model()`.

The frozen tree holds values that were validated when they were set, so it
is rebuilt without validating them again: each Node becomes an instance of
its own class (`model_construct`, or a dataclass made without running its
`__init__`), so a validator that is not idempotent does not run twice, a
union's member stays that member, and a dataclass keeps its `init=False`
fields. Containers become what the model declares: a list where it says
list, a tuple where it says tuple, a set, a dict.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import pydantic

from ._node import Map, Node
from ._shape import ListShape, MapShape, ModelShape, OptionalShape, Shape, compile_shape


def rebuilt(value: Any, shape: Shape) -> Any:
    """value (frozen, valid at shape) as the objects its model describes."""
    if value is None:
        return None
    if isinstance(shape, OptionalShape):
        return rebuilt(value, shape.inner)
    if isinstance(shape, ModelShape) and isinstance(value, Node) and value._model is shape.model:
        return _instance(value, shape)
    if isinstance(shape, MapShape) and type(value) is Map:
        return {_key(k): rebuilt(v, shape.value) for k, v in value.items()}
    if isinstance(shape, ListShape) and type(value) is tuple:
        items = [rebuilt(v, shape.item) for v in value]
        return tuple(items) if _origin(shape.annotation) is tuple else items
    made = _any(value, shape.annotation)
    if shape.scalar or shape.annotation is Any:
        return made
    try:  # a NamedTuple, a deque, a Counter, a tuple in a union...: as the field declares
        return shape.adapter.validate_python(made)
    except pydantic.ValidationError:
        return made


def _instance(node: Node, shape: ModelShape) -> pydantic.BaseModel:
    fields = {
        name: rebuilt(item, field_shape)
        for (name, (_, field_shape)), item in zip(shape.fields.items(), node, strict=True)
    }
    made: pydantic.BaseModel = shape.model.model_construct(**fields)
    return made


def _any(value: Any, annotation: Any) -> Any:
    """A value of no container shape (an Any field, a fixed tuple, a union, a
    set): rebuilt by what it is, kept a tuple or a frozenset where the
    annotation says so."""
    if isinstance(value, Node):
        model = value._model
        if issubclass(model, pydantic.BaseModel):
            shape = compile_shape(model)
            assert isinstance(shape, ModelShape)
            return _instance(value, shape)
        return _dataclass(value)
    kind = type(value)
    if kind is Map:
        return {_key(k): _any(v, Any) for k, v in value.items()}
    origin = _origin(annotation)
    if kind is tuple:
        items = [_any(v, Any) for v in value]
        return tuple(items) if origin is tuple else items
    if kind is frozenset:
        members = {_key(v) for v in value}
        return frozenset(members) if origin is frozenset else members
    return value


def _dataclass(node: Node) -> Any:
    """A dataclass instance with the node's fields, its __init__ not run
    again (a __post_init__ that counts would count twice)."""
    cls = node._model
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - a hint naming what cannot be resolved here
        hints = {}
    made: Any = object.__new__(cls)
    for field, item in zip(dataclasses.fields(cls), node, strict=True):
        object.__setattr__(made, field.name, _any(item, hints.get(field.name, Any)))
    return made


def _key(key: Any) -> Any:
    """A dict key or set item: a Node becomes its instance (hashable), a tuple stays one."""
    if isinstance(key, Node):
        return _any(key, Any)
    if type(key) is tuple:
        return tuple(_key(k) for k in key)
    return key


def _origin(annotation: Any) -> Any:
    """The container an annotation names (through Annotated and Optional)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _origin(typing.get_args(annotation)[0])
    if origin in (typing.Union, type(int | None)):
        others = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _origin(others[0]) if len(others) == 1 else None
    return origin
