"""The series a registry keeps: counters, gauges and windowed histograms."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ..errors import ConfigurationError
from ._window import Windowed

log = logging.getLogger("statekeep.metrics")

Labels = tuple[tuple[str, str], ...]

COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"


@dataclass(frozen=True, slots=True)
class Family:
    """A metric's name, kind and meaning; its series differ by labels."""

    name: str
    kind: str  # counter | gauge | histogram
    help: str
    unit: str  # "seconds" (a histogram records nanoseconds), "bytes", "" ...

    @property
    def scale(self) -> float:
        """What a recorded whole number is worth in the unit."""
        return 1e-9 if self.kind == HISTOGRAM and self.unit == "seconds" else 1.0


class Counter:
    """A number that only goes up (operations, errors, rows)."""

    __slots__ = ("_lock", "read", "value")

    def __init__(self, read: Callable[[], float] | None = None) -> None:
        self.value: int | float = 0
        self._lock = threading.Lock()
        self.read = read

    def get(self) -> float:
        return _read(self.read) if self.read is not None else float(self.value)

    def forked(self) -> None:
        """In a forked child: from zero (the parent's count is the parent's)."""
        self._lock = threading.Lock()
        self.value = 0

    def inc(self, n: int | float = 1) -> None:
        """Adds n >= 0 (a counter only goes up: ConfigurationError otherwise)."""
        if not (type(n) is int or type(n) is float) or not n >= 0 or n == math.inf:
            _refuse(n)
        lock = self._lock
        lock.acquire()
        try:
            self.value += n
        finally:
            lock.release()


class Gauge:
    """A number that goes up and down: set, or read when a snapshot is taken."""

    __slots__ = ("read", "value")

    def __init__(self, read: Callable[[], float] | None = None) -> None:
        self.value: float = 0.0
        self.read = read

    def set(self, value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigurationError(f"a gauge is set to a number, not {value!r}")
        self.value = value

    def get(self) -> float:
        return _read(self.read) if self.read is not None else self.value


class Timer(Windowed):
    """A histogram of durations: records nanoseconds, reads as seconds."""

    __slots__ = ()

    def observe(self, seconds: float) -> None:
        """Records a duration in seconds (a finite number >= 0)."""
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, (int, float))
            or not 0 <= seconds < math.inf
        ):
            raise ConfigurationError(
                f"a duration is a finite number of seconds >= 0, not {seconds!r}"
            )
        self.record(int(seconds * 1e9))

    @contextmanager
    def time(self) -> Iterator[None]:
        """Times the block (also when it raises)."""
        start = time.perf_counter_ns()
        try:
            yield
        finally:
            self.record(time.perf_counter_ns() - start)


def _refuse(n: object) -> None:
    raise ConfigurationError(f"a counter goes up by a finite number >= 0, not {n!r}")


def _read(read: Callable[[], float]) -> float:
    """A value read from elsewhere; NaN (and a log record) if the read fails
    or gives no number: one bad gauge does not take a snapshot down."""
    try:
        value = read()
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"it gave {value!r}, not a number")
        return float(value)
    except Exception as error:  # noqa: BLE001 - a user's function: reported, not raised
        log.warning(
            "statekeep.metrics: reading %r failed: %s",
            read,
            error,
            extra={
                "statekeep": {
                    "event": "metrics.read_failed",
                    "read": repr(read),
                    "error_type": type(error).__name__,
                    "error": str(error),
                }
            },
        )
        return math.nan
