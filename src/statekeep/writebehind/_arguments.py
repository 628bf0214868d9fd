"""The checks of what enqueue() and enqueue_delete() take, and of the
write-behind options a Store is opened with: each misuse is a typed error
that says what to pass instead, raised before anything is queued.

Priorities, deadlines and expected versions select what is written and when:
a QueryError. Options set how the queue works: a ConfigurationError.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..errors import ConfigurationError, QueryError
from ._options import Priority, WriteBehindOptions


def check_priority(value: Any) -> Priority:
    if type(value) is Priority:
        return value
    try:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(value)
        return Priority(value)
    except ValueError:
        raise QueryError(f"priority must be a statekeep Priority, not {value!r}") from None


def check_deadline(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 <= value < 1e9):
        raise QueryError(f"deadline is a number of seconds from now, not {value!r}")
    return float(value)


def check_expect_version(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise QueryError(f"expect_version is a stored version (an int >= 0), not {value!r}")
    return value


def check_options(value: Any) -> WriteBehindOptions:
    """WriteBehindOptions, or a dict of its fields."""
    if value is None:
        return WriteBehindOptions()
    if isinstance(value, WriteBehindOptions):
        return value
    if isinstance(value, dict):
        known = [field.name for field in dataclasses.fields(WriteBehindOptions)]
        unknown = sorted(str(key) for key in value if key not in known)
        if unknown:
            raise ConfigurationError(
                f"unknown write-behind option(s) {', '.join(unknown)}; "
                f"the options are: {', '.join(known)}"
            )
        return WriteBehindOptions(**value)
    raise ConfigurationError(
        f"writebehind takes statekeep.WriteBehindOptions(...) or a dict of its options, "
        f"not {value!r}"
    )
