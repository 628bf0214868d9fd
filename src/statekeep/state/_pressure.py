"""Memory pressure: cold states compressed, caches dropped past a watermark.

One guard per process (`memory_guard()`), since memory is the process's. It
reads the process's resident memory from the OS every `interval` seconds and
keeps a cache policy over every open AppState:

- always: a state neither read nor changed for `cold_after` seconds is
  compressed (its snapshot kept as zstd bytes, its history dropped); the
  next read or update decompresses it;
- once resident memory crosses `watermark` (bytes; by default 80% of the
  machine's memory): every state's history is dropped to its newest version,
  states idle for `pressure_cold_after` seconds are compressed, compressed
  ones are recompressed at the hardest level, and persisted states snapshot
  at the hardest level from then on. A `MemoryPressure` event goes to the
  guard's `on_event` callbacks and to the bus of every store holding a
  state; `MemoryRelieved` when memory is back under 90% of the watermark.

`stats()` of a state shows whether it is compressed; `guard.stats()` counts
what was done.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from .._numbers import is_seconds
from ..errors import ConfigurationError
from ..events import Event


class Guarded(Protocol):
    """What the guard needs of an AppState."""

    counters: Any
    _bus: Any

    @property
    def closed(self) -> bool: ...
    @property
    def version(self) -> int: ...
    def compress(self, hardest: bool = False) -> bool: ...
    def _relieve(self) -> int: ...


log = logging.getLogger("statekeep.state")


class MemoryPressure(Event):
    """The process's resident memory crossed the state memory guard's watermark."""

    kind: ClassVar[str] = "memory_pressure"
    rss: int = 0
    watermark: int = 0
    compressed: int = 0  # states compressed in response
    trimmed: int = 0  # states whose history was dropped


class MemoryRelieved(Event):
    """Resident memory is back under 90% of the watermark."""

    kind: ClassVar[str] = "memory_relieved"
    rss: int = 0
    watermark: int = 0


def resident_bytes() -> int:
    """The process's resident memory, from the OS (0 where it cannot be read)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak) * (1 if os.uname().sysname == "Darwin" else 1024)
    except (ImportError, OSError):
        return 0


def machine_bytes() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


@dataclass
class GuardStats:
    checks: int = 0
    rss: int = 0  # at the last check
    watermark: int = 0
    under_pressure: bool = False
    pressure_events: int = 0
    compressed: int = 0  # states compressed (cold, or under pressure)
    trimmed: int = 0  # histories dropped under pressure


