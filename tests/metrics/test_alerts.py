"""Alerts: thresholds with hysteresis, each default rule raised and resolved
on a scripted workload, and a store's alerts as events on its bus."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

import pytest

import statekeep
from statekeep.errors import ConfigurationError
from statekeep.metrics import TICKER, AlertRule, Alerts, Firing, Registry, default_alerts
from statekeep.metrics import names as n


class Clock:
    def __init__(self) -> None:
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now


class Chore(statekeep.Entity, collection="alert_chores"):
    title: str = ""


def changes_of(alerts: list[tuple[bool, Firing]]) -> list[tuple[bool, str]]:
    return [(raised, firing.alert) for raised, firing in alerts]


def rule(values: dict[str, float], **options: object) -> AlertRule:
    def read(snapshot: object) -> Mapping[str, float]:
        return dict(values)

    return AlertRule("test", "value {value} over {threshold}", read, **options)  # type: ignore[arg-type]


def run(alerts: Alerts, registry: Registry, at: float) -> list[tuple[bool, str]]:
    return changes_of(alerts.evaluate(registry.snapshot(), at))


def test_an_alert_raises_only_after_holding_for_its_time_and_resolves_the_same_way() -> None:
    values = {"": 0.0}
    seen: list[tuple[bool, Firing]] = []
    alerts = Alerts(
        [rule(values, above=10, clear_below=5, for_seconds=3)], lambda *c: seen.append(c)
    )
    registry = Registry()
    assert run(alerts, registry, 0) == []
    values[""] = 11
    assert run(alerts, registry, 1) == [] and run(alerts, registry, 3) == []
    values[""] = 9  # back under before it held for 3 s: nothing, and the clock starts again
    assert run(alerts, registry, 3.5) == []
    values[""] = 12
    assert run(alerts, registry, 4) == [] and run(alerts, registry, 6.9) == []
    assert run(alerts, registry, 7) == [(True, "test")]
    assert [f.value for f in alerts.active] == [12]
    values[""] = 7  # under the raise threshold but over clear_below: still raised
    assert run(alerts, registry, 20) == [] and len(alerts.active) == 1
    values[""] = 4
    assert run(alerts, registry, 21) == [] and run(alerts, registry, 23.9) == []
    assert run(alerts, registry, 24) == [(False, "test")]
    assert alerts.active == [] and [raised for raised, _ in seen] == [True, False]
    assert seen[1][1].since == seen[0][1].since  # a resolution tells when it was raised
    assert seen[0][1].message == "value 12 over 10"


def test_a_value_wobbling_around_the_threshold_does_not_flap() -> None:
    values = {"": 0.0}
    alerts = Alerts([rule(values, above=0.9, clear_below=0.7)], lambda *c: None)
    registry = Registry()
    changes = []
    for step, value in enumerate([0.95, 0.89, 0.91, 0.88, 0.92, 0.75, 0.95, 0.69, 0.8, 0.85]):
        values[""] = value
        changes += run(alerts, registry, step)
    assert changes == [(True, "test"), (False, "test")]


def test_subjects_are_separate_and_one_that_goes_away_resolves() -> None:
    values = {"a": 20.0, "b": 1.0}
    alerts = Alerts([rule(values, above=10)], lambda *c: None)
    registry = Registry()
    assert run(alerts, registry, 0) == [(True, "test")]
    assert [f.subject for f in alerts.active] == ["a"]
    del values["a"]  # a subscription retired
    assert run(alerts, registry, 1) == [(False, "test")]


def test_bad_rules_are_refused() -> None:
    def read(snapshot: object) -> dict[str, float]:
        return {}

    for bad in (
        {"name": "", "above": 1},
        {"name": "x", "above": "1"},
        {"name": "x", "above": float("nan")},
        {"name": "x", "above": 1, "clear_below": 2},
        {"name": "x", "above": 1, "for_seconds": -1},
        {"name": "x", "above": 1, "severity": "loud"},
    ):
        with pytest.raises(ConfigurationError):
            AlertRule(description="d", read=read, **bad)
    with pytest.raises(ConfigurationError, match="callable"):
        AlertRule("x", "d", "not callable", above=1)  # type: ignore[arg-type]
    twice = AlertRule("x", "d", read, above=1)
    with pytest.raises(ConfigurationError, match="one name each"):
        Alerts([twice, twice], lambda *c: None)


def test_save_latency_raises_after_holding_and_resolves_once_saves_are_fast_again() -> None:
    clock = Clock()
    registry = Registry(clock=clock)
    save = registry.timer(n.OPERATION, operation="save")
    rules = [r for r in default_alerts(save_p99=0.1, save_p99_for=30) if r.name == "save_latency"]
    alerts = Alerts(rules, lambda *c: None)
    changes = []
    for second in range(100):
        clock.now += 1
        slow = 20 <= second < 60  # 40 s of slow saves
        for _ in range(20):
            save.observe(0.25 if slow else 0.002)
        changes += [(second, c) for c in run(alerts, registry, clock.now)]
    # raised 30 s after the p99 went over; resolved 30 s after the slow second left the 10 s window
    assert changes == [(50, (True, "save_latency")), (99, (False, "save_latency"))]


def test_the_error_ratio_needs_enough_calls_and_holds_for_10_s() -> None:
    clock = Clock()
    registry = Registry(clock=clock)
    ratio = {"value": 0.0}
    registry.gauge(n.ERROR_RATIO, read=lambda: ratio["value"])
    alerts = Alerts([r for r in default_alerts() if r.name == "error_ratio"], lambda *c: None)
    changes = []
    for second, value in enumerate([0.0] * 5 + [0.2] * 15 + [0.01] * 15):
        ratio["value"] = value
        changes += [(second, c) for c in run(alerts, registry, float(second))]
    assert changes == [(15, (True, "error_ratio")), (30, (False, "error_ratio"))]


def ticked(store: statekeep.Store) -> list[tuple[bool, Firing]]:
    """Evaluates the store's alerts now (the metrics thread does it every second)."""
    meter = store._core.meter
    meter.registry.turn()
    snapshot = meter.registry.snapshot(names=meter.alerts.reads, windows=(10,))
    return meter.alerts.evaluate(snapshot, time.monotonic())


