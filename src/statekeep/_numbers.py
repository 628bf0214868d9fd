"""What counts as a number in statekeep's arguments and options.

One definition for the store's arguments, the write-behind options, the flow
policies and the backends' URL options: a whole number is an int and not a
bool; a number of seconds is an int or float, not a bool, finite and not NaN,
and no longer than a thread can wait (threading.TIMEOUT_MAX, about 292 years).
The callers raise their own typed error with their own message; these only say
yes or no (but timeout(), which raises ConfigurationError). A leaf: imports
nothing from statekeep but its errors.
"""

from __future__ import annotations

import threading
from typing import Any

from .errors import ConfigurationError

LONGEST = float(threading.TIMEOUT_MAX)  # the longest wait a lock or condition accepts

BIGGEST = 2**63 - 1  # what every backend can hold in a BIGINT, a LIMIT or an OFFSET


def is_whole(value: Any, least: int = 0, most: float = BIGGEST) -> bool:
    """An int (not a bool) with least <= value <= most."""
    return isinstance(value, int) and not isinstance(value, bool) and least <= value <= most


def is_seconds(
    value: Any, least: float = 0.0, most: float = LONGEST, *, positive: bool = False
) -> bool:
    """A real number (int or float, not a bool), least <= value < most (and
    > 0 when positive): finite, and a wait that long is possible. NaN is
    never one."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if positive and not value > 0:
        return False
    return least <= value < most


def timeout(value: Any) -> float | None:
    """A timeout argument: seconds (see is_seconds), or None to wait for ever."""
    if value is None:
        return None
    if not is_seconds(value):
        raise ConfigurationError(
            f"timeout is a number of seconds >= 0 (at most {LONGEST:.0f}), or None, not {value!r}"
        )
    return float(value)
