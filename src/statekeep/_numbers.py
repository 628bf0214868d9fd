"""What counts as a number in statekeep's arguments and options.

One definition for the store's arguments, the write-behind options, the flow
policies and the backends' URL options: a whole number is an int and not a
bool; a number of seconds is an int or float, not a bool, finite and not NaN.
The callers raise their own typed error with their own message; these only say
yes or no. A leaf: imports nothing from statekeep.
"""

from __future__ import annotations

import math
from typing import Any

BIGGEST = 2**63 - 1  # what every backend can hold in a BIGINT, a LIMIT or an OFFSET


def is_whole(value: Any, least: int = 0, most: float = BIGGEST) -> bool:
    """An int (not a bool) with least <= value <= most."""
    return isinstance(value, int) and not isinstance(value, bool) and least <= value <= most


def is_seconds(
    value: Any, least: float = 0.0, most: float = math.inf, *, positive: bool = False
) -> bool:
    """A real number (int or float, not a bool), finite, least <= value < most
    (and > 0 when positive). NaN is never one."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if positive and not value > 0:
        return False
    return least <= value < most
