"""The alerts a store has unless told otherwise (docs/metrics.md lists them)."""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import ConfigurationError
from . import _names as n
from ._alerts import AlertRule, Read
from ._snapshot import Snapshot


def _one(name: str) -> Read:
    def read(snapshot: Snapshot) -> Mapping[str, float]:
        found = snapshot.select(name)
        return {"": sum(s.value for s in found)} if found else {}

    return read


def _by_subscription(name: str) -> Read:
    def read(snapshot: Snapshot) -> Mapping[str, float]:
        return {s.labels.get("subscription", ""): s.value for s in snapshot.select(name)}

    return read


def _p99(operation: str) -> Read:
    def read(snapshot: Snapshot) -> Mapping[str, float]:
        series = snapshot.get(n.OPERATION, operation=operation)
        if series is None:
            return {}
        window = series.window(10)
        return {"": window.p99 if window.count else 0.0}

    return read


def default_alerts(
    *,
    pending_ratio: float = 0.9,
    save_p99: float = 0.5,
    save_p99_for: float = 30.0,
    outbox_lag: int = 1000,
    idle_subscription: float = 300.0,
    error_ratio: float = 0.05,
) -> list[AlertRule]:
    """The default rules, with their thresholds to change."""
    given = {
        "pending_ratio": pending_ratio,
        "save_p99": save_p99,
        "save_p99_for": save_p99_for,
        "outbox_lag": outbox_lag,
        "idle_subscription": idle_subscription,
        "error_ratio": error_ratio,
    }
    for name, value in given.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ConfigurationError(f"default_alerts({name}=...) is a number >= 0, not {value!r}")
    return [
        AlertRule(
            "writebehind_pending",
            "write-behind is {value} full (raised above {threshold})",
            _one(n.PENDING_RATIO),
            above=pending_ratio,
            clear_below=min(pending_ratio, 0.7),
            severity="critical",
            reads=(n.PENDING_RATIO,),
        ),
        AlertRule(
            "save_latency",
            "save() p99 over 10 s is {value} s (threshold {threshold} s)",
            _p99("save"),
            above=save_p99,
            for_seconds=save_p99_for,
            reads=(n.OPERATION,),
        ),
        AlertRule(
            "dead_letters",
            "{value} writes are in the dead-letter list (store.writebehind.dead_letters())",
            _one(n.DEAD_LETTERS),
            above=0,
            severity="critical",
            reads=(n.DEAD_LETTERS,),
        ),
        AlertRule(
            "outbox_lag",
            "{value} events wait for this durable subscription (threshold {threshold})",
            _by_subscription(n.OUTBOX_LAG),
            above=outbox_lag,
            clear_below=outbox_lag / 2,
            reads=(n.OUTBOX_LAG,),
        ),
        AlertRule(
            "subscription_idle",
            "this durable subscription is behind and has not advanced for {value} s",
            _by_subscription(n.SUBSCRIPTION_IDLE),
            above=idle_subscription,
            clear_below=0,
            reads=(n.SUBSCRIPTION_IDLE,),
        ),
        AlertRule(
            "error_ratio",
            "{value} of the store's calls failed in the last minute (threshold {threshold})",
            _one(n.ERROR_RATIO),
            above=error_ratio,
            for_seconds=10.0,
            reads=(n.ERROR_RATIO,),
        ),
    ]
