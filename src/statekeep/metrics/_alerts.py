"""Alerts: thresholds with hysteresis over what a registry reads.

A rule reads a value per subject (a durable subscription, or "" for the
store) from a snapshot. It raises once the value has stayed above `above`
for `for_seconds`, and resolves once it has stayed at or below
`clear_below` (by default `above`) for as long: a value wobbling around the
threshold neither floods nor flaps. Each raise and resolve goes to
`on_change` (the store makes it an AlertRaised / AlertResolved event on its
bus, and a log record).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..errors import ConfigurationError
from ._snapshot import Snapshot

log = logging.getLogger("statekeep.metrics")

Read = Callable[[Snapshot], Mapping[str, float]]


@dataclass(frozen=True)
class AlertRule:
    """A threshold on a value read from the store's metrics."""

    name: str
    description: str  # what it means, with {value} and {threshold} to fill in
    read: Read = field(repr=False)
    above: float
    clear_below: float | None = None  # resolve at or below it (default: above)
    for_seconds: float = 0.0  # how long the value must hold before a change
    severity: str = "warning"  # warning | critical
    reads: tuple[str, ...] = ()  # the metric families read needs

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigurationError(f"an alert needs a name, not {self.name!r}")
        for what in ("above", "for_seconds", "clear_below"):
            value = getattr(self, what)
            if what == "clear_below" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
                raise ConfigurationError(f"alert {self.name!r}: {what} is a number, not {value!r}")
        if not isinstance(self.description, str):
            raise ConfigurationError(f"alert {self.name!r}: description is a str")
        try:
            self.description.format(value="1", threshold="1")
        except (KeyError, IndexError, ValueError) as error:
            raise ConfigurationError(
                f"alert {self.name!r}: the description may name {{value}} and {{threshold}} "
                f"only ({error!r})"
            ) from error
        if isinstance(self.reads, str) or not all(isinstance(r, str) for r in self.reads):
            raise ConfigurationError(
                f"alert {self.name!r}: reads= is a tuple of metric names, not {self.reads!r}"
            )
        if self.for_seconds < 0:
            raise ConfigurationError(f"alert {self.name!r}: for_seconds is >= 0")
        if self.clear_below is not None and not self.clear_below <= self.above:
            raise ConfigurationError(
                f"alert {self.name!r}: clear_below ({self.clear_below}) is at most above "
                f"({self.above}), or the alert could never resolve"
            )
        if self.severity not in ("warning", "critical"):
            raise ConfigurationError(f"alert {self.name!r}: severity is warning or critical")
        if not callable(self.read):
            raise ConfigurationError(f"alert {self.name!r}: read is a callable")

    @property
    def clear(self) -> float:
        return self.above if self.clear_below is None else self.clear_below


@dataclass(frozen=True)
class Firing:
    """An alert that is raised (or was, in an AlertResolved)."""

    alert: str
    subject: str
    value: float
    threshold: float
    severity: str
    since: datetime
    message: str


@dataclass
class _Track:
    raised: Firing | None = None
    crossing_since: float | None = None  # when the value first crossed the other way


class Alerts:
    """The rules of one store and where each subject stands."""

    def __init__(self, rules: Iterable[AlertRule], on_change: Callable[[bool, Firing], None]):
        self.rules = list(rules)
        names = [r.name for r in self.rules]
        if len(set(names)) != len(names):
            raise ConfigurationError(f"alerts have one name each, not {names}")
        self._on_change = on_change
        self._tracks: dict[tuple[str, str], _Track] = {}
        self._lock = threading.Lock()

    @property
    def reads(self) -> set[str]:
        return {name for rule in self.rules for name in rule.reads}

    @property
    def active(self) -> list[Firing]:
        with self._lock:
            return [t.raised for t in self._tracks.values() if t.raised is not None]

    def evaluate(self, snapshot: Snapshot, now: float) -> list[tuple[bool, Firing]]:
        """Moves each subject's track; returns (and reports) what changed.

        The reads run outside the lock (a read may call the store, which reads
        its alerts); a read that raises or gives something else than {subject:
        number} is logged and leaves its rule where it was, the others go on."""
        read = [(rule, _values(rule, snapshot)) for rule in self.rules]
        changes: list[tuple[bool, Firing]] = []
        with self._lock:
            for rule, values in read:
                if values is None:
                    continue
                for (name, subject), track in self._tracks.items():
                    if name == rule.name and subject not in values and track.raised:
                        values[subject] = 0.0  # gone (a subscription retired): it clears
                for subject, value in values.items():
                    change = self._step(rule, subject, value, now)
                    if change is not None:
                        changes.append(change)
        for change in changes:
            self._on_change(*change)
        return changes

    def relock(self) -> None:
        """In a forked child: a lock another thread held at the fork stays held."""
        self._lock = threading.Lock()

    def _step(
        self, rule: AlertRule, subject: str, value: float, now: float
    ) -> tuple[bool, Firing] | None:
        track = self._tracks.setdefault((rule.name, subject), _Track())
        crossed = value > rule.above if track.raised is None else value <= rule.clear
        if not crossed:
            track.crossing_since = None
            return None
        if track.crossing_since is None:
            track.crossing_since = now
        if now - track.crossing_since < rule.for_seconds:
            return None
        track.crossing_since = None
        if track.raised is None:
            firing = Firing(
                rule.name,
                subject,
                value,
                rule.above,
                rule.severity,
                datetime.now(UTC),
                _message(rule, subject, value, rule.above),
            )
            track.raised = firing
            return True, firing
        raised, track.raised = track.raised, None
        resolved = Firing(
            rule.name,
            subject,
            value,
            rule.clear,
            rule.severity,
            raised.since,
            _message(rule, subject, value, rule.clear),
        )
        return False, resolved


def _values(rule: AlertRule, snapshot: Snapshot) -> dict[str, float] | None:
    try:
        found = rule.read(snapshot)
        values = {}
        for subject, value in dict(found).items():
            if not isinstance(subject, str):
                raise TypeError(f"a subject is a str, not {subject!r}")
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"a value is a number, not {value!r}")
            if not math.isnan(value):  # no reading: the rule stays where it is
                values[subject] = float(value)
        return values
    except Exception as error:
        log.error(
            "statekeep alert %s: its read failed: %s",
            rule.name,
            error,
            exc_info=error,
            extra={
                "statekeep": {
                    "event": "metrics.alert_read_failed",
                    "alert": rule.name,
                    "error_type": type(error).__name__,
                    "error": str(error),
                }
            },
        )
        return None


def _message(rule: AlertRule, subject: str, value: float, threshold: float) -> str:
    text = rule.description.format(value=_short(value), threshold=_short(threshold))
    return f"{subject}: {text}" if subject else text


def _short(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:.3g}"
