"""The shape of a state: its pydantic model compiled into a tree of Shapes.

Each Shape knows how to check and freeze a value of its place in the tree
(`freeze`: validate, then freeze; `adopt`: freeze a value already valid) and,
for containers, how a path segment names a child (`child`). A change at a
path is validated against the Shape at that path only, not the whole tree.

Validation at a path uses the field's type and its constraints
(`Field(gt=0)`, `max_length`, ...): pydantic's own validator for that type,
built once. A model's validators (`field_validator`, `model_validator`) run
when a whole value of that model is set.
"""

from __future__ import annotations

import collections.abc as abc
import contextlib
import dataclasses
import datetime
import decimal
import enum
import threading
import types
import typing
import uuid
from typing import Any

import immutables
import pydantic

from ..errors import StatePathError, ValidationError
from ._node import Map, Node, extra_refused, freeze_any, freeze_key, make, node_class, plain

# immutable values that are stored as they are: no copy, no freezing
_SCALARS: tuple[type, ...] = (str, int, float, bool, bytes, type(None), decimal.Decimal)
_SCALARS += (uuid.UUID, datetime.datetime, datetime.date, datetime.time, datetime.timedelta)
_FAST = frozenset({str, int, float, bool, bytes})  # checked by exact type, then stored
# a model's config that changes how its fields' values are validated (strict, NaN, text...):
# part of each field's type, so of the Shapes compiled for its fields
_VALIDATION_CONFIG = frozenset(
    {
        "strict",
        "allow_inf_nan",
        "str_strip_whitespace",
        "str_to_lower",
        "str_to_upper",
        "str_min_length",
        "str_max_length",
        "coerce_numbers_to_str",
        "use_enum_values",
        "arbitrary_types_allowed",
        "regex_engine",
        "val_json_bytes",
    }
)
DEEPEST = 100  # models in models: a value nested deeper is not kept (measured: 250 crashed)
Config = tuple[tuple[str, Any], ...] | None  # of _VALIDATION_CONFIG's keys, sorted (hashable)


def frozen_kind(value: Any) -> bool:
    return isinstance(value, Node | Map | tuple | frozenset)


