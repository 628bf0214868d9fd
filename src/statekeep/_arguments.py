"""The Store's checks of its arguments: each misuse is a typed error that says
what to pass instead, raised before anything is read or written.

What selects data (ids, limits, offsets) is a QueryError; what sets how a
call works (chunk sizes, timeouts, flags) is a ConfigurationError; what is not
an entity where one is needed, a ValidationError. The checks of enqueue()'s
arguments and of the write-behind options are write-behind's own
(writebehind/_arguments.py).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any

from ._numbers import timeout as timeout  # check.timeout, for the store
from ._schema import check_storable
from .backends.base import Backend
from .errors import ConfigurationError, QueryError, ValidationError

_BIGGEST = 2**63 - 1  # what every backend can hold as a LIMIT or OFFSET


# Backend methods a backend object may lack (the store does without them)
OPTIONAL = frozenset({"count_by"})
# what a backend object has: Backend's attributes and methods
_BACKEND_MEMBERS = tuple(
    sorted(
        {name for name in vars(Backend) if not name.startswith("_") and name not in OPTIONAL}
        | set(Backend.__annotations__)
    )
)


def backend(value: Any) -> Backend:
    """A backend object (backend=): not a class, not a URL, nothing that lacks
    one of the Backend protocol's attributes or methods."""
    missing = [name for name in _BACKEND_MEMBERS if not hasattr(value, name)]
    if isinstance(value, type) or missing:
        lacks = f" (it has no {', '.join(missing)})" if missing and len(missing) < 6 else ""
        raise ConfigurationError(
            "backend= takes a backend object (a statekeep.backends.Backend, e.g. "
            f"open_backend(url, {{}})), not {value!r}{lacks}"
        )
    taken = TAKEN.get(id(value))
    if taken is not None and not taken.closed and taken.backend is value:
        raise ConfigurationError(
            f"backend= is already the backend of {taken!r}, which closes it with "
            "itself: give each store a backend of its own"
        )
    return value  # type: ignore[no-any-return]


# id(backend) -> the store that took it over through backend= (the Store writes it)
TAKEN: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()


def an_id(id: Any) -> str:
    if not isinstance(id, str) or not id:
        raise QueryError(f"an id is a non-empty string, not {id!r}")
    check_storable(id, "id")
    return id


def ids(value: Any) -> Iterable[Any]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise QueryError(f"get_many() takes a list of ids, not {value!r}")
    return value


def entities(value: Any) -> Iterable[Any]:
    if hasattr(value, "__statekeep__") and not isinstance(value, type):
        raise ValidationError(
            "save_many() takes a list (or any iterable) of entities; use save(entity) for one"
        )
    if isinstance(value, (str, bytes, dict)) or not isinstance(value, Iterable):
        raise ValidationError(
            f"save_many() takes a list (or any iterable) of entities, not {value!r}"
        )
    return value


def count(value: Any, name: str, *, least: int, none: bool = False) -> Any:
    """A whole number (not a bool) between least and 2**63 - 1 (or None if allowed)."""
    if value is None and none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= _BIGGEST:
        also = " or None" if none else ""
        raise QueryError(f"{name} must be an int >= {least}{also}, not {value!r}")
    return value


def chunk_size(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"chunk_size must be a positive int, not {value!r}")
    return value


def flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigurationError(f"{name} must be True or False, not {value!r}")
    return value
