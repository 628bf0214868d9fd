"""The stored form of a frozen tree: exact, safe to read back, fast.

compress() and persisted snapshots keep a state's value as bytes: msgpack
of the frozen tree itself. A dict stays a map whatever its keys' types (a
tuple or an int key comes back as it was), bytes stay bytes, and each value
msgpack has no type for is an extension holding what rebuilds it exactly:
a model's value (its model and its values), an enum member, a date, time
or datetime (with its zone), a Decimal, a UUID, a set, an IP address, a
path, a URL, a secret... A value of any other type is refused when packed
(ValidationError), so nothing unreadable is ever stored.

Packed values are headed by the fingerprint of the state's schema (every
model's fields and their types, and every enum's members) and a table of
the models in them. Read back by a state of the same schema, the tree is
rebuilt exactly, without validating it again (an alias, a strict model, a
validator, all see nothing new); by a state whose models changed since,
each model's value is read as a dict of its fields and the whole is
validated as a stored record. Reading runs no code of the data's choosing:
only these extensions, each rebuilt by a function here.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import fractions
import hashlib
import ipaddress
import pathlib
import re
import sys
import typing
import uuid
import zoneinfo
from collections.abc import Callable
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pydantic
import pydantic.networks
import pydantic_core

from ..errors import ValidationError
from ._node import _CLASSES, Map, Node, as_instance, freeze_any, make, node_class
from ._shape import (
    DEEPEST,
    ListShape,
    MapShape,
    ModelShape,
    OptionalShape,
    Shape,
    compile_shape,
)

# extension codes
_NODE, _ENUM, _DATETIME, _DATE, _TIME, _DELTA, _DECIMAL, _UUID, _SET = range(1, 10)
_TEXT, _SECRET, _COMPLEX, _PATTERN, _INT, _TZ, _INSTANCE = range(10, 17)

# values rebuilt from their text: (class, its name in the data)
_BY_TEXT: dict[type, str] = {
    ipaddress.IPv4Address: "IPv4Address",
    ipaddress.IPv6Address: "IPv6Address",
    ipaddress.IPv4Network: "IPv4Network",
    ipaddress.IPv6Network: "IPv6Network",
    ipaddress.IPv4Interface: "IPv4Interface",
    ipaddress.IPv6Interface: "IPv6Interface",
    pathlib.PurePosixPath: "PurePosixPath",
    pathlib.PosixPath: "PosixPath",
    pathlib.PureWindowsPath: "PureWindowsPath",
    fractions.Fraction: "Fraction",
    pydantic_core.Url: "Url",
    pydantic_core.MultiHostUrl: "MultiHostUrl",
}
for _attribute in dir(pydantic.networks):  # AnyUrl, HttpUrl, PostgresDsn, ...
    _value = getattr(pydantic.networks, _attribute)
    if isinstance(_value, type) and issubclass(
        _value, pydantic.networks._BaseUrl | pydantic.networks._BaseMultiHostUrl
    ):
        _BY_TEXT[_value] = _attribute
_FROM_TEXT = {name: cls for cls, name in _BY_TEXT.items()}
_SECRETS: dict[type, str] = {pydantic.SecretStr: "SecretStr", pydantic.SecretBytes: "SecretBytes"}
_INTS: dict[type, str] = {pydantic.ByteSize: "ByteSize"}


class Schema:
    """A state's models and enums (in a fixed order), and its fingerprint."""

    __slots__ = ("enum_index", "enums", "fingerprint", "model_index", "models")

    def __init__(self, shape: Shape) -> None:
        models: list[ModelShape] = []
        enums: list[type[enum.Enum]] = []
        _walk(shape, models, enums, set())
        self.models = models
        self.enums = enums
        self.model_index = {m.cls: i for i, m in enumerate(models)}
        self.enum_index = {e: i for i, e in enumerate(enums)}
        text = "\n".join([*(_signature(m.model) for m in models), *map(_members, enums)])
        self.fingerprint = hashlib.sha256(text.encode()).hexdigest()[:32]


def _signature(model: type[pydantic.BaseModel]) -> str:
    fields = ";".join(f"{n}:{f.annotation}:{f.metadata}" for n, f in model.model_fields.items())
    # the same in every process: a validator function's repr holds its address
    return _ADDRESS.sub("", f"{_name(model)}({fields})")


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _members(cls: type[enum.Enum]) -> str:
    return f"{_name(cls)}({[(m.name, m.value) for m in cls]!r})"


