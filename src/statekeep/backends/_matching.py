"""Filters and ordering evaluated in Python, with SQLite's semantics.

Used by the backends that cannot push a query down to a database engine. The
rules mirror SQL as the SQLite backend writes it: EQ/NE are null-safe, other
comparisons never match None, and values of different kinds order as
None < numbers (bool counts as 0/1) < text.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from .base import CollectionSpec, Field, Filter, Op, Order, Query, Row, time_key


def _rank(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, (bool, int, float)):
        return 1
    return 2


def sort_key(value: Any) -> tuple[int, Any]:
    return (_rank(value), value)


def _compare(op: Op, value: Any, target: Any) -> bool:
    if op is Op.EQ:
        return bool(value == target)
    if op is Op.NE:
        return bool(value != target)
    if op is Op.IN:
        return value in target
    if op is Op.NOT_IN:
        return value not in target
    if value is None:
        return False
    if op is Op.PREFIX:
        return isinstance(value, str) and value.startswith(target)
    left, right = sort_key(value), sort_key(target)
    if op is Op.LT:
        return left < right
    if op is Op.LE:
        return left <= right
    if op is Op.GT:
        return left > right
    return left >= right


Getter = Callable[[Row], Any]


def field_getter(spec: CollectionSpec, field: Field) -> Getter:
    """A function reading one field's comparable value from a row."""
    if field.column:
        position = spec.columns.index(field.name)
        return lambda row: row[position]
    name, default = field.name, field.default
    convert = time_key if field.time else None

    def from_body(row: Row) -> Any:
        document = json.loads(row[2])
        value = document.get(name, default) if isinstance(document, dict) else None
        return value if convert is None else convert(value)

    return from_body


def matcher(spec: CollectionSpec, filters: Sequence[Filter]) -> Callable[[Row], bool]:
    checks = [(field_getter(spec, f.field), f.op, f.value) for f in filters]
    return lambda row: all(_compare(op, get(row), value) for get, op, value in checks)


def ordered(spec: CollectionSpec, rows: Iterable[Row], order: Sequence[Order]) -> list[Row]:
    """Rows sorted by `order`, ties broken by id (stable sorts, last key first)."""
    result = sorted(rows, key=lambda row: row[0])
    for o in reversed(order):
        get = field_getter(spec, o.field)
        result.sort(key=lambda row: sort_key(get(row)), reverse=o.descending)
    return result


def select(spec: CollectionSpec, rows: Iterable[Row], query: Query) -> Iterator[str]:
    """The bodies of the rows a query matches, in its order, offset and limit:
    the select of a backend that holds its rows in Python."""
    matches = matcher(spec, query.filters)
    found = ordered(spec, (row for row in rows if matches(row)), query.order)
    end = None if query.limit is None else query.offset + query.limit
    for row in found[query.offset : end]:
        yield str(row[2])


def count(spec: CollectionSpec, rows: Iterable[Row], filters: Sequence[Filter]) -> int:
    """How many of the rows the filters match."""
    matches = matcher(spec, filters)
    return sum(1 for row in rows if matches(row))


def count_by(
    spec: CollectionSpec, rows: Iterable[Row], column: str, filters: Sequence[Filter]
) -> dict[Any, int]:
    """How many of the rows the filters match, per value of an indexed column."""
    matches = matcher(spec, filters)
    position = spec.columns.index(column)
    counts: dict[Any, int] = {}
    for row in rows:
        if matches(row):
            counts[row[position]] = counts.get(row[position], 0) + 1
    return counts


def explain(spec: CollectionSpec, query: Query) -> list[str]:
    """The plan of `select`: no index, every row read, filtered and sorted in Python."""
    plan = [f"SCAN {spec.name} (every row, filtered in Python)"]
    if query.order:
        keys = ", ".join(f"{o.field.name}{' DESC' if o.descending else ''}" for o in query.order)
        plan.append(f"SORT in Python BY {keys}, id")
    return plan


def indexed_values(spec: CollectionSpec, body: str) -> tuple[Any, ...]:
    """The values of spec's indexed fields, read from a body."""
    document = json.loads(body)
    if not isinstance(document, dict):
        document = {}
    return tuple(
        time_key(document.get(index.name, index.default))
        if index.kind == "time"
        else document.get(index.name, index.default)
        for index in spec.indexes
    )