class Shape:
    """A leaf: any value of one type, checked by pydantic, stored frozen."""

    __slots__ = ("_adapter", "annotation", "checked", "config", "fast", "scalar")
    container = False

    def __init__(self, annotation: Any, config: Config = None) -> None:
        self.annotation = annotation
        self._adapter: pydantic.TypeAdapter[Any] | None = None
        if _has_own_config(annotation):  # a model or a dataclass: its own config rules
            config = None
        self.config = config
        # an exact str, int... is stored as it is, unless the config checks more than the type
        plain_type = config is None or all(key == "strict" for key, _ in config)
        self.fast = annotation if annotation in _FAST and plain_type else None
        self.scalar = _is_scalar(annotation)
        # a constrained dict or list (Annotated[list[int], Field(max_length=3)]): changed
        # at a part like any other, then checked whole
        self.checked = False

    @property
    def adapter(self) -> pydantic.TypeAdapter[Any]:
        if self._adapter is None:
            config = None if self.config is None else pydantic.ConfigDict(**dict(self.config))  # type: ignore[typeddict-item]
            self._adapter = pydantic.TypeAdapter(self.annotation, config=config)
        return self._adapter

    def freeze(self, value: Any, where: str) -> Any:
        if type(value) is self.fast:
            return value
        if self.annotation is Any:  # no declared shape: frozen as it is (a Node stays one)
            try:
                return freeze_any(value)
            except RecursionError:
                raise _too_deep(where) from None
        if frozen_kind(value):  # a part of a snapshot: read back as stored data is
            return self.restore(plain(value), where)
        try:
            return self.adopt(self.adapter.validate_python(value))
        except pydantic.ValidationError as exc:
            raise ValidationError(
                f"{where or 'the state'}: {first_error(exc)}", exc.errors()
            ) from None
        except RecursionError:  # a list in a list in ... in an Any field
            raise _too_deep(where) from None

    def adopt(self, valid: Any) -> Any:
        return valid if self.scalar else freeze_any(valid)

    def check(self, value: Any, where: str) -> None:
        """Raises ValidationError unless value (frozen) is valid here whole."""
        try:
            self.adapter.validate_python(plain(value), strict=False, by_name=True)
        except pydantic.ValidationError as exc:
            raise ValidationError(
                f"{where or 'the state'}: {first_error(exc)}", exc.errors()
            ) from None

    def verify(self, value: Any, where: str) -> None:
        """Raises ValidationError unless value (frozen, read back exactly from
        stored bytes) is what freezing a valid value here gives: its types
        are checked, not trusted (a row may have been edited by hand)."""
        if type(value) is self.fast or self.annotation is Any:
            return
        with contextlib.suppress(pydantic.ValidationError):
            if not self.scalar:  # a fixed tuple, a model in a union...: valid as stored data
                self._validate_stored(plain(value))
                return
            with contextlib.suppress(pydantic.ValidationError):
                self.adapter.validate_python(value, strict=True)  # of the type itself
                return
            if self.adapter.validate_python(value) == value:  # or equal to what it gives
                return
        raise _not_a(self.annotation, value, where)

    def restore(self, value: Any, where: str) -> Any:
        """A stored value read back as plain data (its model changed since
        it was stored), validated as a stored record is: not strictly (it
        was valid), its fields by name or alias; then frozen."""
        try:
            valid = self._validate_stored(value)
        except pydantic.ValidationError as exc:
            raise ValidationError(
                f"{where or 'the state'}: {first_error(exc)}", exc.errors()
            ) from None
        return self.adopt(valid)

    def _validate_stored(self, value: Any) -> Any:
        return self.adapter.validate_python(value, strict=False, by_name=True)

    def child(self, segment: Any, where: str) -> tuple[Any, Shape]:
        if self.annotation is Any:  # inside a value of no declared shape: a key as given
            return segment, self
        raise StatePathError(f"{where} is a {_name(self.annotation)}: it has no parts", where)