def _name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _walk(
    shape: Shape, models: list[ModelShape], enums: list[type[enum.Enum]], seen: set[int]
) -> None:
    if id(shape) in seen:
        return
    seen.add(id(shape))
    if isinstance(shape, ModelShape):
        models.append(shape)
        for _, child in shape.fields.values():
            _walk(child, models, enums, seen)
    elif isinstance(shape, MapShape):
        _walk(shape.key, models, enums, seen)
        _walk(shape.value, models, enums, seen)
    elif isinstance(shape, ListShape):
        _walk(shape.item, models, enums, seen)
    elif isinstance(shape, OptionalShape):
        _walk(shape.inner, models, enums, seen)
    else:
        for kind in _types_in(shape.annotation):
            if issubclass(kind, pydantic.BaseModel):
                _walk(compile_shape(kind), models, enums, seen)
            elif kind not in enums:
                enums.append(typing.cast(type[enum.Enum], kind))


def _types_in(annotation: Any) -> list[type]:
    """The models and enums an annotation names."""
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel | enum.Enum):
        return [annotation]
    return [t for arg in typing.get_args(annotation) for t in _types_in(arg)]


# -- packing ---------------------------------------------------------------------------------------


_TEXT_ERRORS = "surrogatepass"  # a str with a lone surrogate is a str too: kept as it is
_PACK: dict[str, Any] = {"strict_types": True, "use_bin_type": True, "unicode_errors": _TEXT_ERRORS}


class _Packer:
    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.table: list[Any] = []  # [schema index or -1, name, field names] per model met
        self.rows: dict[type[Node], int] = {}
        self.packer = msgpack.Packer(**_PACK, default=self.default)
        self.depth = 0  # of models in models (each a nested pack)

    def pack(self, value: Any) -> bytes:
        return bytes(self.packer.pack(value))

    def default(self, obj: Any) -> Any:
        kind = type(obj)
        if kind is tuple:
            return list(obj)
        if kind is Map:
            return dict(obj.items())
        if isinstance(obj, Node):
            row = self.rows.get(kind)
            if row is None:
                row = self.rows[kind] = len(self.table)
                self.table.append(
                    [self.schema.model_index.get(kind, -1), _name(obj._model), list(obj._names)]
                )
            self.depth += 1
            try:
                if self.depth > DEEPEST:  # unpacking it would overflow the C stack
                    raise _unkept(kind, f"models nested more than {DEEPEST} deep")
                return msgpack.ExtType(_NODE, _pack_with(self, [row, *obj]))
            finally:
                self.depth -= 1
        return _REDUCE.get(kind, _other)(self, obj)


def _pack_with(packer: _Packer, value: Any) -> bytes:
    packed = msgpack.packb(value, **_PACK, default=packer.default)
    return bytes(packed)


def _other(packer: _Packer, obj: Any) -> Any:
    kind = type(obj)
    if isinstance(obj, enum.Enum):
        index = packer.schema.enum_index.get(kind)
        if index is None and _imported(_name(kind)) is not kind:
            raise _unkept(kind, "an enum neither in the state's model nor importable by its name")
        return msgpack.ExtType(
            _ENUM,
            _pack_with(packer, [index if index is not None else _name(kind), obj.value, obj.name]),
        )
    if kind in _BY_TEXT:
        return msgpack.ExtType(_TEXT, _pack_with(packer, [_BY_TEXT[kind], str(obj)]))
    if kind in _SECRETS:
        return msgpack.ExtType(
            _SECRET, _pack_with(packer, [_SECRETS[kind], obj.get_secret_value()])
        )
    if kind in _INTS:
        return msgpack.ExtType(_INT, _pack_with(packer, [_INTS[kind], int(obj)]))
    if kind is int:  # wider than 64 bits: as its digits
        return msgpack.ExtType(_INT, _pack_with(packer, ["int", str(obj)]))
    if isinstance(obj, datetime.tzinfo):
        return msgpack.ExtType(_TZ, _pack_with(packer, _zone(obj)))
    if isinstance(obj, pydantic.BaseModel) or dataclasses.is_dataclass(obj):
        # a key kept as an instance (see _node.freeze_key): its Node, thawed when read
        return msgpack.ExtType(_INSTANCE, _pack_with(packer, freeze_any(obj)))
    raise _unkept(kind, "")


def _unkept(kind: type, why: str) -> ValidationError:
    return ValidationError(
        f"a value of type {kind.__module__}.{kind.__qualname__} cannot be kept in a state's "
        f"snapshot{': ' + why if why else ''}; use the standard types, enums, models, dicts "
        "and lists"
    )


