"""Rows as PostgreSQL takes them: checked, and each value of its column's type."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ..errors import ValidationError
from .base import CollectionSpec, Row

_INT64 = (-(2**63), 2**63 - 1)


def columns(rows: list[Row]) -> list[list[Any]]:
    """Rows as one list per column (for unnest)."""
    return [list(column) for column in zip(*rows, strict=True)]


def converter(spec: CollectionSpec) -> Callable[[Row], Row]:
    """Checks a row against what PostgreSQL can hold and gives each indexed
    value the type of its column (booleans as 0/1, mixed kinds as JSON).
    (Text holding NUL, which PostgreSQL cannot store, never gets this far:
    the entity layer refuses it on every backend.)"""
    kinds = [index.kind for index in spec.indexes]
    fixes: list[tuple[int, Callable[[Any, CollectionSpec, str], Any]]] = [
        (3 + i, {"integer": _integer, "real": _real, "any": _jsonb}[kind])
        for i, kind in enumerate(kinds)
        if kind in ("integer", "real", "any")
    ]

    def convert(row: Row) -> Row:
        if not fixes:
            return row
        fixed = list(row)
        for position, fix in fixes:
            fixed[position] = fix(fixed[position], spec, row[0])
        return tuple(fixed)

    return convert


def _integer(value: Any, spec: CollectionSpec, id: str) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) and not _INT64[0] <= value <= _INT64[1]:
        names = ", ".join(i.name for i in spec.indexes if i.kind == "integer")
        raise ValidationError(
            f"{spec.name} {id!r}: an indexed integer ({names}) does not fit 64 bits"
        )
    return value


def _real(value: Any, spec: CollectionSpec, id: str) -> Any:
    try:
        return None if value is None else float(value)
    except OverflowError:
        raise ValidationError(f"{spec.name} {id!r}: {value} does not fit a float") from None


def _jsonb(value: Any, spec: CollectionSpec, id: str) -> Any:
    return None if value is None else json.dumps(value)  # JSON text, as the bodies
