"""A store's metrics: its registry, the timers of its calls, the gauges it
reads from its parts (write-behind, bus, durable subscriptions, app
states), its alerts, and what its advice is drawn from.

The hot paths keep what they record into (a Timer's record per call, looked
up by index) and pay two clock reads and a list append (the metrics thread
counts the values into buckets each second); everything kept elsewhere
(write-behind's Stats, the bus's counters) is read when a snapshot is taken,
never on the way. The process's metrics thread (statekeep.metrics' ticker)
closes each second and evaluates the alerts; an alert raised or resolved is
an AlertRaised / AlertResolved event on the store's bus and a log record.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from ._calls import OPERATIONS
from .backends.base import Filter
from .errors import ConfigurationError, ConflictError, NotFoundError
from .events import AlertRaised, AlertResolved, Bus, Event
from .metrics import (
    TICKER,
    Advice,
    AlertRule,
    Alerts,
    Counter,
    Firing,
    Gauge,
    Patterns,
    Registry,
    Snapshot,
    Timer,
    Windowed,
    advise,
    default_alerts,
)
from .metrics import names as n

log = logging.getLogger("statekeep.metrics")
R = TypeVar("R")

_LAG_CAP = 10_000  # outbox lag is counted up to this many events
_SUBSCRIPTIONS_EVERY = 5.0  # seconds between reads of the checkpoints


class Meter:
    """Everything a store measures; `enabled=False` keeps only the registry
    (empty) and records nothing."""

    def __init__(self, *, enabled: bool, alerts: Sequence[AlertRule] | None) -> None:
        self.enabled = enabled
        self.registry = registry = Registry()
        self.timers: dict[str, Timer] = {}
        # what a store's @counted calls record into, by OPERATIONS' order (None: off)
        self.records: tuple[Callable[[int], None] | None, ...] = (None,) * len(OPERATIONS)
        self.patterns = Patterns()
        self._failures = Windowed(60)
        self._finds: dict[tuple[str, str], Timer] = {}
        self._moves: dict[tuple[str, str], Counter] = {}
        self._publish: Callable[[Event], None] | None = None
        self._subscriptions: Callable[[], dict[str, int]] | None = None
        self._lag: Callable[[int], int] | None = None
        self._subscriptions_read = 0.0
        self._positions: dict[str, tuple[int, float]] = {}
        rules = default_alerts() if alerts is None else list(alerts)
        self.alerts = Alerts(rules if enabled else [], self._changed)
        if not enabled:
            return
        for operation in OPERATIONS:
            self.timers[operation] = registry.timer(
                n.OPERATION, "Time a store call takes, by operation", operation=operation
            )
        self.records = tuple(self.timers[operation].record for operation in OPERATIONS)
        registry.gauge(
            n.ERROR_RATIO, "Calls that failed, of all, in the last minute", read=self._error_ratio
        )
        registry.gauge(n.ALERTS_ACTIVE, "Alerts raised now", read=lambda: len(self.alerts.active))
        self._commits = registry.counter(n.TRANSACTIONS, "Transaction blocks", outcome="commit")
        self._rollbacks = registry.counter(n.TRANSACTIONS, "Transaction blocks", outcome="rollback")
        TICKER.add(self)

    # -- recorded on the way ---------------------------------------------------
    def failed(self, operation: str, error: BaseException) -> None:
        """A call that raised: counted by its error; all but NotFoundError and
        ConflictError (answers, not faults) count towards the error ratio."""
        self.registry.counter(
            n.FAILURES,
            "Store calls that raised, by operation and error",
            operation=operation,
            error=type(error).__name__,
        ).inc()
        if not isinstance(error, (NotFoundError, ConflictError)):
            self._failures.record(1)
        if isinstance(error, ConflictError):
            self.patterns.conflict(operation)

    def find(self, collection: str, filters: Iterable[Filter]) -> Timer:
        """The timer of a find on collection: index "yes" when a condition is
        on a column (id, version, an indexed field), "no" when none is, "all"
        without conditions. An unindexed one is noted for advice."""
        filters = tuple(filters)
        unindexed = tuple(sorted({f.field.name for f in filters if not f.field.column}))
        indexed = any(f.field.column for f in filters)
        index = "yes" if indexed else "no" if unindexed else "all"
        key = (collection, index)
        timer = self._finds.get(key)
        if timer is None:
            timer = self._finds[key] = self.registry.timer(
                n.FIND,
                "Time a find spends reading, by collection and whether an index serves it",
                collection=collection,
                index=index,
            )
        if index == "no":
            self.patterns.unindexed(collection, unindexed)
        return timer

    def saved_many(self, entities: int, nanoseconds: int) -> None:
        if not self.enabled or not entities:
            return
        self.registry.histogram(
            n.SAVE_MANY_ENTITIES, "Entities a save_many call stores", unit="entities"
        ).record(entities)
        self.registry.timer(n.SAVE_MANY_ENTITY, "A save_many call's time by entity").record(
            nanoseconds // entities
        )

    def transaction(self, committed: bool) -> None:
        if self.enabled:
            (self._commits if committed else self._rollbacks).inc()

    def transitioned(self, machine: str, event: str, moved: int = 1) -> None:
        if self.enabled and moved:
            counter = self._moves.get((machine, event))
            if counter is None:
                counter = self._moves[machine, event] = self.registry.counter(
                    n.TRANSITIONS,
                    "State machine moves stored, by machine and event",
                    machine=machine,
                    event=event,
                )
            counter.inc(moved)

    # -- read from the store's parts ---------------------------------------------
    def watch_bus(self, bus: Bus) -> None:
        if not self.enabled:
            return
        self.registry.counter(
            n.DELIVERED, "Events handed to in-process handlers", read=lambda: bus.stats.delivered
        )
        self.registry.counter(
            n.HANDLER_FAILURES,
            "In-process event handlers that raised",
            read=lambda: bus.stats.failed,
        )
        bus.timer_of = self._handler_timer

    def _handler_timer(self, handler: Any) -> Timer:
        name = getattr(handler, "__qualname__", None) or type(handler).__qualname__
        module = getattr(handler, "__module__", "") or ""
        return self.registry.timer(
            n.HANDLER,
            "Time a sync event handler takes on the committing thread",
            handler=f"{module}.{name}" if module else name,
        )

    def watch_writebehind(self, engine: Callable[[], Any], max_pending: int) -> None:
        """Gauges and counters read from write-behind's Stats once per snapshot,
        from the store's engine of the moment (none yet, or none in a forked
        child: zeros; a forked child never reads its parent's engine)."""
        if not self.enabled:
            return
        registry = self.registry
        read: dict[str, float] = {}
        by_priority: dict[str, Gauge] = {}

        def refresh() -> None:
            running = engine()
            if running is None:
                read.clear()
                for gauge in by_priority.values():
                    gauge.set(0)
                return
            s = running.stats()
            read.update(
                pending=s.total_pending,
                oldest=s.oldest_pending_age,
                stored=s.stored,
                retried=s.retried,
                shed=s.shed,
                dead=s.dead_lettered,
                letters=running.dead_letter_count(),
            )
            for priority, count in s.pending.items():
                if priority not in by_priority:
                    by_priority[priority] = registry.gauge(
                        n.PENDING, "Writes waiting, by priority", priority=priority.lower()
                    )
                by_priority[priority].set(count)

        registry.before_read(refresh)
        registry.gauge(
            n.PENDING_RATIO,
            "Writes waiting, of max_pending",
            read=lambda: read.get("pending", 0) / max_pending,
        )
        registry.gauge(
            n.OLDEST,
            "Age of the oldest waiting write",
            unit="seconds",
            read=lambda: read.get("oldest", 0.0) if read.get("pending") else 0.0,
        )
        registry.gauge(
            n.DEAD_LETTERS, "Dead letters waiting now", read=lambda: read.get("letters", 0)
        )
        registry.counter(
            n.STORED, "Writes stored by write-behind", read=lambda: read.get("stored", 0)
        )
        registry.counter(
            n.RETRIED, "Write-behind batches retried", read=lambda: read.get("retried", 0)
        )
        registry.counter(n.SHED, "LOW writes shed when full", read=lambda: read.get("shed", 0))
        registry.counter(
            n.DEAD_LETTERED, "Writes that failed for good", read=lambda: read.get("dead", 0)
        )

    def batch_timers(self) -> Callable[[str, int, int], None] | None:
        """What write-behind calls after each batch: (priority, rows, nanoseconds)."""
        if not self.enabled:
            return None
        registry = self.registry

        def batched(priority: str, rows: int, nanoseconds: int) -> None:
            registry.histogram(
                n.BATCH_ROWS, "Rows a write-behind batch stores", unit="rows", priority=priority
            ).record(rows)
            registry.timer(
                n.BATCH_SECONDS, "Time a write-behind batch takes to store", priority=priority
            ).record(nanoseconds)

        return batched

    def watch_subscriptions(
        self, positions: Callable[[], dict[str, int]], lag: Callable[[int], int]
    ) -> None:
        """Outbox lag and idle time of each durable subscription (read every
        few seconds: they are queries)."""
        if not self.enabled:
            return
        self._subscriptions, self._lag = positions, lag
        self.registry.before_read(self._read_subscriptions)

    def _read_subscriptions(self) -> None:
        now = time.monotonic()
        if self._subscriptions is None or self._lag is None:
            return
        if now - self._subscriptions_read < _SUBSCRIPTIONS_EVERY:
            return
        self._subscriptions_read = now
        try:
            positions = self._subscriptions()
            lags = {name: self._lag(position) for name, position in positions.items()}
        except Exception:  # noqa: BLE001 - closing, or the database away: next time
            return
        for gone in set(self._positions) - set(positions):  # unsubscribed: nothing waits
            del self._positions[gone]
            self._subscription_gauges(gone, 0, 0.0)
        for name, position in positions.items():
            lag = lags[name]
            seen = self._positions.get(name)
            if seen is None or seen[0] != position or not lag:
                self._positions[name] = (position, now)
                idle = 0.0
            else:
                idle = now - seen[1]
            self._subscription_gauges(name, lag, idle)

    def _subscription_gauges(self, name: str, lag: int, idle: float) -> None:
        self.registry.gauge(
            n.OUTBOX_LAG, "Outbox events waiting for a durable subscription", subscription=name
        ).set(lag)
        self.registry.gauge(
            n.SUBSCRIPTION_IDLE,
            "Seconds a durable subscription has been behind without advancing",
            unit="seconds",
            subscription=name,
        ).set(idle)

    def watch_states(self, states: Callable[[], Iterable[Any]]) -> None:
        if not self.enabled:
            return
        registry = self.registry

        def refresh() -> None:
            for state in states():
                stats = state.stats()
                registry.counter(
                    n.STATE_UPDATES, "App state updates applied", state=stats.name
                ).value = stats.counters.updates_applied
                registry.gauge(
                    n.STATE_SUBSCRIPTIONS, "Subscriptions to an app state", state=stats.name
                ).set(stats.subscriptions)

        registry.before_read(refresh)

    # -- ticking, reading ----------------------------------------------------------
    def tick(self, now: float) -> None:
        # the registry turns its own histograms (it is ticked itself)
        self.patterns.tick(now)
        self._failures.turn(now)
        rules = self.alerts.rules
        if rules:  # what the rules read (everything, for a rule that does not say)
            names = None if any(not rule.reads for rule in rules) else self.alerts.reads
            self.alerts.evaluate(self.registry.snapshot(names=names), now)

    def snapshot(self) -> Snapshot:
        """Everything now (the checkpoints read afresh, which ticks do every few seconds)."""
        self._subscriptions_read = 0.0
        return self.registry.snapshot()

    def advice(self) -> list[Advice]:
        return advise(self.registry.snapshot(), self.patterns)

    def publish_to(self, publish: Callable[[Event], None]) -> None:
        self._publish = publish

    def _changed(self, raised: bool, firing: Firing) -> None:
        if raised:
            log.warning(
                "statekeep alert %s raised: %s",
                firing.alert,
                firing.message,
                extra={
                    "statekeep": {
                        "event": "metrics.alert_raised",
                        "alert": firing.alert,
                        "subject": firing.subject,
                        "value": firing.value,
                        "threshold": firing.threshold,
                        "severity": firing.severity,
                        "since": firing.since.isoformat(),
                        "message": firing.message,
                    }
                },
            )
        else:
            log.info(
                "statekeep alert %s resolved: %s",
                firing.alert,
                firing.message,
                extra={
                    "statekeep": {
                        "event": "metrics.alert_resolved",
                        "alert": firing.alert,
                        "subject": firing.subject,
                        "value": firing.value,
                        "threshold": firing.threshold,
                        "severity": firing.severity,
                        "since": firing.since.isoformat(),
                        "message": firing.message,
                    }
                },
            )
        fields = {
            "alert": firing.alert,
            "subject": firing.subject,
            "value": firing.value,
            "threshold": firing.threshold,
            "severity": firing.severity,
            "message": firing.message,
        }
        event: Event = (
            AlertRaised.made("statekeep", firing.subject, 0, **fields)
            if raised
            else AlertResolved.made(
                "statekeep", firing.subject, 0, **fields, raised_at=firing.since
            )
        )
        if self._publish is not None:
            self._publish(event)

    def _error_ratio(self) -> float:
        failed = self._failures.count_in(60)
        timers = [*self.timers.values(), *self._finds.values()]
        calls = failed + sum(timer.count_in(60) for timer in timers)
        return failed / calls if calls >= 20 else 0.0

    def forked(self) -> None:
        """In a forked child (the store's _after_fork): fresh locks, and the
        patterns and failures of the parent forgotten (its registry is reset
        by statekeep.metrics' own fork handler)."""
        self.alerts.relock()
        self.patterns.forked()
        self._failures.forked()

    def close(self) -> None:
        """No more ticks (what was recorded stays readable)."""
        TICKER.remove(self)
        TICKER.remove(self.registry)