class ModelShape(Shape):
    __slots__ = ("_fields", "_recursive", "cls", "field_config", "model")
    container = True

    def __init__(self, model: type[pydantic.BaseModel]) -> None:
        super().__init__(model)
        self.model = model
        self.cls = node_class(model)
        self._recursive: bool | None = None  # whether it holds itself (found on first use)
        own = model.model_config  # its fields are validated with it
        self.field_config: Config = (
            tuple(sorted((k, v) for k, v in own.items() if k in _VALIDATION_CONFIG)) or None
        )
        self._fields: dict[str, tuple[int, Shape]] | None = None  # compiled on first use

    @property
    def fields(self) -> dict[str, tuple[int, Shape]]:
        fields = self._fields
        if fields is None:
            with _COMPILING:  # published whole: another thread never sees it half made
                fields = self._fields
                if fields is None:
                    fields = {}
                    for i, (name, info) in enumerate(self.model.model_fields.items()):
                        annotation: Any = info.annotation
                        if info.metadata:  # constraints
                            annotation = typing.Annotated[annotation, *info.metadata]
                        fields[name] = (i, compile_shape(annotation, self.field_config))
                    self._fields = fields
        return fields

    def freeze(self, value: Any, where: str) -> Any:
        if type(value) is self.cls:
            return value
        if type(value) is not self.model:
            if isinstance(value, Node) and value._model is not self.model:
                raise ValidationError(
                    f"{where or 'the state'}: a snapshot of {value._model.__name__},"
                    f" not of {self.model.__name__}"
                )
            if frozen_kind(value):  # a part of a snapshot: read back as stored data is
                return self.restore(plain(value), where)
            try:
                value = self.model.model_validate(value)
            except pydantic.ValidationError as exc:
                raise ValidationError(
                    f"{where or 'the state'}: {first_error(exc)}", exc.errors()
                ) from None
        try:
            frozen = self.adopt(value)
        except RecursionError:
            raise _too_deep(where) from None
        if self.recursive and _model_depth(frozen) > DEEPEST:  # it could never be stored
            raise ValidationError(
                f"{where or 'the state'}: models nested more than {DEEPEST} deep cannot be kept"
            )
        return frozen

    @property
    def recursive(self) -> bool:
        """Whether a value of this model can hold one of itself (an outline)."""
        if self._recursive is None:
            self._recursive = _holds(self, self, set())
        return self._recursive

    def adopt(self, valid: Any) -> Any:
        if type(valid) is self.cls:
            return valid
        if not isinstance(valid, self.model):  # a default pydantic did not validate
            if valid is None:
                raise _none_in(self.model)
            try:
                valid = self.model.model_validate(valid)
            except pydantic.ValidationError as exc:
                raise ValidationError(
                    f"{self.model.__name__}: {first_error(exc)} (a default is not validated)",
                    exc.errors(),
                ) from None
        if getattr(valid, "__pydantic_extra__", None):  # extra="allow", and given some
            raise extra_refused(valid)
        fields = self.fields
        try:
            return make(
                self.cls, tuple(shape.adopt(getattr(valid, n)) for n, (_, shape) in fields.items())
            )
        except _NoneDefaultError as exc:  # say which field
            name = next(
                n
                for n, (_, shape) in fields.items()
                if getattr(valid, n) is None
                and isinstance(shape, MapShape | ListShape | ModelShape)
            )
            raise ValidationError(f"{self.model.__name__}.{name}: {exc}") from None

    def _validate_stored(self, value: Any) -> Any:
        return self.model.model_validate(value, strict=False, by_name=True)

    def verify(self, value: Any, where: str) -> None:
        if type(value) is not self.cls:
            raise _not_a(self.model, value, where)
        infos = self.model.model_fields
        for (name, (_, shape)), item in zip(self.fields.items(), value, strict=True):
            try:
                shape.verify(item, f"{where}.{name}" if where else name)
            except ValidationError:
                default = infos[name].default
                if item == default or plain(item) == default:
                    continue  # a default pydantic does not validate (`count: int = None`)
                raise

    def child(self, segment: Any, where: str) -> tuple[Any, Shape]:
        found = self.fields.get(segment) if isinstance(segment, str) else None
        if found is None:
            known = ", ".join(self.fields)
            raise StatePathError(
                f"{where}: {self.model.__name__} has no field {segment!r}; its fields are: {known}",
                where,
            )
        return found


class MapShape(Shape):
    __slots__ = ("key", "value")
    container = True

    def __init__(self, annotation: Any, key: Any, value: Any, config: Config = None) -> None:
        super().__init__(annotation, config)
        self.key = Shape(key, config)
        self.value = compile_shape(value, config)

    def adopt(self, valid: Any) -> Any:
        if valid is None:  # a default pydantic did not validate: `dict[str, int] = None`
            raise _none_in(self.annotation)
        if not self.key.scalar:  # frozen models as keys: their Nodes (equal, same hash)
            valid = {freeze_key(k): v for k, v in valid.items()}
        if self.value.scalar:
            return Map(valid)
        adopt = self.value.adopt
        return Map({k: adopt(v) for k, v in valid.items()})

    def verify(self, value: Any, where: str) -> None:
        if type(value) is not Map:
            raise _not_a(self.annotation, value, where)
        key, item = self.key, self.value
        if not _all_of(key.fast, value.keys()):
            for k in value:
                key.verify(k, f"{where}.{k!r}")
        if not _all_of(item.fast, value.values()):
            for k, v in value.items():
                item.verify(v, f"{where}.{k}")
        if self.checked:
            self.check(value, where)

    def freeze(self, value: Any, where: str) -> Any:
        fast = self.value.fast
        if (  # a Map already frozen and valid
            type(value) is Map
            and fast is not None
            and not self.checked
            and self.key.fast is str
            and all(type(k) is str and type(v) is fast for k, v in value.items())
        ):
            return value
        return super().freeze(value, where)

    def child(self, segment: Any, where: str) -> tuple[Any, Shape]:
        return self.a_key(segment, where), self.value

    def a_key(self, segment: Any, where: str) -> Any:
        if type(segment) is self.key.fast:
            return segment
        try:
            key = self.key.adapter.validate_python(segment)
            return key if self.key.scalar else freeze_key(key)
        except pydantic.ValidationError as exc:
            raise StatePathError(
                f"{where}: not a key of this dict: {first_error(exc)}", where
            ) from None


