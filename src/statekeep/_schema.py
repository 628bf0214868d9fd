"""What the store needs to know about an entity class, worked out once.

EntityInfo turns an entity into a backend row, a body back into an entity,
and conditions and orderings into the backend's Filters and Orders (checking
every value against the field's type on the way).

statekeep.entity imports this module to build each class's EntityInfo, so
this module does not name Entity, not even for type checkers: an entity class
is a pydantic model here, and an entity is a `Stored` (an id and a version).
"""

from __future__ import annotations

import decimal
import enum
import functools
import math
import re
import types
import typing
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from datetime import time as clock_time
from typing import Any, Protocol

import pydantic
import pydantic_core
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from ._bodies import (
    has_non_finite,
    holds_non_finite,
    may_hide_non_finite,
    may_write_non_finite,
    wraps_serializer,
)
from ._strict import StrictWarnings
from .backends.base import (
    CollectionSpec,
    Field,
    Filter,
    Index,
    IndexKind,
    Op,
    Order,
    Row,
    Scalar,
    time_key_of,
)
from .conditions import Condition, FieldRef, Ordering
from .errors import ConfigurationError, QueryError, UnknownFieldError, ValidationError

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
# column names an indexed field cannot take: the body, the row stamp (see
# backends/_layout), SQLite's names of the rowid (its fill trigger finds a row
# by rowid) and PostgreSQL's system columns
_RESERVED = {"body", "statekeep_layout", "rowid", "oid", "_rowid_"}
_RESERVED |= {"ctid", "xmin", "xmax", "cmin", "cmax", "tableoid"}
_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")  # an escaped NUL, not an escaped backslash
_INT64 = range(-(2**63), 2**63)
_PLAIN = (str, int, float, bool)
# to_json(..., warnings=True) where it raises pydantic-core's warnings, as
# warnings="error" does at 3 us more a call (see _strict)
_STRICT = StrictWarnings(globals())


_MODEL_VALIDATE_JSON = pydantic.BaseModel.__dict__["model_validate_json"].__func__


@dataclass(frozen=True, slots=True)
class Indexed:
    """Marks a field as indexed: `title: Annotated[str, Indexed()]`.

    An indexed field is a real column with an index in SQL backends, so
    conditions and orderings on it are index lookups, and SQL tools see it.
    """


def as_validation_error(exc: pydantic.ValidationError, what: str = "") -> ValidationError:
    prefix = f"{what}: " if what else ""
    return ValidationError(f"{prefix}{exc}", exc.errors(include_url=False))


def check_storable(value: int | str, what: str) -> None:
    """Refuse what no backend can hold as a column value or parameter:
    integers beyond 64 bits, NUL characters (SQLite cuts text there, PostgreSQL
    refuses it) and text that is not valid Unicode (lone surrogates)."""
    if isinstance(value, str):
        if "\x00" in value:
            raise QueryError(f"{what}: text with a NUL character: {value!r}")
        if value.isascii():
            return
        try:
            value.encode()
        except UnicodeEncodeError as exc:
            raise QueryError(f"{what}: text with unpaired surrogates: {value!r}") from exc
    elif not -(2**63) <= value < 2**63 and not isinstance(value, bool):
        raise QueryError(f"{what}: {value} does not fit in 64 bits")