def check_alerts(alerts: Any) -> Sequence[AlertRule] | None:
    """alerts=: None (the defaults) or AlertRules (ConfigurationError otherwise)."""
    if alerts is None:
        return None
    if isinstance(alerts, (str, bytes, AlertRule)) or not isinstance(alerts, Iterable):
        raise ConfigurationError(
            f"alerts= takes a list of statekeep.metrics.AlertRule (or None), not {alerts!r}"
        )
    rules = list(alerts)
    for rule in rules:
        if not isinstance(rule, AlertRule):
            raise ConfigurationError(f"alerts= takes AlertRule objects, not {rule!r}")
    return rules


def call_timed(store: Any, index: int, call: Callable[..., R], *args: Any) -> R:
    """call(*args) timed as the store's OPERATIONS[index] and counted by its
    error if it raises, as @counted does (for a call not made through it:
    enqueue's hot path)."""
    record = store._records[index]
    if record is None:
        return call(*args)
    start = time.perf_counter_ns()
    try:
        result = call(*args)
    except BaseException as error:
        store._core.meter.failed(OPERATIONS[index], error)
        raise
    record(time.perf_counter_ns() - start)
    return result


@contextlib.contextmanager
def timed(store: Any, operation: str, passing: type[BaseException] | None = None) -> Iterator[None]:
    """Times a block as the store's `operation` (a call the AsyncStore serves
    without the Store's @counted method); errors are counted as its failures,
    but for `passing` (a fall-back, not a failure)."""
    record = store._records[OPERATIONS.index(operation)]
    if record is None:
        yield
        return
    start = time.perf_counter_ns()
    try:
        yield
    except BaseException as error:
        if passing is None or not isinstance(error, passing):
            store._core.meter.failed(operation, error)
        raise
    record(time.perf_counter_ns() - start)


def counted_moves(core: Any) -> Callable[[str, str, int], None]:
    """What counts a store's machine moves: once the block they are in
    commits (a move rolled back is not one)."""
    meter = core.meter

    def moved(machine: str, event: str, moves: int) -> None:
        if meter.enabled and moves:
            core.after_commit(functools.partial(meter.transitioned, machine, event, moves))

    return moved


def watch(meter: Meter, store: Any, outbox: bool) -> None:
    """Points a store's meter at its parts: the bus, the durable
    subscriptions (with an outbox), the app states."""
    core = store._core
    bus, calls, backend = core.bus, core.calls, core.backend
    meter.watch_bus(bus)
    meter.watch_writebehind(lambda: store._engine, store._writebehind_options.max_pending)
    meter.publish_to(lambda event: bus.dispatch([event]))
    meter.watch_states(store._states.all)
    if not outbox:
        return

    def positions() -> dict[str, int]:
        with calls:  # StoreClosedError once closing: the meter skips the read
            found: dict[str, int] = store._durable.positions()
            return found

    def lag(position: int) -> int:
        with calls:
            return len(backend.read_events(position, _LAG_CAP))

    meter.watch_subscriptions(positions, lag)
