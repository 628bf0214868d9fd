"""The stored form of a frozen tree: exact, safe to read back, fast.

compress() and persisted snapshots keep a state's value as bytes. JSON lost
what it cannot say (tuple and int dict keys, bytes that are not UTF-8, a
date's type, a field's name beside its alias), and reading it back ran the
model's validation again (strict models refused their own JSON, validators
saw their own output, a value set at a path met validators it never met
when set). A packed value is a pickle of the frozen tree itself, each Node
as (model, field names, values), headed by the fingerprint of the state's
schema (every model's fields and their types). Read back by a state of the
same schema, the tree is rebuilt exactly as it was, with no validation; by
a state whose models changed since (a field added, renamed or retyped), it
is read as plain data and validated as a stored record would be.

Reading back is restricted: only models, `immutables.Map`, the standard
value types (datetime, Decimal, UUID, IP addresses, paths) and enums
already imported can appear, so bytes from a database cannot run code.
Packing refuses any other type at once (ValidationError), so nothing
unreadable is stored.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import hashlib
import io
import ipaddress
import pathlib
import pickle
import sys
import typing
import uuid
from typing import Any

import pydantic

from ..errors import ValidationError
from ._node import Map, Node, make, node_class
from ._shape import ListShape, MapShape, ModelShape, OptionalShape, Shape, compile_shape

_SAFE: dict[tuple[str, str], Any] = {
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "bytearray"): bytearray,
    ("builtins", "complex"): complex,
    ("immutables._map", "Map"): Map,
}
for _module, _names in (
    (datetime, ("datetime", "date", "time", "timedelta", "timezone")),
    (decimal, ("Decimal",)),
    (uuid, ("UUID",)),
    (ipaddress, ("IPv4Address", "IPv6Address", "IPv4Network", "IPv6Network")),
    (pathlib, ("PurePosixPath", "PosixPath", "PureWindowsPath")),
):
    for _name in _names:
        _SAFE[(_module.__name__, _name)] = getattr(_module, _name)
_STORABLE = frozenset(_SAFE.values())


class Schema:
    """A state's models by module:qualname, and its fingerprint."""

    __slots__ = ("fingerprint", "models")

    def __init__(self, shape: Shape) -> None:
        self.models = _models_of(shape)
        text = "\n".join(_signature(m.model) for _, m in sorted(self.models.items()))
        self.fingerprint = hashlib.sha256(text.encode()).hexdigest()[:32]


def _signature(model: type[pydantic.BaseModel]) -> str:
    fields = ";".join(f"{n}:{f.annotation}:{f.metadata}" for n, f in model.model_fields.items())
    return f"{model.__module__}:{model.__qualname__}({fields})"


def _node(model: str, names: tuple[str, ...], values: tuple[Any, ...]) -> Any:
    """A Node in a packed tree (read back by _Unpacker._node, never called)."""
    raise pickle.UnpicklingError("a packed state is read by statekeep.state._pack.unpack")


_NAMES: dict[type[Node], str] = {}


def _name_of(cls: type[Node]) -> str:
    name = _NAMES.get(cls)
    if name is None:
        model = cls._model
        name = _NAMES[cls] = f"{model.__module__}:{model.__qualname__}"
    return name


class _Packer(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, Node):
            return _node, (_name_of(type(obj)), obj._names, tuple(obj))
        kind = type(obj)
        if kind in _STORABLE or isinstance(obj, enum.Enum) or obj is _node:
            return NotImplemented  # pickled as usual
        if (kind is type or kind is enum.EnumType) and (
            obj in _STORABLE or issubclass(obj, enum.Enum)
        ):
            return NotImplemented  # the class of a value above
        raise ValidationError(
            f"a value of type {kind.__module__}.{kind.__qualname__} cannot be kept in a "
            "state's snapshot: use the standard types, enums, models, dicts and lists"
        )


def pack(value: Any, schema: Schema) -> bytes:
    """value (a frozen tree, or a delta's changes) as bytes."""
    out = io.BytesIO()
    try:
        packer = _Packer(out, protocol=5)
        packer.dump(schema.fingerprint)  # two pickles: read back, the first says how
        packer.dump(value)  # to read the second
    except (pickle.PicklingError, TypeError, RecursionError) as exc:
        raise ValidationError(f"the state cannot be packed: {exc}") from exc
    return out.getvalue()


class _Unpacker(pickle.Unpickler):
    def __init__(self, data: bytes, schema: Schema) -> None:
        super().__init__(io.BytesIO(data))
        self.schema = schema
        self.exact: bool | None = None  # known once the fingerprint is read

    def find_class(self, module: str, name: str) -> Any:
        if module == __name__ and name == "_node":
            return self._node
        found = _SAFE.get((module, name))
        if found is not None:
            return found
        value: Any = sys.modules.get(module)  # an enum of the state's (never imported here)
        for part in name.split("."):
            value = getattr(value, part, None)
        if isinstance(value, type) and issubclass(value, enum.Enum):
            return value
        raise pickle.UnpicklingError(f"{module}.{name} is not a type a state is kept in")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("a packed state has no persistent ids")

    def _node(self, model: str, names: tuple[str, ...], values: tuple[Any, ...]) -> Any:
        if self.exact:
            shape = self.schema.models.get(model)
            cls = shape.cls if shape is not None else _imported(model)
            if cls is not None and cls._names == names:
                return make(cls, values)
            self.exact = False
        return dict(zip(names, values, strict=True))  # validated as a stored record


def _imported(name: str) -> type[Node] | None:
    """The Node class of a model named module:qualname that is imported (a
    model inside a value of no declared shape), else None."""
    module, _, qualname = name.partition(":")
    value: Any = sys.modules.get(module)
    for part in qualname.split("."):
        value = getattr(value, part, None)
    if isinstance(value, type) and issubclass(value, pydantic.BaseModel):
        return node_class(value)
    return None


def unpack(data: bytes, schema: Schema) -> tuple[Any, bool]:
    """What pack() made, and whether it is exact (False: the schema changed
    since, and the models in it are plain dicts: validate it)."""
    unpacker = _Unpacker(data, schema)
    try:
        unpacker.exact = unpacker.load() == schema.fingerprint
        value = unpacker.load()
    except (pickle.UnpicklingError, EOFError, TypeError, ValueError, AttributeError) as exc:
        raise ValidationError(f"a stored state cannot be read: {exc}") from exc
    return value, bool(unpacker.exact)


def _models_of(shape: Shape) -> dict[str, ModelShape]:
    found: dict[str, ModelShape] = {}
    seen: set[int] = set()

    def walk(shape: Shape) -> None:
        if id(shape) in seen:
            return
        seen.add(id(shape))
        if isinstance(shape, ModelShape):
            model = shape.model
            found.setdefault(f"{model.__module__}:{model.__qualname__}", shape)
            for _, child in shape.fields.values():
                walk(child)
        elif isinstance(shape, MapShape):
            walk(shape.value)
        elif isinstance(shape, ListShape):
            walk(shape.item)
        elif isinstance(shape, OptionalShape):
            walk(shape.inner)
        else:
            for model in _models_in(shape.annotation):
                walk(compile_shape(model))

    walk(shape)
    return found


def _models_in(annotation: Any) -> list[type[pydantic.BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def loose(value: Any) -> Any:
    """A tree read back inexactly, as plain data for validation."""
    if isinstance(value, Node):
        return {n: loose(v) for n, v in zip(value._names, value, strict=True)}
    if isinstance(value, dict | Map):
        return {k: loose(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [loose(v) for v in value]
    return value