def test_a_full_write_behind_queue_raises_an_event_and_draining_it_resolves(tmp_path: Path) -> None:
    store = statekeep.open(
        f"sqlite:///{tmp_path / 'a.db'}",
        writebehind={"max_pending": 10, "window": 60.0, "durability": "journal"},
    )
    TICKER.remove(store._core.meter)  # this test ticks it itself
    events: list[statekeep.Event] = []
    store.on(statekeep.AlertRaised, events.append)
    store.on(statekeep.AlertResolved, events.append)
    try:
        for i in range(8):
            store.enqueue(Chore(title=str(i)))
        assert ticked(store) == []  # 80%: not yet
        store.enqueue(Chore(title="9"))
        store.enqueue(Chore(title="10"))
        assert changes_of(ticked(store)) == [(True, "writebehind_pending")]
        assert [f.alert for f in store.alerts()] == ["writebehind_pending"]
        assert store.metrics().value(n.ALERTS_ACTIVE) == 1
        assert store.flush(10)
        assert changes_of(ticked(store)) == [(False, "writebehind_pending")]
        raised, resolved = events
        assert isinstance(raised, statekeep.AlertRaised) and raised.severity == "critical"
        assert raised.value == 1.0 and raised.threshold == 0.9
        assert isinstance(resolved, statekeep.AlertResolved) and resolved.raised_at is not None
        assert store.alerts() == []
    finally:
        store.close()


def test_a_dead_letter_raises_its_alert(tmp_path: Path) -> None:
    with statekeep.open(f"sqlite:///{tmp_path / 'a.db'}") as store:
        TICKER.remove(store._core.meter)
        todo = store.save(Chore(title="a"))
        receipt = store.enqueue(todo, expect_version=7)  # stale: dead-lettered
        with pytest.raises(statekeep.ConflictError):
            receipt.wait_stored(10)
        assert store.writebehind.dead_letters()
        assert changes_of(ticked(store)) == [(True, "dead_letters")]


def test_a_lagging_durable_subscription_raises_outbox_lag(tmp_path: Path) -> None:
    rules = default_alerts(outbox_lag=5)
    with statekeep.open(f"sqlite:///{tmp_path / 'a.db'}", outbox=True, alerts=rules) as store:
        TICKER.remove(store._core.meter)
        store.subscribe("mailer", lambda event: None).stop()  # its consumer is down
        store.save_many([Chore(title=str(i)) for i in range(8)])
        store.metrics()  # reads the checkpoints now (ticks read them every 5 s)
        assert changes_of(ticked(store)) == [(True, "outbox_lag")]
        assert [f.subject for f in store.alerts()] == ["mailer"]
        assert store.metrics().value(n.OUTBOX_LAG, subscription="mailer") == 8


def test_the_metrics_thread_evaluates_alerts_by_itself(tmp_path: Path) -> None:
    rules = default_alerts(save_p99=1e-9, save_p99_for=0)
    with statekeep.open(f"sqlite:///{tmp_path / 'a.db'}", alerts=rules) as store:
        raised: list[statekeep.Event] = []
        store.on(statekeep.AlertRaised, raised.append)
        store.save(Chore(title="a"))
        deadline = time.monotonic() + 5
        while not raised and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [e.alert for e in raised] == ["save_latency"]  # type: ignore[attr-defined]


def test_alerts_can_be_turned_off_or_replaced(tmp_path: Path) -> None:
    with statekeep.open("memory://", alerts=[]) as store:
        assert store._core.meter.alerts.rules == []
    for bad in ("rules", [1], AlertRule("x", "d", lambda s: {}, above=1)):
        with pytest.raises(ConfigurationError, match="alerts="):
            statekeep.open(f"sqlite:///{tmp_path / 'b.db'}", alerts=bad)
    assert not (tmp_path / "b.db").exists()  # nothing was opened