def _zone(tz: datetime.tzinfo | None, when: datetime.datetime | None = None) -> Any:
    """A time zone as data: its key (a ZoneInfo), else its fixed offset (a
    ZoneInfo read from a file: its offset and name at when)."""
    if tz is None:
        return None
    if isinstance(tz, zoneinfo.ZoneInfo) and tz.key is not None:
        return tz.key
    if isinstance(tz, zoneinfo.ZoneInfo):  # from_file(): no name to find it again by
        offset = when.utcoffset() if when is not None else None
        if offset is None:
            raise _unkept(type(tz), "a ZoneInfo read from a file, outside a datetime")
        return [offset.total_seconds(), when.tzname() if when is not None else None]
    offset = tz.utcoffset(None)
    if offset is None:
        raise _unkept(type(tz), "a time zone with no fixed offset")
    if type(tz) is datetime.timezone and str(tz) != str(datetime.timezone(offset)):
        return [offset.total_seconds(), str(tz)]  # a name of its own: timezone(offset, "CET")
    return offset.total_seconds()


def _datetime(packer: _Packer, obj: datetime.datetime) -> Any:
    naive = obj.replace(tzinfo=None)
    return msgpack.ExtType(
        _DATETIME, _pack_with(packer, [naive.isoformat(), _zone(obj.tzinfo, obj), obj.fold])
    )


def _time(packer: _Packer, obj: datetime.time) -> Any:
    naive = obj.replace(tzinfo=None)
    return msgpack.ExtType(
        _TIME, _pack_with(packer, [naive.isoformat(), _zone(obj.tzinfo), obj.fold])
    )


_REDUCE: dict[type, Callable[[_Packer, Any], Any]] = {
    datetime.datetime: _datetime,
    datetime.time: _time,
    datetime.date: lambda p, o: msgpack.ExtType(_DATE, _pack_with(p, o.toordinal())),
    datetime.timedelta: lambda p, o: msgpack.ExtType(
        _DELTA, _pack_with(p, [o.days, o.seconds, o.microseconds])
    ),
    decimal.Decimal: lambda p, o: msgpack.ExtType(_DECIMAL, _pack_with(p, str(o))),
    uuid.UUID: lambda p, o: msgpack.ExtType(_UUID, o.bytes),
    frozenset: lambda p, o: msgpack.ExtType(_SET, _pack_with(p, list(o))),
    complex: lambda p, o: msgpack.ExtType(_COMPLEX, _pack_with(p, [o.real, o.imag])),
    re.Pattern: lambda p, o: msgpack.ExtType(_PATTERN, _pack_with(p, [o.pattern, o.flags])),
}


def pack(value: Any, schema: Schema) -> bytes:
    """value (a frozen tree, or a delta's changes) as bytes."""
    packer = _Packer(schema)
    try:
        body = packer.pack(value)
        return bytes(msgpack.packb([schema.fingerprint, packer.table, body], **_PACK))
    except ValidationError:
        raise
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise ValidationError(f"the state cannot be packed: {exc}") from exc


# -- unpacking -------------------------------------------------------------------------------------


class _Unpacker:
    def __init__(self, schema: Schema, exact: bool, table: list[Any]) -> None:
        self.schema = schema
        self.exact = exact
        self.classes = [self._class(row) for row in table]
        self.names = [tuple(row[2]) for row in table]

    def _class(self, row: Any) -> type[Node] | None:
        index, name, names = row
        cls: type[Node] | None
        if self.exact and type(index) is int and 0 <= index < len(self.schema.models):
            cls = self.schema.models[index].cls
        elif self.exact and type(name) is str:
            cls = _model_named(name, tuple(names))
        else:
            cls = None
        if cls is not None and cls._names != tuple(names):
            cls = None
        if cls is None:
            self.exact = False  # read as a dict of its fields, then validated
        return cls

    def unpack(self, data: bytes) -> Any:
        return msgpack.unpackb(
            data,
            ext_hook=self.ext,
            object_hook=Map,
            use_list=False,
            raw=False,
            strict_map_key=False,
            unicode_errors=_TEXT_ERRORS,
        )

    def ext(self, code: int, data: bytes) -> Any:
        if code == _UUID:
            return uuid.UUID(bytes=data)
        value = self.unpack(data)
        if code == _NODE:
            row, *values = value
            cls = self.classes[row]
            if cls is None:
                return dict(zip(self.names[row], values, strict=True))
            if len(values) != len(cls._names):
                raise ValueError(f"a {cls.__name__} of {len(values)} values")
            return make(cls, values)
        return _BUILD[code](self, value)

    def enum(self, value: Any) -> Any:
        which, member, name = value
        if not self.exact:
            return member  # validated into the enum (or what replaced it)
        cls = self.schema.enums[which] if type(which) is int else _imported(which)
        if not (isinstance(cls, type) and issubclass(cls, enum.Enum)):
            raise ValueError(f"no enum {which!r}")
        if issubclass(cls, enum.Flag):  # a combination (READ|WRITE, or none) has no name
            return cls(member)
        return cls[name]  # by name: a value that is a list comes back a tuple


