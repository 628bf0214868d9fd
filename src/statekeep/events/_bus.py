"""The in-process bus: who listens to which events, and calling them.

A subscription's target is an event class (`Todo.Created`, `Created`, a
domain event class, or `Event` for everything), an entity class (all of its
events), or a pattern over event names (`"todo.*"`, `"*.deleted"`). Handlers
run in priority order (higher first, then in the order they subscribed), each
event to every handler before the next event, events in the order their
changes were made (per entity: in version order).

Plain functions run in the thread that committed, right after the commit.
Coroutine functions run on the event loop that was running where they
subscribed (or on the bus's own loop thread), scheduled without waiting, so
they never block a writer. A handler that raises does not stop the others
or the write: the error is logged, counted and passed to `on_error`.
"""

from __future__ import annotations

import asyncio
import fnmatch
import inspect
import itertools
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from time import perf_counter_ns
from typing import Any

from ..errors import ConfigurationError
from ..metrics import Timer
from ._calling import running_loop
from ._event import Event, HandlerFailed, Lifecycle

log = logging.getLogger("statekeep.events")

Handler = Callable[[Any], Any]
# (collection, kind) -> does the subscription want it?
Matcher = Callable[[str, str], bool]


def matcher_for(target: Any) -> tuple[Matcher, str]:
    """A matcher for a subscription target, and how to describe it."""
    if isinstance(target, str):
        if not target or target != target.strip():
            raise ConfigurationError(f"an event pattern is text like 'todo.*', not {target!r}")
        pattern = target
        return (lambda collection, kind: fnmatch.fnmatchcase(f"{collection}.{kind}", pattern)), (
            repr(target)
        )
    if isinstance(target, type):
        bound = getattr(target, "__statekeep_collection__", None)
        if issubclass(target, Event):
            kind = target.kind
            if target is Event:
                return (lambda collection, k: True), "every event"
            if target is Lifecycle or (bound is not None and kind == "lifecycle"):
                kinds = ("created", "updated", "deleted")
                return _pair(bound, kinds), target.__name__
            return _pair(bound, (kind,)), target.__name__
        spec = getattr(getattr(target, "__statekeep__", None), "spec", None)
        name = getattr(spec, "name", None)
        if isinstance(name, str):  # an entity class: all of its events
            return (lambda collection, kind: collection == name), target.__name__
    raise ConfigurationError(
        f"cannot subscribe to {target!r}: give an event class (Todo.Created, a statekeep.Event "
        "subclass), an entity class, or a pattern like 'todo.*'"
    )


def _pair(collection: str | None, kinds: tuple[str, ...]) -> Matcher:
    if collection is None:
        return lambda c, kind: kind in kinds
    return lambda c, kind: c == collection and kind in kinds


@dataclass(eq=False)
class Subscription:
    """One handler on one target; `cancel()` unsubscribes it."""

    target: str
    handler: Handler
    priority: int
    order: int
    matches: Matcher
    loop: asyncio.AbstractEventLoop | None
    bus: Bus = field(repr=False)
    timer: Timer | None = field(default=None, repr=False)  # a sync handler's, with metrics on

    @property
    def is_async(self) -> bool:
        return self.loop is not None

    def cancel(self) -> None:
        self.bus.remove(self)


@dataclass
class BusStats:
    delivered: int = 0
    failed: int = 0