class ListShape(Shape):
    __slots__ = ("item",)
    container = True

    def __init__(self, annotation: Any, item: Any, config: Config = None) -> None:
        super().__init__(annotation, config)
        self.item = compile_shape(item, config)

    def adopt(self, valid: Any) -> Any:
        if valid is None:
            raise _none_in(self.annotation)
        if self.item.scalar:
            return tuple(valid)
        adopt = self.item.adopt
        return tuple(adopt(v) for v in valid)

    def verify(self, value: Any, where: str) -> None:
        if type(value) is not tuple:
            raise _not_a(self.annotation, value, where)
        item = self.item
        if not _all_of(item.fast, value):
            for i, v in enumerate(value):
                item.verify(v, f"{where}.{i}")
        if self.checked:
            self.check(value, where)

    def child(self, segment: Any, where: str) -> tuple[Any, Shape]:
        if isinstance(segment, str) and segment.lstrip("-").isdigit():
            with contextlib.suppress(ValueError):  # ("²" is a digit, not a number)
                segment = int(segment)
        if type(segment) is not int:
            raise StatePathError(f"{where}: a list's part is an index, not {segment!r}", where)
        return segment, self.item


class OptionalShape(Shape):
    """`X | None` of a container X: None, or a value of X's shape."""

    __slots__ = ("inner",)
    container = True

    def __init__(self, annotation: Any, inner: Shape, config: Config = None) -> None:
        super().__init__(annotation, config)
        self.inner = inner

    def freeze(self, value: Any, where: str) -> Any:
        return None if value is None else self.inner.freeze(value, where)

    def adopt(self, valid: Any) -> Any:
        return None if valid is None else self.inner.adopt(valid)

    def verify(self, value: Any, where: str) -> None:
        if value is not None:
            self.inner.verify(value, where)

    def child(self, segment: Any, where: str) -> tuple[Any, Shape]:
        return self.inner.child(segment, where)


_SHAPES: dict[Any, Shape] = {}
_COMPILING = threading.RLock()


def compile_shape(annotation: Any, config: Config = None) -> Shape:
    """The Shape of a type annotation in a model of that validation config
    (cached: one per annotation and config)."""
    try:
        found = _SHAPES.get((annotation, config))
    except TypeError:  # an annotation that cannot be hashed
        return _compile(annotation, config)
    if found is None:
        found = _SHAPES.setdefault((annotation, config), _compile(annotation, config))
    return found


def _compile(annotation: Any, config: Config) -> Shape:
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return ModelShape(annotation)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:  # constraints: a dict or list checked whole, else a leaf
        inner = _compile(args[0], config)
        if isinstance(inner, OptionalShape):  # Optional[list[int]] = Field(None, max_length=2)
            checked = _checked(
                inner.inner, typing.Annotated[inner.inner.annotation, *args[1:]], config
            )
            if checked is None:
                return Shape(annotation, config)
            return OptionalShape(annotation, checked, config)
        return _checked(inner, annotation, config) or Shape(annotation, config)
    if origin in (dict, abc.Mapping, abc.MutableMapping, immutables.Map) and len(args) == 2:
        return MapShape(annotation, args[0], args[1], config)
    if origin in (list, abc.Sequence, abc.MutableSequence) and len(args) == 1:
        return ListShape(annotation, args[0], config)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return ListShape(annotation, args[0], config)
    if origin in (typing.Union, types.UnionType) and len(args) == 2 and type(None) in args:
        other = compile_shape(args[0] if args[1] is type(None) else args[1], config)
        if other.container:
            return OptionalShape(annotation, other, config)
    return Shape(annotation, config)


