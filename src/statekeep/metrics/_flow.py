"""statekeep.flow's parts in the process-wide registry (`default()`).

A part made anywhere (a Throttle, a Retry, a Batcher, a Pipeline's stages)
is watched, weakly, from when it is made: at each snapshot of the default
registry its `stats()` are read into three families, by part kind, name and
figure. Parts of one kind and name add up (two Throttles both called
"api" are one series); timings keep the largest p50, p99 and max.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping
from typing import Any, Protocol

from . import _names as n
from ._registry import Registry, default


class Part(Protocol):
    def stats(self) -> Any: ...  # a FlowStats, or a Pipeline's {stage: FlowStats}


_PARTS: weakref.WeakSet[Any] = weakref.WeakSet()
_LOCK = threading.Lock()
_READING: list[Registry] = []


def watch_flow(part: Part) -> None:
    """Reports a flow part into the default registry (called as it is made)."""
    with _LOCK:
        _PARTS.add(part)
        if not _READING:
            registry = default()
            registry.before_read(_read)
            _READING.append(registry)


def unwatch_flow(part: Part) -> None:
    """No longer reports a part (a throttle's per-key child: its figures are its own)."""
    with _LOCK:
        _PARTS.discard(part)


def _read() -> None:
    registry = _READING[0]
    counts: dict[tuple[str, str, str], float] = {}
    gauges: dict[tuple[str, str, str], float] = {}
    timings: dict[tuple[str, str, str, str], float] = {}
    with _LOCK:
        parts = list(_PARTS)
    for part in parts:
        found = part.stats()
        for stats in found.values() if isinstance(found, Mapping) else (found,):
            for figure, value in stats.counts.items():
                key = (stats.kind, stats.name, figure)
                counts[key] = counts.get(key, 0) + value
            for figure, value in stats.gauges.items():
                key = (stats.kind, stats.name, figure)
                gauges[key] = gauges.get(key, 0.0) + float(value)
            for figure, summary in stats.timings.items():
                for stat in ("p50", "p99", "max"):
                    key4 = (stats.kind, stats.name, figure, stat)
                    timings[key4] = max(timings.get(key4, 0.0), getattr(summary, stat))
    for (kind, name, figure), value in counts.items():
        registry.counter(
            n.FLOW_EVENTS, "What statekeep.flow parts counted", part=kind, name=name, figure=figure
        ).value = value
    for (kind, name, figure), value in gauges.items():
        registry.gauge(
            n.FLOW_GAUGE,
            "What is true of statekeep.flow parts now",
            part=kind,
            name=name,
            figure=figure,
        ).set(value)
    for (kind, name, figure, stat), value in timings.items():
        registry.gauge(
            n.FLOW_TIMING,
            "Timings of statekeep.flow parts",
            unit="seconds",
            part=kind,
            name=name,
            figure=figure,
            stat=stat,
        ).set(value)
