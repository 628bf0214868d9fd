"""Checks of the write-behind arguments of Store calls: typed errors that say what fits."""

from __future__ import annotations

from typing import Any

from .errors import QueryError
from .writebehind import Priority


def priority_of(priority: Any) -> Priority:
    if type(priority) is Priority:
        return priority
    try:
        return Priority(priority)
    except ValueError:
        raise QueryError(f"priority must be a statekeep Priority, not {priority!r}") from None


def deadline_of(deadline: Any) -> float | None:
    if deadline is None:
        return None
    if (
        isinstance(deadline, bool)
        or not isinstance(deadline, (int, float))
        or not (0 <= deadline < 1e9)
    ):
        raise QueryError(f"deadline is a number of seconds from now, not {deadline!r}")
    return float(deadline)


def expect_of(version: Any) -> int | None:
    if version is None:
        return None
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise QueryError(f"expect_version is a stored version (an int >= 0), not {version!r}")
    return version
