"""Backoff and retry: the delays between attempts, and trying a call again.

`Backoff(base, cap, factor, jitter)` gives the delay before attempt n + 1 after
n failures: `base * factor**(n - 1)`, at most `cap`, then (with jitter j)
multiplied by a random number between 1 - j and 1, so that many clients that
failed together do not come back together. `Retry` calls a function up to
`attempts` times while a predicate says its exception is worth another try.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from .._numbers import is_seconds
from ..errors import ConfigurationError

T = TypeVar("T")


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


def _always(_: BaseException) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class Retry:
    """Calls a function up to `attempts` times while `when(exception)` is true,
    waiting `backoff.delay(n)` (None: not at all) between attempts;
    `on_retry(exception, attempt)` is told of each failure that is tried again."""

    attempts: int = 3
    backoff: Backoff | None = None
    when: Callable[[BaseException], bool] = _always
    on_retry: Callable[[BaseException, int], None] | None = None
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise ConfigurationError(f"attempts must be an int >= 1, not {self.attempts!r}")
        if self.attempts < 1:
            raise ConfigurationError(f"attempts must be an int >= 1, not {self.attempts!r}")

    def call(self, function: Callable[[], T]) -> T:
        attempt = 1
        while True:
            try:
                return function()
            except Exception as exc:
                if attempt >= self.attempts or not self.when(exc):
                    raise
                if self.on_retry is not None:
                    self.on_retry(exc, attempt)
                if self.backoff is not None:
                    self.sleep(self.backoff.delay(attempt))
                attempt += 1
