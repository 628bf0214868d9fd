"""What a body must not hold, and how to tell cheaply: NaN and infinities
(a bare JSON token, a Decimal's text, or a NaN a nested model's serializer
writes as null) and pydantic's warnings from a wrap serializer. EntityInfo
(statekeep._schema) works these out once per entity class from its core
schema, and looks at a body's values only when its text gives a reason."""

from __future__ import annotations

import dataclasses
import decimal
import json
import math
from typing import Any

import pydantic


def _refuse_constant(name: str) -> Any:
    raise ValueError(name)


def has_non_finite(body: str) -> bool:
    """Does the JSON text hold NaN or an infinity (not merely those words in a string)?"""
    try:
        json.loads(body, parse_constant=_refuse_constant)
    except ValueError:
        return True
    return False


def may_hide_non_finite(schema: Any) -> bool:
    """Can a float in a value of this core schema (a field's type) be
    serialised by a serializer that writes NaN and infinities as null (a
    model or dataclass with pydantic's default ser_json_inf_nan, or an Any
    field holding one)? Then "null" in a body may stand for a NaN, and the
    values are looked at."""
    if isinstance(schema, list):
        return any(may_hide_non_finite(item) for item in schema)
    if not isinstance(schema, dict):
        return False
    if schema.get("type") == "any":
        return True
    config = schema.get("config")
    if isinstance(config, dict) and config.get("ser_json_inf_nan") != "constants":
        return True
    return any(may_hide_non_finite(value) for value in schema.values())


# core schema types whose JSON never holds a bare NaN or infinity token: the
# scalars that cannot be one, and the containers (looked into)
_FINITE_SCHEMAS = frozenset(
    (
        *("str", "int", "bool", "none", "datetime", "date", "time", "timedelta", "uuid"),
        *("model", "model-fields", "model-field", "list", "set", "frozenset", "tuple"),
        *("dict", "nullable", "default", "union", "tagged-union", "definitions"),
        *("typed-dict", "typed-dict-field", "dataclass", "dataclass-args", "dataclass-field"),
    )
)


def may_write_non_finite(schema: Any, entity: type | None = None, own: bool = False) -> bool:
    """Can a body of this core schema hold NaN or an infinity as a bare token
    (a float, Any, extra fields, a custom serializer, a Decimal, which writes
    "NaN" as text, anything not known)? If not, those words in a body are
    inside strings and need no look. The computed fields of `entity`'s own
    model are not in its body (own: the node is that model's)."""
    if isinstance(schema, list):
        return any(may_write_non_finite(item, entity) for item in schema)
    if not isinstance(schema, dict):
        return False
    kind = schema.get("type")
    if kind is not None and (kind not in _FINITE_SCHEMAS or "serialization" in schema):
        return True
    if schema.get("extra_fields_behavior") == "allow" or schema.get("extra_behavior") == "allow":
        return True
    inner = kind == "model" and entity is not None and schema.get("cls") is entity
    return any(
        may_write_non_finite(value, entity, inner)
        for key, value in schema.items()
        if key != "metadata" and not (own and key == "computed_fields")
    )


def wraps_serializer(schema: Any) -> bool:
    """Does a wrap serializer (a field's or a model's) serialise part of a
    body of this core schema? pydantic's warnings then come from the
    application's module, where statekeep._strict cannot see them."""
    if isinstance(schema, list):
        return any(wraps_serializer(item) for item in schema)
    if not isinstance(schema, dict):
        return False
    serialization = schema.get("serialization")
    if isinstance(serialization, dict) and serialization.get("type") == "function-wrap":
        return True
    return any(wraps_serializer(value) for key, value in schema.items() if key != "metadata")


_SCALARS = (str, int, bool, type(None))


def holds_non_finite(value: Any) -> bool:
    """Does the Python value hold a NaN or an infinity, however deep?"""
    kind = type(value)
    if kind in _SCALARS:
        return False
    if kind is float or isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, decimal.Decimal):  # written as the text "NaN": no Decimal reads it
        return not value.is_finite()
    if isinstance(value, dict):
        for item in value.values():  # noqa: SIM110 - a loop: faster than any() on a hot path
            if type(item) not in _SCALARS and holds_non_finite(item):
                return True
        return False
    if isinstance(value, (list, tuple, set, frozenset)):
        for item in value:  # noqa: SIM110 - a loop, as above
            if type(item) not in _SCALARS and holds_non_finite(item):
                return True
        return False
    if isinstance(value, pydantic.BaseModel):
        extra = value.__pydantic_extra__ or {}
        return holds_non_finite(value.__dict__) or holds_non_finite(extra)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return any(holds_non_finite(getattr(value, f.name)) for f in dataclasses.fields(value))
    return False
