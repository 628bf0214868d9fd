"""Backoff: the delays between attempts.

`Backoff(base, cap, factor, jitter)` gives the delay before attempt n + 1 after
n failures: `base * factor**(n - 1)`, at most `cap`, then (with jitter j)
multiplied by a random number between 1 - j and 1, so that many clients that
failed together do not come back together (jitter=1 is "full jitter").
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

from .._numbers import is_seconds
from ..errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential delays: base, base * factor, ... up to cap; jitter in [0, 1]."""

    base: float = 0.1
    cap: float = 30.0
    factor: float = 2.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        for name in ("base", "cap"):
            if not is_seconds(getattr(self, name), positive=True):
                raise ConfigurationError(
                    f"{name} must be a positive number of seconds, not {getattr(self, name)!r}"
                )
        if not is_seconds(self.factor) or self.factor < 1:
            raise ConfigurationError(f"factor must be a number >= 1, not {self.factor!r}")
        if not is_seconds(self.jitter) or self.jitter > 1:
            raise ConfigurationError(f"jitter must be between 0 and 1, not {self.jitter!r}")

    def delay(self, failures: int) -> float:
        """The wait after `failures` failures in a row (failures >= 1)."""
        exponent = max(failures, 1) - 1
        # factor**exponent overflows a float long before it matters: cap it first
        if exponent * math.log(self.factor or 1) > math.log(self.cap / self.base) + 1:
            delay = self.cap
        else:
            delay = min(self.cap, self.base * self.factor**exponent)
        if self.jitter:
            delay *= random.uniform(1.0 - self.jitter, 1.0)
        return delay

    def delays(self) -> Iterator[float]:
        """The delay after the first failure, the second, ... for ever."""
        failures = 0
        while True:
            failures += 1
            yield self.delay(failures)
