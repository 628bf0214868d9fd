"""What the dashboard shows, read from a store as one signal tree.

Cheap figures (write-behind) are read every time; the ones that cost queries
or work (rates and latencies, entity counts, machines' states, subscriptions,
advice) at most every so often, and less often when they take long (see
`Every`). Lists the page addresses by element go out `indexed`; `shape` says
how long each is, so the page's rows are rebuilt only when a length changes.
"""

from __future__ import annotations

import collections
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..entity import Entity, entity_classes
from ..errors import ConfigurationError, QueryError, StatekeepError, StoreClosedError
from ..events import Subscription
from ..machines import Transitioned
from ..store import Store
from ._signals import Tree, indexed, plain

SPARK_POINTS = 60  # one a second: the last minute
LETTERS_SHOWN = 20
TRANSITIONS_SHOWN = 10
LISTS = ("letters", "outbox", "counts", "machines", "transitions", "alerts", "advice")


DUE_EVERY = 0.25  # seconds: a figure made due is read again at most this often


@dataclass
class Every:
    """A figure read at most every `seconds`, and never more often than 20 times
    the time its last read took (a count that takes 100 ms is read every 2 s).
    Made due (a transition, for the machines' counts), it is read sooner: after
    DUE_EVERY seconds, or 20 times its time if that is longer."""

    seconds: float
    read: Callable[[], Any]
    value: Any = None
    due: bool = False  # a commit may have changed it: read it at the next frame
    _at: float = -math.inf
    _took: float = 0.0

    def get(self, now: float) -> Any:
        wait = max(DUE_EVERY if self.due else self.seconds, 20 * self._took)
        if now - self._at >= wait:
            self.due = False
            start = time.perf_counter()
            self.value = plain(self.read())  # as signals once a read, not at every frame
            self._took = time.perf_counter() - start
            self._at = now
        return self.value


@dataclass
class _Spark:
    values: collections.deque[float] = field(
        default_factory=lambda: collections.deque(maxlen=SPARK_POINTS)
    )
    at: float = -math.inf

    drawn: str | None = None  # points() since the last value

    def add(self, now: float, value: float) -> None:
        if now - self.at >= 1.0:
            self.values.append(value if math.isfinite(value) else 0.0)
            self.at = now
            self.drawn = None

    def points(self) -> str:
        if self.drawn is None:
            self.drawn = self._points()
        return self.drawn

    def _points(self, width: int = 120, height: int = 30) -> str:
        """The values as an SVG polyline's points, scaled into width x height."""
        if not self.values:
            return ""
        top = max(self.values) or 1.0
        step = width / (SPARK_POINTS - 1)
        start = SPARK_POINTS - len(self.values)
        return " ".join(
            f"{(start + n) * step:.1f},{height - value / top * height:.1f}"
            for n, value in enumerate(self.values)
        )


def classes(given: object, what: str) -> list[type[Entity]]:
    """given as a list of entity classes; ConfigurationError for anything else."""
    if isinstance(given, str | bytes) or not isinstance(given, Iterable):
        raise ConfigurationError(
            f"statekeep.web: {what} must be a list of entity classes, not {given!r}"
        )
    found = list(given)
    for cls in found:
        if not (isinstance(cls, type) and issubclass(cls, Entity) and "__statekeep__" in vars(cls)):
            raise ConfigurationError(
                f"statekeep.web: {what} must be entity classes (statekeep.Entity subclasses "
                f"with a collection), not {cls!r}"
            )
    return found


def entities_of(store_entities: Iterable[type[Entity]] | None) -> list[type[Entity]]:
    """The entity classes the dashboard counts: those given, or every class
    defined so far (not statekeep's own)."""
    if store_entities is not None:
        return classes(store_entities, "entities")
    return [cls for cls in entity_classes() if not cls.__module__.startswith("statekeep.")]