def base_type(annotation: Any) -> Any:
    """int | None -> int; anything else unchanged."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _indexed_type(annotation: Any) -> bool:
    """A type whose fields are always indexed: it says so with a class
    attribute `__statekeep_indexed__ = True` (a state machine's states)."""
    return getattr(base_type(annotation), "__statekeep_indexed__", False) is True


def _is_time(annotation: Any) -> bool:
    return _json_types(annotation) == {datetime}


def _json_types(annotation: Any) -> set[type] | None:
    """The JSON scalar types a field's values take (datetime for datetimes),
    or None when it holds something else (lists, dicts, models, Any)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        found: set[type] = set()
        for member in typing.get_args(annotation):
            if member is type(None):
                continue
            kinds = _json_types(member)
            if kinds is None:
                return None
            found |= kinds
        return found
    if origin is typing.Literal:
        return {_plain_type(value) for value in typing.get_args(annotation)}
    if not isinstance(annotation, type):
        return None
    if issubclass(annotation, enum.Enum):
        return {_plain_type(member.value) for member in annotation}
    if issubclass(annotation, datetime):
        return {datetime}
    if issubclass(annotation, (bool, int, float, str)):
        return {_plain_type(annotation())}
    if issubclass(annotation, (date, clock_time, uuid.UUID, decimal.Decimal)):
        return {str}  # JSON text
    return None


def _plain_type(value: Any) -> type:
    return int if isinstance(value, bool) else type(value)


def _index_kind(owner: str, name: str, annotation: Any) -> IndexKind:
    kinds = _json_types(annotation)
    if not kinds:
        raise ConfigurationError(
            f"{owner}.{name} cannot be indexed: an index holds single values "
            "(text, numbers, booleans, dates, enums), not lists, dicts or models"
        )
    if kinds == {datetime}:
        return "time"
    if kinds == {int}:
        return "integer"
    if kinds <= {int, float}:
        return "real"
    if kinds == {str}:
        return "text"
    return "any"  # mixed kinds: stored as they come, ordered as SQLite orders types


def _default(owner: str, name: str, info: FieldInfo, time: bool, indexed: bool) -> Scalar:
    """The field's default as a comparable scalar (None when it has none).

    Refused for an indexed field: a NaN or an infinity (no column or JSON
    holds one alike: the table's triggers could not be made); for any field, a
    time beyond the years UTC holds (it has no time key)."""
    if info.default is PydanticUndefined or info.default_factory is not None:
        return None
    if time and isinstance(info.default, datetime):
        try:
            return time_key_of(info.default)
        except OverflowError as exc:
            raise ConfigurationError(
                f"{owner}.{name}: the default {info.default!r} is out of range in UTC ({exc})"
            ) from exc
    plain = pydantic_core.to_jsonable_python(info.default)
    if isinstance(plain, float) and not math.isfinite(plain):
        if indexed:
            raise ConfigurationError(
                f"{owner}.{name} cannot be indexed with the default {plain!r}: "
                "NaN and infinities cannot be stored"
            )
        return None
    return plain if isinstance(plain, _PLAIN) else None


class Stored(Protocol):
    """What EntityInfo reads of an entity (a statekeep.Entity), besides its
    fields in `__dict__`."""

    id: str
    version: int


def collection_name_problem(collection: str) -> str | None:
    """Why a collection may not have this name (None: it may)."""
    if not _NAME.fullmatch(collection) or collection.lower().startswith(("sqlite_", "statekeep_")):
        return (
            "a collection name must be 1-63 letters, digits or underscores, start with a "
            "letter or underscore, and not start with 'sqlite_' or 'statekeep_' (the "
            "store's own tables)"
        )
    return None


def column_name_problem(name: str) -> str | None:
    """Why an indexed field may not have this name as its column (None: it may)."""
    if not _NAME.fullmatch(name):
        return "an indexed column name is 1-63 letters, digits or underscores"
    if name.lower() in _RESERVED | {"id", "version"}:
        return f"{name!r} is a column name a backend uses for itself"
    return None


class EntityInfo:
    cls: type[Any]  # the entity class (a statekeep.Entity subclass)

    def __init__(self, cls: type[pydantic.BaseModel], collection: str) -> None:
        if collection_name_problem(collection):
            raise ConfigurationError(
                f"collection name {collection!r} of {cls.__name__} must be 1-63 letters, "
                "digits or underscores, start with a letter or underscore, "
                "and not start with 'sqlite_' or 'statekeep_' (the store's own tables)"
            )
        self.cls = cls
        fields = cls.model_fields
        indexed = [
            name
            for name, info in fields.items()
            if name not in ("id", "version")
            and (
                any(isinstance(m, Indexed) for m in info.metadata) or _indexed_type(info.annotation)
            )
        ]
        for name in indexed:
            if name.lower() in _RESERVED:
                raise ConfigurationError(
                    f"{cls.__name__}.{name} cannot be indexed: {name!r} is a column name "
                    f"a backend uses ({', '.join(sorted(_RESERVED))}); rename the field"
                )
        seen = {"id": "id", "version": "version"}
        for name in indexed:  # columns: SQLite folds case in names, PostgreSQL does not
            other = seen.setdefault(name.lower(), name)
            if other != name:
                raise ConfigurationError(
                    f"{cls.__name__}.{name} cannot be indexed beside {other!r}: column names "
                    "that differ only in case are one name on SQLite; rename one of them"
                )
        columns = {"id", "version", *indexed}
        self.fields = {
            name: Field(
                name,
                name in columns,
                _is_time(info.annotation),
                _default(cls.__name__, name, info, _is_time(info.annotation), name in indexed),
            )
            for name, info in fields.items()
        }
        self.spec = CollectionSpec(
            collection,
            tuple(
                Index(
                    name,
                    _index_kind(cls.__name__, name, fields[name].annotation),
                    self.fields[name].default,
                )
                for name in indexed
            ),
        )
        self._adapters: dict[str, pydantic.TypeAdapter[Any]] = {}
        self._to_json: Callable[..., bytes] | None = None  # once the model is complete
        # the fields whose values may hide a NaN as null (see may_hide_non_finite),
        # worked out with _to_json
        self._hides_non_finite: tuple[str, ...] = ()
        self._writes_non_finite = True  # (see may_write_non_finite), also with _to_json
        # pass warnings="error" always (see wraps_serializer), also with _to_json
        self._always_strict = True
        self._by_name = any(  # bodies use field names, whatever the aliases
            info.alias is not None or info.validation_alias is not None for info in fields.values()
        )
        self._indexed = tuple(
            (name, self._column_value(name, fields[name].annotation)) for name in indexed
        )
        self._load_options: dict[str, Any] = {}
        if cls.model_config.get("extra") == "forbid":  # None: pydantic ignores them anyway
            self._load_options["extra"] = "ignore"
        if self._by_name:
            self._load_options["by_name"] = True
        self._validate: Callable[[str], Any] | None = None

    def _column_value(self, name: str, annotation: Any) -> Callable[[Any], Any] | None:
        """How to turn the field's value into its column value (None: as it is)."""
        base = base_type(annotation)
        if base in _PLAIN:
            return None
        if (
            isinstance(base, type)
            and issubclass(base, enum.Enum)
            and all(type(member.value) in (str, int) for member in base)
        ):
            return lambda value: None if value is None else value._value_
        if _is_time(base):
            return lambda value: None if value is None else time_key_of(value)
        return lambda value: self.adapter(name).dump_python(value, mode="json")

    def adapter(self, name: str) -> pydantic.TypeAdapter[Any]:
        adapter = self._adapters.get(name)
        if adapter is None:
            adapter = pydantic.TypeAdapter[Any](self.cls.model_fields[name].annotation or Any)
            self._adapters[name] = adapter
        return adapter

    # -- rows ----------------------------------------------------------------
    def row(self, entity: Stored) -> Row:
        """The row for the entity as it is now (its version already set).

        The common case (a body of fields, no indexed column, nothing to
        doubt) has _row's checks inlined: a save's hot path. Any doubt goes
        to _checked_row, which decides (and raises the error, if any)."""
        to_json = self._to_json
        if self._indexed or to_json is None:
            return self._checked_row(entity)
        token = None if self._always_strict else _STRICT.arm()
        try:
            body = to_json(entity, warnings="error" if token is None else True).decode()
        except (pydantic_core.PydanticSerializationError, UserWarning):
            return self._checked_row(entity)
        if (
            "\\u0000" in body
            or (self._writes_non_finite and ("NaN" in body or "Infinity" in body))
            or (self._hides_non_finite and "null" in body)
            or (token is not None and not _STRICT.intact(token))
        ):
            return self._checked_row(entity)
        fields = entity.__dict__
        return (fields["id"], fields["version"], body)

    def next_row(self, entity: Stored) -> Row:
        """The row of the entity at its next version, its version left as it
        is (enqueue's)."""
        fields = entity.__dict__
        version = fields["version"]
        fields["version"] = version + 1
        try:
            return self.row(entity)
        finally:
            fields["version"] = version

    def _checked_row(self, entity: Stored) -> Row:
        to_json = self._serializer()
        token = None if self._always_strict else _STRICT.arm()
        if token is None:
            return self._row(entity, to_json)
        row = self._row(entity, to_json, True)
        if _STRICT.intact(token):
            return row
        return self._row(entity, to_json)  # a warning went by (filters changed meanwhile)

    def advance(self, entities: Sequence[Stored], olds: list[int]) -> list[Row]:
        """Moves each entity's version forward (noting the old one in olds, in
        order, as it goes) and returns their rows: save_many's inner loop."""
        to_json = self._serializer()
        token = None if self._always_strict else _STRICT.arm()
        strict: bool | str = "error" if token is None else True
        rows = []
        if self._indexed:
            make = self._row
            for entity in entities:
                fields = entity.__dict__
                olds.append(fields["version"])
                fields["version"] += 1
                rows.append(make(entity, to_json, strict))
        else:  # the same, with _row inlined: this loop is the hot path
            finite_check = self._writes_non_finite
            try:
                for entity in entities:
                    fields = entity.__dict__
                    old = fields["version"]
                    olds.append(old)
                    fields["version"] = old + 1
                    body = to_json(entity, warnings=strict).decode()
                    if (
                        "\\u0000" in body
                        or (finite_check and ("NaN" in body or "Infinity" in body))
                        or (self._hides_non_finite and "null" in body and self._hidden(entity))
                    ):
                        self._row(entity, to_json)  # raises the error, if there is one
                    rows.append((fields["id"], old + 1, body))
            except (pydantic_core.PydanticSerializationError, UserWarning):
                self._row(entity, to_json)  # raises the error with its message
                raise
        if token is not None and not _STRICT.intact(token):
            # a warning went by unraised (filters changed meanwhile): pydantic decides
            return [self._row(entity, to_json) for entity in entities]
        return rows

    def _hidden(self, entity: Stored) -> bool:
        """Does a field whose serializer writes NaN as null hold a NaN or an infinity?"""
        fields = entity.__dict__
        return any(holds_non_finite(fields[name]) for name in self._hides_non_finite)

    def _serializer(self) -> Callable[..., bytes]:
        to_json = self._to_json
        if to_json is None:  # the body holds fields by name, and no computed fields
            to_json = self.cls.__pydantic_serializer__.to_json
            if self.cls.model_computed_fields:
                to_json = functools.partial(to_json, exclude_computed_fields=True)
            self._hides_non_finite = tuple(
                name
                for name, info in self.cls.model_fields.items()
                if may_hide_non_finite(
                    pydantic.TypeAdapter[Any](info.annotation or Any).core_schema
                )
            )
            schema = self.cls.__pydantic_core_schema__
            self._writes_non_finite = self.cls.model_config.get(
                "extra"
            ) == "allow" or may_write_non_finite(schema, self.cls)
            self._always_strict = wraps_serializer(schema)
            self._to_json = to_json
        return to_json

    def _row(
        self, entity: Stored, to_json: Callable[..., bytes], strict: bool | str = "error"
    ) -> Row:
        """The row; strict=True once _STRICT.arm() gave a token (intact() checked after)."""
        try:
            try:
                body = to_json(entity, warnings=strict).decode()
            except UserWarning:  # ours raised by our filter: pydantic-core's own error, as before
                if strict == "error":
                    raise
                body = to_json(entity, warnings="error").decode()
        except pydantic_core.PydanticSerializationError as exc:
            raise ValidationError(
                f"{type(entity).__name__} {entity.id!r} cannot be stored: {exc}"
            ) from exc
        if "\\u0000" in body and _NUL.search(body):
            raise ValidationError(
                f"{type(entity).__name__} {entity.id!r} cannot be stored: "
                "its text holds a NUL character (\\x00), which databases cut or refuse"
            )
        if (
            ("NaN" in body or "Infinity" in body)
            # a bare token, or (in a model that can hold one) a Decimal's text
            and (has_non_finite(body) or (self._writes_non_finite and holds_non_finite(entity)))
        ) or (self._hides_non_finite and "null" in body and self._hidden(entity)):
            raise ValidationError(
                f"{type(entity).__name__} {entity.id!r} cannot be stored: it holds an "
                "infinite or NaN number, which JSON cannot hold and no two databases compare alike"
            )
        fields = entity.__dict__
        if not self._indexed:
            return (fields["id"], fields["version"], body)
        try:
            values = [
                fields[name] if convert is None else convert(fields[name])
                for name, convert in self._indexed
            ]
        except OverflowError as exc:  # a time whose UTC is beyond year 9999 or before year 1
            raise ValidationError(
                f"{type(entity).__name__} {entity.id!r} cannot be stored: an indexed time is "
                f"out of range in UTC ({exc}); keep times within years 1 to 9999 in UTC"
            ) from exc
        for (name, _), value in zip(self._indexed, values, strict=True):
            if type(value) is int and value not in _INT64:
                raise ValidationError(
                    f"{type(entity).__name__} {entity.id!r} cannot be stored: its indexed field "
                    f"{name!r} holds {value}, beyond the 64 bits an index column holds"
                )
        return (fields["id"], fields["version"], body, *values)

    def load(self, body: str) -> Any:
        try:
            # keys of fields the model no longer has are ignored (unless the
            # model keeps extra keys): rows written before a field was removed
            # or renamed stay readable
            return (self._validate or self._validator())(body)
        except pydantic.ValidationError as exc:
            raise as_validation_error(
                exc, f"stored {self.spec.name} does not fit {self.cls.__name__}"
            ) from exc

    def _validator(self) -> Callable[[str], Any]:
        """model_validate_json with load's options, as pydantic-core's own
        call once the model is complete (a get's hot path: pydantic's wrapper
        costs a call and a check of its arguments)."""
        cls = self.cls
        if not cls.__pydantic_complete__:  # model_validate_json rebuilds it first
            return functools.partial(cls.model_validate_json, **self._load_options)
        # a class of its own model_validate_json: honoured
        if getattr(cls.model_validate_json, "__func__", None) is not _MODEL_VALIDATE_JSON:
            self._validate = functools.partial(cls.model_validate_json, **self._load_options)
            return self._validate
        validate = cls.__pydantic_validator__.validate_json
        self._validate = (
            functools.partial(validate, **self._load_options) if self._load_options else validate
        )
        return self._validate

    # -- queries -------------------------------------------------------------
    def _field(self, name: str) -> str:
        if name not in self.cls.model_fields:
            raise UnknownFieldError(self.cls.__name__, name, list(self.cls.model_fields))
        return name

    def filters(
        self, conditions: Sequence[Condition], equals: dict[str, Any]
    ) -> tuple[Filter, ...]:
        result = []
        for condition in conditions:
            if not isinstance(condition, Condition):
                raise QueryError(
                    f"find() takes conditions such as {self.cls.__name__}.f.<field> == value,"
                    f" not {condition!r}"
                )
            if not issubclass(self.cls, condition.owner):
                raise QueryError(
                    f"a condition on {condition.owner.__name__}.{condition.field} "
                    f"cannot filter {self.cls.__name__}"
                )
            result.append(self._filter(condition.field, condition.op, condition.value))
        result.extend(self._filter(name, Op.EQ, value) for name, value in equals.items())
        return tuple(result)

    def _filter(self, name: str, op: Op, value: Any) -> Filter:
        name = self._field(name)
        if op in (Op.IN, Op.NOT_IN):
            value = tuple(self._scalar(name, v, nullable=True) for v in value)
        elif op is Op.PREFIX:
            if not isinstance(value, str):
                raise QueryError(f"startswith() takes a string, not {value!r}")
            check_storable(value, f"{self.cls.__name__}.{name}")
        else:
            value = self._scalar(name, value, nullable=op in (Op.EQ, Op.NE))
        return Filter(self.fields[name], op, value)

    def _scalar(self, name: str, value: Any, *, nullable: bool) -> Any:
        if value is None:
            if nullable:
                return None
            raise QueryError(f"{self.cls.__name__}.{name}: only == and != compare with None")
        adapter = self.adapter(name)
        try:
            valid = adapter.validate_python(value)
            if self.fields[name].time and isinstance(valid, datetime):
                plain = time_key_of(valid)
            else:
                plain = adapter.dump_python(valid, mode="json")
        except pydantic.ValidationError as exc:
            raise as_validation_error(
                exc, f"{value!r} is not a valid value for {self.cls.__name__}.{name}"
            ) from exc
        except OverflowError as exc:  # a time whose UTC is beyond year 9999 or before year 1
            raise QueryError(
                f"{self.cls.__name__}.{name}: {value!r} is out of range in UTC ({exc})"
            ) from exc
        if isinstance(plain, (int, str)):
            check_storable(plain, f"{self.cls.__name__}.{name}")
        elif plain is not None and not isinstance(plain, _PLAIN):
            raise QueryError(
                f"{self.cls.__name__}.{name} holds {type(plain).__name__} values; "
                "conditions compare single values (text, numbers, booleans, dates)"
            )
        return plain

    def orders(self, order_by: Any) -> tuple[Order, ...]:
        if order_by is None:
            return ()
        if isinstance(order_by, (str, FieldRef, Ordering)):
            items: Iterable[Any] = [order_by]
        elif isinstance(order_by, (list, tuple)):
            items = order_by
        else:
            raise QueryError(
                f"order_by takes a field name, {self.cls.__name__}.f.<field>[.desc()] "
                f"or a list of them, not {order_by!r}"
            )
        result = []
        for item in items:
            if isinstance(item, FieldRef):
                item = item.asc()
            if isinstance(item, Ordering):
                name, descending = item.field, item.descending
            elif isinstance(item, str):
                name, descending = item.removeprefix("-"), item.startswith("-")
            else:
                raise QueryError(
                    f"order_by takes field names ('title', '-title') or "
                    f"{self.cls.__name__}.f.<field>[.desc()], not {item!r}"
                )
            name = self._field(name)
            if _json_types(self.cls.model_fields[name].annotation) is None:
                raise QueryError(
                    f"cannot order by {self.cls.__name__}.{name}: ordering takes a field of "
                    "single values (text, numbers, booleans, dates, enums)"
                )
            result.append(Order(self.fields[name], descending))
        return tuple(result)
