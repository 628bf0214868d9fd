"""Conditions people can read: `Todo.f.done == False`, `Todo.f.priority > 2`.

`Todo.f` holds one FieldRef per field; comparing a FieldRef makes a Condition,
and `find`/`count` take any number of them (ANDed). Values are checked against
the field's type when the query is built, not when it runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .backends.base import Op
from .errors import QueryError, UnknownFieldError


@dataclass(frozen=True, slots=True)
class Condition:
    owner: type
    field: str
    op: Op
    value: Any

    def __bool__(self) -> bool:
        raise QueryError(
            "a condition has no truth value: pass several conditions to find() "
            "separated by commas (they are ANDed), not joined with 'and'/'or'"
        )


@dataclass(frozen=True, slots=True)
class Ordering:
    owner: type
    field: str
    descending: bool = False


class FieldRef:
    """One field of an entity class, for building conditions and orderings."""

    __slots__ = ("name", "owner")

    def __init__(self, owner: type, name: str) -> None:
        self.owner = owner
        self.name = name

    def _make(self, op: Op, value: Any) -> Condition:
        return Condition(self.owner, self.name, op, value)

    def __eq__(self, value: object) -> Condition:  # type: ignore[override]
        return self._make(Op.EQ, value)

    def __ne__(self, value: object) -> Condition:  # type: ignore[override]
        return self._make(Op.NE, value)

    def __lt__(self, value: Any) -> Condition:
        return self._make(Op.LT, value)

    def __le__(self, value: Any) -> Condition:
        return self._make(Op.LE, value)

    def __gt__(self, value: Any) -> Condition:
        return self._make(Op.GT, value)

    def __ge__(self, value: Any) -> Condition:
        return self._make(Op.GE, value)

    __hash__ = None  # type: ignore[assignment]

    def in_(self, values: Iterable[Any]) -> Condition:
        return self._make(Op.IN, _collection(values))

    def not_in(self, values: Iterable[Any]) -> Condition:
        return self._make(Op.NOT_IN, _collection(values))

    def startswith(self, prefix: str) -> Condition:
        return self._make(Op.PREFIX, prefix)

    def asc(self) -> Ordering:
        return Ordering(self.owner, self.name)

    def desc(self) -> Ordering:
        return Ordering(self.owner, self.name, descending=True)

    def __repr__(self) -> str:
        return f"{self.owner.__name__}.f.{self.name}"


def _collection(values: Iterable[Any]) -> tuple[Any, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise QueryError(f"in_()/not_in() take a list of values, not {values!r}")
    return tuple(values)


class Fields:
    """`Entity.f`: attribute access to the FieldRefs of an entity class."""

    def __init__(self, owner: type, names: Iterable[str]) -> None:
        self._owner = owner
        self._names = tuple(names)

    def __getattr__(self, name: str) -> FieldRef:
        if name not in self._names:
            raise UnknownFieldError(self._owner.__name__, name, list(self._names))
        return FieldRef(self._owner, name)

    def __dir__(self) -> list[str]:
        return list(self._names)


# What find(order_by=...) takes: a field name ("-title" for descending), a
# FieldRef, an Ordering (`Todo.f.title.desc()`), a list of these, or None.
OrderBy = str | FieldRef | Ordering | Sequence[str | FieldRef | Ordering] | None