def _imported(name: str) -> Any:
    """The class named module:qualname if its module is imported (never imports)."""
    module, _, qualname = name.partition(":")
    value: Any = sys.modules.get(module)
    for part in qualname.split("."):
        value = getattr(value, part, None)
    return value


def _model_named(name: str, names: tuple[str, ...]) -> type[Node] | None:
    """The Node class of a model (in a field of no declared type) by its
    name: imported, or else made in this process (a model of a function's)."""
    found = _imported(name)
    if isinstance(found, type) and (
        issubclass(found, pydantic.BaseModel) or dataclasses.is_dataclass(found)
    ):
        return node_class(found)
    made = [cls for model, cls in _CLASSES.items() if _name(model) == name and cls._names == names]
    return made[0] if len(made) == 1 else None


def _zone_of(data: Any) -> datetime.tzinfo | None:
    if data is None:
        return None
    if type(data) is str:
        return zoneinfo.ZoneInfo(data)
    if type(data) in (list, tuple):  # an offset with a name of its own
        offset = datetime.timedelta(seconds=data[0])
        return datetime.timezone(offset, data[1]) if data[1] else datetime.timezone(offset)
    return datetime.timezone(datetime.timedelta(seconds=data))


def _text(value: Any) -> Any:
    name, text = value
    return _FROM_TEXT[name](text)


_BUILD: dict[int, Callable[[_Unpacker, Any], Any]] = {
    _ENUM: _Unpacker.enum,
    _DATETIME: lambda u, v: datetime.datetime.fromisoformat(v[0]).replace(
        tzinfo=_zone_of(v[1]), fold=v[2]
    ),
    _TIME: lambda u, v: datetime.time.fromisoformat(v[0]).replace(tzinfo=_zone_of(v[1]), fold=v[2]),
    _DATE: lambda u, v: datetime.date.fromordinal(v),
    _DELTA: lambda u, v: datetime.timedelta(days=v[0], seconds=v[1], microseconds=v[2]),
    _DECIMAL: lambda u, v: decimal.Decimal(v),
    _SET: lambda u, v: frozenset(v),
    _COMPLEX: lambda u, v: complex(v[0], v[1]),
    _PATTERN: lambda u, v: re.compile(v[0], v[1]),
    _TEXT: lambda u, v: _text(v),
    _SECRET: lambda u, v: {"SecretStr": pydantic.SecretStr, "SecretBytes": pydantic.SecretBytes}[
        v[0]
    ](v[1]),
    _INT: lambda u, v: {"ByteSize": pydantic.ByteSize, "int": int}[v[0]](v[1]),
    _TZ: lambda u, v: _zone_of(v),
    _INSTANCE: lambda u, v: as_instance(v) if isinstance(v, Node) else v,
}


def unpack(data: bytes, schema: Schema) -> tuple[Any, bool]:
    """What pack() made, and whether it is exact (False: the schema changed
    since, and each model's value in it is a dict of its fields: validate it)."""
    try:
        fingerprint, table, body = msgpack.unpackb(data, raw=False, unicode_errors=_TEXT_ERRORS)
        unpacker = _Unpacker(schema, fingerprint == schema.fingerprint, table)
        return unpacker.unpack(body), unpacker.exact
    except Exception as exc:  # noqa: BLE001 - whatever the bytes hold: the state cannot be read
        raise ValidationError(
            f"a stored state cannot be read: {type(exc).__name__}: {exc}"
        ) from None


def loose(value: Any) -> Any:
    """A tree read back inexactly, as plain data for validation."""
    if isinstance(value, Node):
        if value._rooted:
            return loose(value[0])
        return {n: loose(v) for n, v in zip(value._names, value, strict=True)}
    if isinstance(value, dict | Map):
        return {k: loose(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [loose(v) for v in value]
    return value