class MemoryGuard:
    def __init__(
        self,
        *,
        watermark: int | None = None,
        interval: float = 1.0,
        cold_after: float | None = 300.0,
        pressure_cold_after: float = 5.0,
        read: Callable[[], int] = resident_bytes,
    ) -> None:
        self.watermark = watermark if watermark is not None else int(machine_bytes() * 0.8)
        self.interval = interval
        self.cold_after = cold_after
        self.pressure_cold_after = pressure_cold_after
        self.read = read
        self.states: weakref.WeakSet[Guarded] = weakref.WeakSet()
        # state -> (its reads + writes + version when last seen changing, since when)
        self._activity: weakref.WeakKeyDictionary[Guarded, tuple[int, float]] = (
            weakref.WeakKeyDictionary()
        )
        self.on_event: list[Callable[[Event], None]] = []
        self.stats = GuardStats(watermark=self.watermark)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, state: Guarded) -> None:
        with self._lock:
            self.states.add(state)
            self._start()

    def _start(self) -> None:
        """Starts the guard's thread if it has none (lock held)."""
        if self._thread is None and self.interval > 0:
            self._thread = threading.Thread(
                target=self._run, name="statekeep-state-memory", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception as exc:  # the guard's thread must live on: logged with its traceback
                log.exception(
                    "the state memory guard's check failed",
                    extra={
                        "statekeep": {
                            "event": "state.memory_check_failed",
                            "error_type": type(exc).__name__,
                            "error": str(exc),
                        }
                    },
                )

    def check(self) -> bool:
        """One look at memory; True while under pressure."""
        now = time.monotonic()
        rss = self.read()
        stats = self.stats
        stats.checks += 1
        stats.rss = rss
        states = [s for s in list(self.states) if not s.closed]
        idle = {id(state): self._idle(state, now) for state in states}
        if self.watermark and rss > self.watermark and not stats.under_pressure:
            stats.under_pressure = True
            stats.pressure_events += 1
            trimmed = compressed = 0
            for state in states:
                trimmed += state._relieve()
                if idle[id(state)] >= self.pressure_cold_after and state.compress(hardest=True):
                    compressed += 1
            stats.trimmed += trimmed
            stats.compressed += compressed
            self._announce(
                states,
                MemoryPressure.made(
                    "statekeep",
                    "",
                    0,
                    rss=rss,
                    watermark=self.watermark,
                    compressed=compressed,
                    trimmed=trimmed,
                ),
            )
            log.warning(
                "memory %d bytes is over the watermark %d: "
                "%d states compressed, %d histories dropped",
                rss,
                self.watermark,
                compressed,
                trimmed,
                extra={
                    "statekeep": {
                        "event": "state.memory_pressure",
                        "rss": rss,
                        "watermark": self.watermark,
                        "compressed": compressed,
                        "trimmed": trimmed,
                    }
                },
            )
        elif stats.under_pressure and rss < self.watermark * 0.9:
            stats.under_pressure = False
            self._announce(
                states, MemoryRelieved.made("statekeep", "", 0, rss=rss, watermark=self.watermark)
            )
        elif stats.under_pressure:  # still: histories grown since (or busy then) are dropped
            stats.trimmed += sum(state._relieve() for state in states)
        cold_after = self.pressure_cold_after if stats.under_pressure else self.cold_after
        if cold_after is not None:
            for state in states:
                if idle[id(state)] >= cold_after and state.compress(hardest=stats.under_pressure):
                    stats.compressed += 1
        return stats.under_pressure

    def _idle(self, state: Guarded, now: float) -> float:
        """Seconds since the state was last read or changed (as far as seen)."""
        counters = state.counters
        activity = counters.reads + counters.writes + state.version
        seen = self._activity.get(state)
        if seen is None or seen[0] != activity:
            self._activity[state] = (activity, now)
            return 0.0
        return now - seen[1]

    def _announce(self, states: list[Guarded], event: Event) -> None:
        for callback in list(self.on_event):
            try:
                callback(event)
            except Exception as exc:  # a user's callback, isolated as event handlers are
                log.exception(
                    "a memory guard callback failed",
                    extra={
                        "statekeep": {
                            "event": "state.memory_callback_failed",
                            "callback": getattr(callback, "__qualname__", repr(callback)),
                            "memory_event": event.name,
                            "error_type": type(exc).__name__,
                            "error": str(exc),
                        }
                    },
                )
        buses = {id(s._bus): s._bus for s in states if s._bus is not None}
        for bus in buses.values():
            bus.dispatch([event])

    def after_fork(self) -> None:
        """In a forked child: the parent's thread is not here; one starts
        again for the states the child has (or opens)."""
        self._lock = threading.Lock()
        self._thread = None
        if not self._stop.is_set() and len(self.states):
            with self._lock:
                self._start()

    def close(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()


_GUARD: MemoryGuard | None = None
_GUARD_LOCK = threading.Lock()


def memory_guard(**options: Any) -> MemoryGuard:
    """The process's memory guard; with options, a new one replaces it
    (watermark= bytes, interval=, cold_after=, pressure_cold_after=, read=)."""
    global _GUARD
    with _GUARD_LOCK:
        if options or _GUARD is None:
            _check(options)
            old, _GUARD = _GUARD, MemoryGuard(**options)
            if old is not None:
                old.close()
                for state in list(old.states):
                    _GUARD.watch(state)
        return _GUARD


def _after_fork_in_child() -> None:
    global _GUARD_LOCK
    _GUARD_LOCK = threading.Lock()  # another thread may have held it at the fork
    if _GUARD is not None:
        _GUARD.after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _check(options: dict[str, Any]) -> None:
    known = {"watermark", "interval", "cold_after", "pressure_cold_after", "read"}
    for name, value in options.items():
        if name not in known:
            raise ConfigurationError(
                f"memory_guard() has no option {name!r}; "
                f"its options are: {', '.join(sorted(known))}"
            )
        if name == "read":
            if not callable(value):
                raise ConfigurationError(f"read must be a function giving bytes, not {value!r}")
        elif name == "watermark":
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or value < 0
            ):
                raise ConfigurationError(f"watermark must be bytes >= 0 or None, not {value!r}")
        elif (value is not None or name != "cold_after") and not is_seconds(value):
            raise ConfigurationError(f"{name} must be seconds >= 0, not {value!r}")