class Board:
    """Reads the dashboard's signal tree from store (on a worker thread)."""

    def __init__(
        self,
        store: Store,
        entities: Sequence[type[Entity]],
        *,
        exposed: frozenset[str] = frozenset(),
        poke: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.exposed = exposed
        self.entities = entities
        self._transitions: collections.deque[Tree] = collections.deque(maxlen=TRANSITIONS_SHOWN)
        self._lock = threading.Lock()
        self._poke = poke
        self._stored = _Spark()
        self._pending = _Spark()
        self._last: tuple[float, int] | None = None
        self._rate = 0.0
        # counts are read at each frame (less often when they take long), not when a
        # commit is seen: following every commit would make each save build an event
        # for the dashboard, doubling its time
        self._counts = Every(0.0, self._read_counts)
        self._machines = Every(0.5, self._read_machines)
        self._outbox = Every(2.0, self._read_outbox)
        self._advice = Every(5.0, self._read_advice)
        # rates and latencies over windows of seconds: a snapshot of every series
        # costs milliseconds, more than all the rest of a frame
        self._figures = Every(1.0, self._read_figures)
        self._subscription: Subscription | None = None

    def start(self) -> None:
        """Follows the store's transitions (the recent ones are shown, the
        machines' counts read soon): the feed's set-up."""
        with self._lock:
            if self._subscription is None:
                self._subscription = self.store.on(Transitioned, self._transitioned)

    def stop(self) -> None:
        """The feed's take-down (and the app's, at shutdown): idempotent."""
        with self._lock:
            found, self._subscription = self._subscription, None
        if found is not None:
            self.store.off(found)

    def _transitioned(self, event: Transitioned) -> None:
        row = {
            "at": time.strftime("%H:%M:%S"),
            "entity": f"{event.collection}/{event.entity_id}"[:80],
            "machine": f"{event.machine}.{event.field}",
            "event": event.event,
            "move": f"{event.source} → {event.target}",
        }
        with self._lock:
            self._transitions.appendleft(row)
        self._machines.due = True
        self._poke()

    # -- the tree --------------------------------------------------------------
    def read(self) -> Tree:
        now = time.monotonic()
        store = self.store
        stats = store.writebehind.stats()
        figures = self._figures.get(now)
        max_pending = store.writebehind.options.max_pending
        total = stats.total_pending
        ratio = total / max_pending if max_pending else 0.0
        if self._last is not None and now > self._last[0]:
            self._rate = (stats.stored - self._last[1]) / (now - self._last[0])
        if self._last is None or now - self._last[0] >= 1.0:
            self._last = (now, stats.stored)
        self._stored.add(now, self._rate)
        self._pending.add(now, total)
        letters = store.writebehind.dead_letters()[:LETTERS_SHOWN]
        with self._lock:
            transitions = list(self._transitions)
        tree: Tree = {
            "pid": os.getpid(),
            "wb": {
                "pending": {p.lower(): n for p, n in sorted(stats.pending.items())},
                "total": total,
                "ratio": round(ratio, 3),
                "percent": f"{ratio:.0%}",
                "health": _health(ratio, stats.database),
                "database": stats.database,
                "inflight": stats.in_flight,
                "stored": stats.stored,
                "retried": stats.retried,
                "dead": stats.dead_lettered,
                "shed": stats.shed,
                "oldest": _finite(round(stats.oldest_pending_age, 3)),
                "error": _last_error(stats.last_error, self.exposed, self.entities),
            },
            "rate": {"stored": round(self._rate, 1), "saves": figures["saves"]},
            "lat": figures["lat"],
            "spark": {"stored": self._stored.points(), "pending": self._pending.points()},
            "letters": indexed(
                _letter(n, letter, self.exposed) for n, letter in enumerate(letters)
            ),
            "outbox": indexed(self._outbox.get(now)),
            "counts": indexed(self._counts.get(now)),
            "machines": indexed(self._machines.get(now)),
            "transitions": indexed(transitions),
            "alerts": plain(
                indexed(
                    {
                        "alert": firing.alert,
                        "subject": firing.subject,
                        "severity": firing.severity,
                        "message": firing.message,
                    }
                    for firing in store.alerts()
                )
            ),
            "advice": indexed(self._advice.get(now)),
        }
        tree["shape"] = {name: len(tree[name]) for name in LISTS}
        tree["shape"]["machines_states"] = [len(m["states"]) for m in tree["machines"].values()]
        # signals as they are: the figures read every so often are made plain when
        # read (Every), the rest has keys of its own and finite numbers (a whole
        # tree made plain at every frame cost most of a frame)
        return tree

    def _read_figures(self) -> Tree:
        """Rates and latencies over the last 10 s."""
        metrics = self.store.metrics()
        operations = "statekeep_operation_seconds"
        return {
            "saves": round(_window(metrics, operations, "rate", operation="save"), 1),
            "lat": {
                "enqueue": _latency(metrics, operations, operation="enqueue"),
                "save": _latency(metrics, operations, operation="save"),
                "batch": _latency(metrics, "statekeep_writebehind_batch_seconds"),
            },
        }

    def _read_counts(self) -> list[Tree]:
        return [
            {"name": cls.__statekeep__.spec.name, "count": _or_unreadable(self.store.count, cls)}
            for cls in self.entities
        ]

    def _read_machines(self) -> list[Tree]:
        found = []
        for cls in self.entities:
            for name, machine in cls.__statekeep_machines__.items():
                counts = self._states(cls, name, machine.states)
                numbers = [(str(getattr(s, "value", s)), counts.get(s, 0)) for s in machine.states]
                top = max((n for _, n in numbers), default=0) or 1
                states = [
                    {"state": state, "count": n, "width": f"{n / top * 100:.0f}%"}
                    for state, n in numbers
                ]
                found.append(
                    {
                        "name": f"{cls.__name__}.{name}",
                        "states": indexed(states),
                        "diagram": machine.to_mermaid(),
                    }
                )
        return found

    def _states(self, cls: type[Entity], field: str, states: Sequence[Any]) -> dict[Any, int]:
        """How many entities are in each state: one grouped query on an indexed
        field, a count a state on another (a scan: read less often, see Every)."""
        try:
            return self.store.count_by(cls, field)
        except QueryError:  # the field is not indexed
            pass
        found = {}
        for state in states:
            try:
                found[state] = self.store.count(cls, **{field: state})
            except StoreClosedError:
                raise
            except StatekeepError:
                found[state] = 0
        return found

    def _read_outbox(self) -> list[Tree]:
        metrics = self.store.metrics()
        return [
            {
                "name": info.name,
                "position": info.position,
                "lag": int(metrics.value("statekeep_outbox_lag_events", subscription=info.name)),
                "active": info.active,
                "stalled": info.stalled,
            }
            for info in self.store.subscriptions()
        ]

    def _read_advice(self) -> list[Tree]:
        return [
            {"title": a.title, "evidence": a.evidence, "change": a.change}
            for a in self.store.advice()
        ]


def _or_unreadable(count: Callable[[type[Entity]], int], cls: type[Entity]) -> int | str:
    """A collection's count; "unreadable" when it cannot be counted (the page goes on)."""
    try:
        return count(cls)
    except StoreClosedError:
        raise
    except StatekeepError:
        return "unreadable"


def _letter(n: int, letter: Any, exposed: frozenset[str]) -> Tree:
    """A dead letter as the page shows it: an error can quote the write's values
    (a unique key's), so its text and the write's body only for an exposed
    collection; else the error's class."""
    shown = letter.collection in exposed
    error = str(letter.error)
    row: Tree = {
        "n": n,
        "collection": letter.collection,
        "id": str(letter.id),
        "delete": letter.delete,
        "error": error[:300] if shown else error.partition(":")[0][:80],
    }
    if shown:
        record = letter.journal_record.get("r")
        body = record[2] if isinstance(record, list | tuple) and len(record) > 2 else None
        row["body"] = body if isinstance(body, str) else ""
    return row


def _last_error(
    error: str | None, exposed: frozenset[str], entities: Sequence[type[Entity]]
) -> str:
    """The last batch's error, whose text may quote any collection's values: whole
    only when every collection counted is exposed."""
    if not error:
        return ""
    names = {cls.__statekeep__.spec.name for cls in entities}
    if names and names <= exposed:
        return error[:300]
    return "a batch failed (store.writebehind.stats().last_error has its text; expose= shows it)"


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 0.0


def _health(ratio: float, database: str) -> str:
    if database != "closed":
        return "database " + database.replace("_", "-")
    return "full" if ratio >= 0.9 else "busy" if ratio >= 0.5 else "ok"


def _window(metrics: Any, name: str, figure: str, **labels: str) -> float:
    series = [s for s in metrics.select(name, **labels) if s.windows]
    if not series:
        return 0.0
    value = float(getattr(max(series, key=lambda s: s.window(10).count).window(10), figure))
    return value if math.isfinite(value) else 0.0


def _latency(metrics: Any, name: str, **labels: str) -> Tree:
    """p50 and p99 over the last 10 s, in milliseconds."""
    return {
        "p50": round(_window(metrics, name, "p50", **labels) * 1000, 3),
        "p99": round(_window(metrics, name, "p99", **labels) * 1000, 3),
    }
