"""Durable subscriptions: named consumers of the outbox that resume where they stopped.

A durable subscription reads the outbox (written in the same transaction as
the data, see the backends' append_events) in commit order, hands each event
it wants to its handler, and keeps its position, the checkpoint, in the
database (the statekeep_subscriptions collection). After a crash it resumes
from the checkpoint, so every event is delivered at least once and, as the
outbox is in commit order, the events of one entity in version order. Events
delivered again after a crash carry the same event_id: handlers that must
act once remember the ids they have handled.

A handler that raises is called again with the same event after a backoff
(doubling from 0.1 s up to `max_backoff`), and nothing after it is delivered
meanwhile. The checkpoint is written every `checkpoint_every` seconds while
events flow, whenever the subscription has caught up, and when it stops: a
checkpoint is a write transaction, and writing one per batch would make the
subscription queue behind busy writers (a crash redelivers at most the last
second of events).

A name has one consumer at a time, across processes: the subscription claims
its name (backend.claim: an flock, or a PostgreSQL advisory lock) before it
reads, and holds it until it stops. Another subscription under the same name
stands by, trying to claim it every `standby_poll` seconds, and takes over
from the checkpoint when the holder stops or dies (a SIGKILL too: the claim
goes with the process). A holder checks its claim before each batch: one
that finds it lost (its PostgreSQL connection broke, and with it the lock)
stops delivering, without writing its checkpoint, and stands by.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..backends import Claim
from ..backends.base import Backend
from ..errors import CircuitOpenError, ConfigurationError, ConflictError, StatekeepError
from ..flow import Backoff, CircuitBreaker, CircuitState
from ._bus import Matcher
from ._calling import Abandoned, call, is_async, running_loop
from ._checkpoints import load, prune, save
from ._event import Event

log = logging.getLogger("statekeep.events")

OUTBOX_FAILURES = 3  # reads of the outbox failed in a row before it fails fast

Decode = Callable[[str], Event]


@dataclass
class SubscriptionStats:
    position: int = 0
    delivered: int = 0
    skipped: int = 0
    failures: int = 0
    last_error: str | None = None
    outbox: str = "closed"  # its circuit breaker: closed, open (failing fast) or half_open


class DurableSubscription:
    """A named consumer running on a thread of its own; `stop()` ends it."""

    def __init__(
        self,
        backend: Backend,
        name: str,
        handler: Callable[[Any], Any],
        wants: Matcher,
        decode: Decode,
        *,
        batch: int = 500,
        poll: float = 0.05,
        max_backoff: float = 10.0,
        checkpoint_every: float = 1.0,
        loop: asyncio.AbstractEventLoop | None = None,
        on_stop: Callable[[DurableSubscription], None] | None = None,
        retention: int | None = None,
        prune_every: float = 5.0,
        standby_poll: float = 0.25,
        stale_after: float | None = None,
    ) -> None:
        self.name = name
        self._backend = backend
        self._handler = handler
        self._wants = wants
        self._decode = decode
        self._batch = batch
        self._poll = poll
        self._max_backoff = max_backoff
        self._backoff = Backoff(base=0.1, cap=max_backoff, factor=2.0)
        # reading the outbox: after OUTBOX_FAILURES failures in a row it fails
        # fast (no query, no log) and probes once a second until one succeeds
        self._outbox = CircuitBreaker(
            OUTBOX_FAILURES,
            window=3600.0,
            reset_timeout=min(max_backoff, 1.0),
            failure_on=StatekeepError,
            on_change=self._outbox_changed,
            name=f"subscription {name}: reading the outbox",
        )
        self._checkpoint_every = checkpoint_every
        self._loop = loop
        self._on_stop = on_stop
        self._retention = retention
        self._prune_every = prune_every
        self._standby_poll = standby_poll
        self._stale_after = stale_after
        self._warned: dict[str, float] = {}  # stalled subscriptions reported, when
        self._claim: Claim | None = None
        self._pruned_at = time.monotonic()
        self._stopping = threading.Event()
        self._abandon = threading.Event()  # stop() on the loop an async handler needs
        self._handling = 0  # the position of the event being handled
        self._saved_at_stop = -1  # the checkpoint a stop() from the handler saved
        self._version = 0
        self.stats = SubscriptionStats()
        self.stats.position = self._load()
        self._caught_up = threading.Condition()
        self._empty_reads = 0
        self._thread = threading.Thread(
            target=self._run, name=f"statekeep-subscription-{name}", daemon=True
        )
        self._thread.start()

    # -- checkpoints ---------------------------------------------------------
    def _load(self) -> int:
        position, self._version = load(self._backend, self.name)
        return position

    def _save(self, position: int) -> None:
        self._version = save(self._backend, self.name, self._version, position)

    # -- the loop ------------------------------------------------------------
    def _run(self) -> None:
        while (claim := self._claim_name()) is not None:
            self._claim = claim
            try:
                self._hold()
            finally:
                self._claim = None
                claim.release()
        with self._caught_up:
            self._caught_up.notify_all()
        if self._on_stop is not None:
            self._on_stop(self)

    def _claim_name(self) -> Claim | None:
        """Claims the name, standing by while another consumer holds it; None
        once stopping."""
        standing_by = failing = False
        while not self._stopping.is_set():
            try:
                claim = self._backend.claim(self.name)
            except StatekeepError as exc:
                if not failing:  # logged once, not at every try
                    self._note_failure(exc)
                failing, claim = True, None
            else:
                failing = False
            if claim is not None:
                if standing_by:
                    log.info(
                        "subscription %s: took over from the consumer before",
                        self.name,
                        extra={
                            "statekeep": {
                                "event": "events.subscription_took_over",
                                "subscription": self.name,
                            }
                        },
                    )
                return claim
            if not standing_by:
                log.info(
                    "subscription %s: another consumer holds it; standing by",
                    self.name,
                    extra={
                        "statekeep": {
                            "event": "events.subscription_standing_by",
                            "subscription": self.name,
                        }
                    },
                )
                standing_by = True
            self._stopping.wait(self._standby_poll)
        return None

    def _hold(self) -> None:
        """Delivers while the claim holds, from the checkpoint it finds."""
        try:
            self.stats.position = self._load()
            if self._version == 0:  # a checkpoint at once: pruning waits for this name
                self._save(self.stats.position)
        except StatekeepError as exc:
            self._note_failure(exc)
            self._stopping.wait(1.0)
            return
        while not self._stopping.is_set():
            try:
                self._consume()
            except _ClaimLostError:
                log.warning(
                    "subscription %s: lost its claim; standing by",
                    self.name,
                    extra={
                        "statekeep": {
                            "event": "events.subscription_claim_lost",
                            "subscription": self.name,
                        }
                    },
                )
                return
            except Exception as exc:  # noqa: BLE001 - a bug must not end the subscription
                self._note_failure(exc)
                self._stopping.wait(1.0)

    def _consume(self) -> None:
        position = self.stats.position
        saved = position
        idle = self._poll / 8
        last_save = time.monotonic()
        try:
            while not self._stopping.is_set():
                try:
                    events = self._outbox.call(self._backend.read_events, position, self._batch)
                except CircuitOpenError as open_:
                    self._stopping.wait(open_.retry_after)  # no query until the probe
                    continue
                except StatekeepError as exc:
                    self._note_failure(exc)
                    # the failure that opened the breaker is counted before it says so
                    self.stats.outbox = self._outbox.state.value
                    self._stopping.wait(min(self._max_backoff, 1.0))
                    continue
                if not events:
                    if saved != position:
                        saved = self._checkpoint(position, saved)
                    # idle only once no committed event waits (on PostgreSQL, for
                    # transactions still adding events): wait_idle() counts these
                    try:
                        caught_up = not self._backend.unsettled_events(position)
                    except StatekeepError:
                        caught_up = False  # the next read reports it
                    with self._caught_up:
                        self._empty_reads += caught_up
                        self._caught_up.notify_all()
                    self._backend.wait_events(position, idle)
                    idle = min(idle * 2, self._poll)  # adaptive: fast after activity
                    continue
                idle = self._poll / 8
                if self._claim is not None and not self._claim.held():
                    raise _ClaimLostError  # another consumer may have these events now
                for event_position, body in events:
                    self._handling = event_position
                    if not self._deliver(body):
                        break  # stopping
                    position = self.stats.position = event_position
                    if time.monotonic() - last_save > self._checkpoint_every:
                        saved = self._checkpoint(position, saved)
                        last_save = time.monotonic()
        finally:
            if saved != position:
                with contextlib.suppress(
                    _ClaimLostError
                ):  # then the new holder's checkpoint counts
                    self._checkpoint(position, saved)

    def _checkpoint(self, position: int, saved: int) -> int:
        if position in (saved, self._saved_at_stop):
            return position
        if self._claim is not None and not self._claim.held():
            raise _ClaimLostError
        try:
            self._save(position)
        except ConflictError:  # another consumer of this name moved it: take theirs
            log.warning(
                "subscription %s: checkpoint moved by another consumer",
                self.name,
                extra={
                    "statekeep": {
                        "event": "events.checkpoint_moved",
                        "subscription": self.name,
                        "position": position,
                    }
                },
            )
            self._load()
            return saved
        except StatekeepError as exc:
            self._note_failure(exc)
            return saved
        if self._retention is not None and time.monotonic() - self._pruned_at > self._prune_every:
            self._pruned_at = time.monotonic()
            try:
                prune(self._backend, self._retention, self._stale_after, self._warned)
            except StatekeepError as exc:
                self._note_failure(exc)
        return position

    def _deliver(self, body: str) -> bool:
        """Delivers one event until the handler takes it; False if stopping first."""
        try:
            event = self._decode(body)
        except StatekeepError as exc:  # not an event at all: logged, counted, passed over
            self._note_failure(exc)
            self.stats.skipped += 1
            return True
        collection, _, kind = event.name.partition(".")
        if not self._wants(collection, kind):
            self.stats.skipped += 1
            return True
        failures = 0
        while not self._stopping.is_set():
            try:
                self._call(event)
            except Abandoned:  # cancelled by stop() on its loop: delivered again next time
                return False
            # any failure: retry after a backoff (sys.exit() in a handler too: on
            # this thread it would end the subscription without a word)
            except (Exception, KeyboardInterrupt, SystemExit) as exc:  # noqa: BLE001
                self._note_failure(exc, event)
                failures += 1
                self._stopping.wait(self._backoff.delay(failures))
                continue
            self.stats.delivered += 1
            return True
        return False

    def _call(self, event: Event) -> None:
        call(self._handler, event, self._loop, self._abandon)

    def _outbox_changed(self, old: CircuitState, new: CircuitState) -> None:
        if new is not CircuitState.OPEN:  # open: said once the failure is counted
            self.stats.outbox = new.value
        if new is CircuitState.OPEN and old is CircuitState.CLOSED:
            log.warning(
                "subscription %s: the outbox is unreachable; failing fast, trying again "
                "every %.3g s",
                self.name,
                self._outbox.reset_timeout,
                extra={
                    "statekeep": {
                        "event": "events.outbox_unreachable",
                        "subscription": self.name,
                        "retry_every": self._outbox.reset_timeout,
                    }
                },
            )
        elif new is CircuitState.CLOSED:
            log.warning(
                "subscription %s: the outbox is reachable again",
                self.name,
                extra={
                    "statekeep": {
                        "event": "events.outbox_reachable",
                        "subscription": self.name,
                    }
                },
            )

    def _note_failure(self, error: BaseException, event: Event | None = None) -> None:
        self.stats.failures += 1
        self.stats.last_error = f"{type(error).__name__}: {error}"
        what = f"{event.name} {event.event_id}" if event is not None else "reading the outbox"
        log.error(
            "subscription %s failed on %s",
            self.name,
            what,
            exc_info=(type(error), error, error.__traceback__),
            extra={
                "statekeep": {
                    "event": "events.subscription_failed",
                    "subscription": self.name,
                    "event_name": event.name if event is not None else None,
                    "event_id": event.event_id if event is not None else None,
                    "failures": self.stats.failures,
                    "error_type": type(error).__name__,
                    "error": str(error),
                }
            },
        )

    # -- control -------------------------------------------------------------
    @property
    def position(self) -> int:
        return self.stats.position

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Waits until everything committed before the call has been handled (the
        subscription has read the outbox to its end since); False on timeout.
        On the event loop an async handler runs on: `await wait_idle_async()`."""
        if self._loop is not None and running_loop() is self._loop and is_async(self._handler):
            raise ConfigurationError(
                f"subscription {self.name!r}: wait_idle() on the event loop its async handler "
                "runs on would block that handler; use `await subscription.wait_idle_async()`"
            )
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._caught_up:
            target = self._empty_reads + 2  # a read that began after this call
            while self._empty_reads < target and self._thread.is_alive():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._caught_up.wait(0.05 if left is None else min(left, 0.05))
            return self._empty_reads >= target

    async def wait_idle_async(self, timeout: float | None = None) -> bool:
        """wait_idle() for a coroutine: the loop runs on (async handlers too)
        while it waits."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._caught_up:
            target = self._empty_reads + 2
        pause = 0.001
        while True:
            with self._caught_up:
                if self._empty_reads >= target:
                    return True
            if not self._thread.is_alive():
                return False
            if deadline is not None and time.monotonic() >= deadline:
                return False
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.02)

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stops after the event being handled; the checkpoint is saved. On the
        loop an async handler runs on, a handler running is cancelled instead
        (its event is delivered again next time): it could not finish."""
        if self._loop is not None and running_loop() is self._loop:
            self._abandon.set()
        self._stopping.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
            return
        # from the handler (closing the store, say): the event it handles counts
        # as handled, and its checkpoint is saved now, while the store is open
        # (else the event comes again at every start, and closes it again)
        with contextlib.suppress(StatekeepError):
            self._save(self._handling)
            self._saved_at_stop = self.stats.position = self._handling

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def active(self) -> bool:
        """Whether this consumer holds the name (else it stands by, or stopped)."""
        return self._claim is not None


class _ClaimLostError(Exception):
    pass