class Bus:
    def __init__(self) -> None:
        self._subscriptions: list[Subscription] = []
        # any subscription at all? (an attribute: the store reads it on every write)
        self.listening = False
        self._by_name: dict[tuple[str, str], tuple[Subscription, ...]] = {}
        self._lock = threading.Lock()
        self._order = itertools.count()
        self._own_loop: asyncio.AbstractEventLoop | None = None
        self._own_thread: threading.Thread | None = None
        self._stats_lock = threading.Lock()
        self.stats = BusStats()
        self.on_error: list[Callable[[Subscription, Event, BaseException], None]] = []
        # the timer of a sync handler (the store's metrics), made when it is subscribed
        self.timer_of: Callable[[Handler], Timer] | None = None

    def __bool__(self) -> bool:
        return self.listening

    def add(self, target: Any, handler: Handler, priority: int = 0) -> Subscription:
        if not callable(handler):
            raise ConfigurationError(f"an event handler must be callable, not {handler!r}")
        if not isinstance(priority, int) or isinstance(priority, bool):
            raise ConfigurationError(f"priority must be an int, not {priority!r}")
        matches, described = matcher_for(target)
        loop = None
        if inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
            getattr(handler, "__call__", None)  # noqa: B004 - an object with an async __call__
        ):
            loop = running_loop() or self._background_loop()
        subscription = Subscription(
            described, handler, priority, next(self._order), matches, loop, self
        )
        if loop is None and self.timer_of is not None:
            subscription.timer = self.timer_of(handler)
        with self._lock:
            self._subscriptions.append(subscription)
            self._subscriptions.sort(key=lambda s: (-s.priority, s.order))
            self._by_name = {}
            self.listening = bool(self._subscriptions)
        return subscription

    def remove(self, subscription_or_handler: Subscription | Handler) -> int:
        """Removes a subscription, or every subscription of a handler; returns how many."""
        with self._lock:
            before = len(self._subscriptions)
            self._subscriptions = [
                s
                for s in self._subscriptions
                if s is not subscription_or_handler and s.handler is not subscription_or_handler
            ]
            self._by_name = {}
            self.listening = bool(self._subscriptions)
            return before - len(self._subscriptions)

    def handlers(self, collection: str, kind: str) -> tuple[Subscription, ...]:
        key = (collection, kind)
        found = self._by_name.get(key)
        if found is None:
            with self._lock:
                found = tuple(s for s in self._subscriptions if s.matches(collection, kind))
                self._by_name[key] = found
        return found

    def wants(self, collection: str, kind: str) -> bool:
        return bool(self.handlers(collection, kind))

    def dispatch(self, events: Iterable[Event | str]) -> None:
        """Each event to every handler that wants it, in order. A str is passed
        over: an event's outbox entry, made as that alone because no handler
        of this process wanted it."""
        call = self.call
        for event in events:
            if isinstance(event, str):
                continue
            collection, kind = event.collection, event.kind
            found = self._by_name.get((collection, kind))  # (a handler may subscribe another)
            for subscription in self.handlers(collection, kind) if found is None else found:
                call(subscription, event)

    def call(self, subscription: Subscription, event: Event) -> None:
        if subscription.loop is not None:
            self._schedule(subscription, event)
            return
        timer = subscription.timer
        start = perf_counter_ns() if timer is not None else 0
        try:
            subscription.handler(event)
        except Exception as exc:  # noqa: BLE001 - a handler's error must not break the write
            if timer is not None:  # its time was spent on the committing thread all the same
                timer.record(perf_counter_ns() - start)
            self.failed(subscription, event, exc)
        else:
            if timer is not None:
                timer.record(perf_counter_ns() - start)
            with self._stats_lock:
                self.stats.delivered += 1

    def _schedule(self, subscription: Subscription, event: Event) -> None:
        loop = subscription.loop
        assert loop is not None
        coroutine = subscription.handler(event)
        try:
            future = asyncio.run_coroutine_threadsafe(coroutine, loop)
        except RuntimeError as exc:  # the loop is closed
            coroutine.close()
            self.failed(subscription, event, exc)
            return

        def done(future: Any) -> None:
            if future.cancelled():
                return
            error = future.exception()
            if error is None:
                with self._stats_lock:
                    self.stats.delivered += 1
            else:
                self.failed(subscription, event, error)

        future.add_done_callback(done)

    def failed(self, subscription: Subscription, event: Event, error: BaseException) -> None:
        with self._stats_lock:
            self.stats.failed += 1
        handler = getattr(subscription.handler, "__qualname__", repr(subscription.handler))
        log.error(
            "event handler %r failed on %s %s",
            subscription.handler,
            event.name,
            event.event_id,
            exc_info=(type(error), error, error.__traceback__),
            extra={
                "statekeep": {
                    "event": "events.handler_failed",
                    "handler": handler,
                    "event_name": event.name,
                    "event_id": event.event_id,
                    "collection": event.collection,
                    "entity_id": event.entity_id,
                    "version": event.version,
                    "error_type": type(error).__name__,
                    "error": str(error),
                }
            },
        )
        for report in list(self.on_error):
            try:
                report(subscription, event, error)
            except Exception as exc:  # an application callback: logged, delivery goes on
                log.exception(
                    "on_error callback %r failed",
                    report,
                    extra={
                        "statekeep": {
                            "event": "events.on_error_failed",
                            "callback": getattr(report, "__qualname__", repr(report)),
                            "handler": handler,
                            "event_name": event.name,
                            "event_id": event.event_id,
                            "error_type": type(exc).__name__,
                            "error": str(exc),
                        }
                    },
                )
        if isinstance(event, HandlerFailed):
            return  # no failure about a failure
        failure = HandlerFailed.made(
            "statekeep",
            event.entity_id,
            event.version,
            handler=handler,
            failed_event=event.name,
            failed_event_id=event.event_id,
            error=f"{type(error).__name__}: {error}",
        )
        for other in self.handlers("statekeep", HandlerFailed.kind):
            if other is not subscription:
                self.call(other, failure)

    def _background_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._own_loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="statekeep-events-loop", daemon=True
                )
                thread.start()
                self._own_loop, self._own_thread = loop, thread
            return self._own_loop

    def after_fork(self) -> None:
        """In a forked child: fresh locks; the thread of the bus's own loop is
        not here, so the async handlers that ran on it get a new one."""
        self._lock = threading.Lock()
        self._stats_lock = threading.Lock()
        old, self._own_loop, self._own_thread = self._own_loop, None, None
        moved = [s for s in self._subscriptions if old is not None and s.loop is old]
        if moved:
            loop = self._background_loop()
            for subscription in moved:
                subscription.loop = loop

    def close(self, timeout: float = 5.0) -> None:
        """Stops the bus's own loop once the handlers it is running finish."""
        with self._lock:
            loop, self._own_loop = self._own_loop, None
            thread, self._own_thread = self._own_thread, None
        if loop is None or thread is None:
            return
        if thread is threading.current_thread():  # closed from one of its handlers
            loop.call_soon(loop.stop)
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        if not thread.is_alive():
            loop.close()