def _checked(inner: Shape, annotation: Any, config: Config) -> Shape | None:
    """A dict or list Shape checked whole against annotation (its constraints)."""
    found: Shape
    if isinstance(inner, MapShape):
        found = MapShape(annotation, inner.key.annotation, inner.value.annotation, config)
    elif isinstance(inner, ListShape):
        found = ListShape(annotation, inner.item.annotation, config)
    else:
        return None
    found.checked = True
    return found


def _has_own_config(annotation: Any) -> bool:
    """A model, dataclass or TypedDict: validated by its own config (pydantic refuses another)."""
    if not isinstance(annotation, type):
        return False
    return (
        issubclass(annotation, pydantic.BaseModel)
        or dataclasses.is_dataclass(annotation)
        or typing.is_typeddict(annotation)
    )


def _is_scalar(annotation: Any) -> bool:
    if annotation in _SCALARS:
        return True
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return True
    if typing.get_origin(annotation) is typing.Literal:
        return True
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return all(_is_scalar(a) for a in args)
    return False


def _holds(shape: Shape, model: ModelShape, seen: set[int]) -> bool:
    """Whether a value of shape can hold a value of model."""
    if id(shape) in seen:
        return False
    seen.add(id(shape))
    if isinstance(shape, ModelShape):
        children: list[Shape] = [child for _, child in shape.fields.values()]
    elif isinstance(shape, MapShape):
        children = [shape.value]
    elif isinstance(shape, ListShape):
        children = [shape.item]
    elif isinstance(shape, OptionalShape):
        children = [shape.inner]
    else:
        return False
    return any(child is model or _holds(child, model, seen) for child in children)


def _model_depth(value: Any) -> int:
    """How deep models are nested in a frozen value (without recursion)."""
    deepest = 0
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Node):
            depth += 1
            deepest = max(deepest, depth)
            stack.extend((v, depth) for v in item)
        elif type(item) is Map:
            stack.extend((v, depth) for v in item.values())
        elif type(item) is tuple:
            stack.extend((v, depth) for v in item)
    return deepest


def _all_of(kind: type | None, values: abc.Iterable[Any]) -> bool:
    """Whether every value is of exactly that type (one C-level pass)."""
    return kind is not None and set(map(type, values)) <= {kind}


def _not_a(annotation: Any, value: Any, where: str) -> ValidationError:
    return ValidationError(
        f"{where or 'the state'}: not a {_name(annotation)}: {type(value).__name__} {value!r:.60}"
    )


def _too_deep(where: str) -> ValidationError:
    return ValidationError(f"{where or 'the state'}: a value nested too deeply to keep")


class _NoneDefaultError(ValidationError):
    """None where a dict or list is declared (a default pydantic did not validate)."""


def _none_in(annotation: Any) -> ValidationError:
    return _NoneDefaultError(
        f"None where a {_name(annotation)} is declared (a default is not validated:"
        f" declare it `{_name(annotation)} | None` to allow None)"
    )


def _name(annotation: Any) -> str:
    if typing.get_origin(annotation) is not None:  # dict[str, int], not dict
        return str(annotation).replace("typing.", "")
    return getattr(annotation, "__name__", None) or str(annotation)


def first_error(exc: pydantic.ValidationError) -> str:
    error = exc.errors()[0]
    location = ".".join(str(p) for p in error.get("loc", ()))
    return f"{location}: {error['msg']}" if location else str(error["msg"])
