"""store.count_by: how many entities hold each value of an indexed field, in
one grouped query (a count per state of a state machine, per status, per
owner). Values come back as the field's type (a machine's states, an enum's
members); values no entity holds are left out."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

import pydantic

from .conditions import Condition
from .errors import QueryError

if TYPE_CHECKING:
    from ._core import Core
    from .entity import Entity


def count_by(
    core: Core,
    cls: type[Entity],
    field: str,
    conditions: tuple[Condition, ...],
    equals: dict[str, Any],
) -> dict[Any, int]:
    info = core.info(cls)
    if not isinstance(field, str) or field not in cls.model_fields:
        raise QueryError(f"count_by takes a field name of {cls.__name__}, not {field!r}")
    if field not in info.spec.columns or field in ("id", "version"):
        raise QueryError(
            f"{cls.__name__}.{field} is not indexed: count_by groups by an indexed field "
            "(declare it Annotated[..., statekeep.Indexed()])"
        )
    filters = info.filters(conditions, equals)
    backend = core.backend
    backend.ensure_collection(info.spec, create=False)
    grouped = getattr(backend, "count_by", None)
    adapter = info.adapter(field)
    if grouped is not None:
        counts: dict[Any, int] = grouped(info.spec, field, filters)
    else:  # a backend of one's own without count_by: a count per value of an enum
        members = getattr(cls.model_fields[field].annotation, "__members__", None)
        if members is None:
            raise QueryError(
                f"this store's backend cannot group counts (no count_by) and "
                f"{cls.__name__}.{field} is not an enum"
            )
        counts = {}
        for member in members.values():
            same = getattr(cls.f, field) == member
            found = backend.count(info.spec, info.filters((*conditions, same), equals))
            if found:
                counts[member.value if isinstance(member, enum.Enum) else member] = found
    result: dict[Any, int] = {}
    for value, found in counts.items():
        try:
            key = adapter.validate_python(value) if value is not None else None
        except pydantic.ValidationError:
            key = value  # a stored value the model no longer takes: counted as it is
        result[key] = result.get(key, 0) + found
    return result
