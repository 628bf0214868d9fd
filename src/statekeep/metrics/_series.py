"""The series a registry keeps: counters, gauges and windowed histograms."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ._window import Windowed

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
        return float(self.read()) if self.read is not None else float(self.value)

    def inc(self, n: int | float = 1) -> None:
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
        self.value = value

    def get(self) -> float:
        return float(self.read()) if self.read is not None else self.value


class Timer(Windowed):
    """A histogram of durations: records nanoseconds, reads as seconds."""

    __slots__ = ()

    def observe(self, seconds: float) -> None:
        self.record(int(seconds * 1e9) if seconds > 0 else 0)

    @contextmanager
    def time(self) -> Iterator[None]:
        """Times the block (also when it raises)."""
        start = time.perf_counter_ns()
        try:
            yield
        finally:
            self.record(time.perf_counter_ns() - start)
