"""When an update is applied: at once, in the next frame, or when idle.

- CRITICAL: applied and announced at once, in the caller's thread (with any
  NORMAL updates waiting before it, so updates of one priority and above
  keep their order).
- NORMAL: applied at once while updates arrive slower than one per frame
  (`immediate`); faster than that, they wait for the frame's end and all
  become one version (`batched`). The frame is `frame` seconds (16 ms by
  default), stretched to four times what applying and announcing a version
  has cost lately (never past `max_frame`), and ends sooner for an update
  with a deadline.
- LOW: applied once no update of a higher priority has come for `idle`
  seconds, or at its deadline, or once it has waited `low_max_age`
  (`deferred`).

The coordinator holds the decisions and the timer; the AppState applies.
Its timer thread starts with the first update that waits, and stops on
close(). Time comes from a statekeep.flow clock, so tests run it on a
FakeClock.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..flow import Clock

INF = float("inf")


@dataclass
class Decisions:
    """How the coordinator has treated updates, by what it chose."""

    immediate: int = 0  # applied at once (CRITICAL, or NORMAL below the frame rate)
    batched: int = 0  # NORMAL updates that waited for their frame
    deferred: int = 0  # LOW updates that waited for idle time
    mode: str = "immediate"  # the last choice: immediate, batched or deferred
    rate: float = 0.0  # updates per second lately (exponentially weighted)


class Coordinator:
    __slots__ = (
        "__weakref__",
        "_apply",
        "_arrivals",
        "_closed",
        "_direct_at",
        "_thread",
        "_window",
        "clock",
        "condition",
        "cost",
        "decisions",
        "direct",
        "frame",
        "frame_now",
        "idle",
        "last_active",
        "last_applied",
        "low",
        "low_due",
        "low_max_age",
        "max_frame",
        "name",
        "normal",
        "normal_due",
    )

    def __init__(
        self,
        condition: threading.Condition,
        clock: Clock,
        apply: Callable[[list[Any], bool], None],
        *,
        frame: float,
        max_frame: float,
        idle: float,
        low_max_age: float,
        name: str,
    ) -> None:
        self.condition = condition  # the state's lock: everything here runs under it
        self.clock = clock
        self._apply = apply  # applies a list of updates as one version
        self.frame, self.max_frame, self.idle, self.low_max_age = (
            frame,
            max_frame,
            idle,
            low_max_age,
        )
        self.name = name
        self.normal: list[Any] = []  # waiting for the frame's end
        self.low: list[Any] = []  # waiting for idle time
        self.normal_due = INF
        self.low_due = INF
        self.last_applied = -INF  # when the last version was made
        self.last_active = -INF  # when the last update above LOW came
        self._window = clock.now()  # the rate's window: since when, how many arrived
        self._arrivals = 0
        # CRITICAL sets applied on the caller's hot path, counted by the state (see roll())
        self.direct: Callable[[], int] = lambda: 0
        self._direct_at = 0
        self.frame_now = frame  # frame, stretched to 4x what versions cost lately
        self.cost = 0.0  # seconds applying and announcing a version costs lately
        self.decisions = Decisions()
        self._thread: threading.Thread | None = None
        self._closed = False

    # -- decisions (with condition held) ---------------------------------------
    def critical(self, update: Any) -> None:
        now = self._arrived()
        self.last_active = now
        self.decisions.immediate += 1
        self.decisions.mode = "immediate"
        updates, self.normal = [*self.normal, update], []
        self.normal_due = INF
        self._apply(updates, True)

    def normal_update(self, update: Any, deadline: float | None) -> None:
        now = self._arrived()
        self.last_active = now
        normal, decisions = self.normal, self.decisions
        if normal:  # a frame is open: the update joins it
            normal.append(update)
            decisions.batched += 1
            if deadline is not None and now + deadline < self.normal_due:
                self.normal_due = now + deadline
                self._wake()
                if deadline <= 0:
                    self.run_due()
            return
        if now - self.last_applied >= self.frame_now:  # slower than one per frame
            decisions.immediate += 1
            decisions.mode = "immediate"
            self._apply([update], True)
            return
        decisions.batched += 1
        decisions.mode = "batched"
        normal.append(update)
        due = self.last_applied + self.frame_now
        if deadline is not None:
            due = min(due, now + deadline)
        self.normal_due = due
        self._wake()
        if due <= now:
            self.run_due()

    def low_update(self, update: Any, deadline: float | None) -> None:
        now = self._arrived()
        self.decisions.deferred += 1
        self.decisions.mode = "deferred"
        self.low.append(update)
        due = now + self.low_max_age if len(self.low) == 1 else self.low_due
        if deadline is not None:
            due = min(due, now + deadline)
        if due < self.low_due:
            self.low_due = due
        self._wake()
        if deadline is not None and deadline <= 0:  # due now: applied in this thread
            self.run_due()

    def current_frame(self) -> float:
        return self.frame_now

    def applied(self, seconds: float) -> None:
        """A version was made; seconds: what making and announcing it cost."""
        self.last_applied = self.clock.now()
        self.timed(seconds)

    def timed(self, seconds: float) -> None:
        self.cost = seconds if self.cost == 0.0 else 0.8 * self.cost + 0.2 * seconds
        self.frame_now = min(self.max_frame, max(self.frame, 4.0 * self.cost))

    def _arrived(self) -> float:
        """Now; counts the update into the rate (measured over windows of a second)."""
        now = self.clock.now()
        if now - self._window >= 1.0:  # this update opens the next window
            self.roll(now)
        self._arrivals += 1
        return now

    def roll(self, now: float | None = None) -> None:
        """Ends the rate's window if a second has passed: the updates that
        arrived in it (the hot path's CRITICAL sets too) over its length."""
        now = self.clock.now() if now is None else now
        elapsed = now - self._window
        if elapsed >= 1.0:
            direct = self.direct()
            self.decisions.rate = (self._arrivals + direct - self._direct_at) / elapsed
            self._window, self._arrivals, self._direct_at = now, 0, direct

    def apply_normal(self) -> None:
        updates, self.normal = self.normal, []
        self.normal_due = INF
        if updates:
            self._apply(updates, False)

    # -- what is due -------------------------------------------------------------
    def pending(self) -> int:
        return len(self.normal) + len(self.low)

    def next_due(self) -> float:
        low_due = min(self.low_due, self.last_active + self.idle) if self.low else INF
        return min(self.normal_due, low_due)

    def run_due(self) -> None:
        now = self.clock.now()
        if self.normal and now >= self.normal_due:
            self.apply_normal()
        if self.low and (now >= self.low_due or now >= self.last_active + self.idle):
            self.flush()

    def flush(self) -> None:
        """Applies everything waiting, as one version."""
        updates = [*self.normal, *self.low]
        self.normal, self.low = [], []
        self.normal_due = self.low_due = INF
        if updates:
            self._apply(updates, False)

    # -- the timer thread ----------------------------------------------------------
    def _wake(self) -> None:
        if self._thread is None and not self._closed:
            self._thread = threading.Thread(
                target=_timer,
                args=(weakref.ref(self),),
                name=f"statekeep-state-{self.name}",
                daemon=True,
            )
            self._thread.start()
        self.condition.notify_all()

    def _step(self) -> float | None:
        """Applies what is due (condition held); the moment to wait until
        (None: until notified), or INF once closed."""
        if self._closed:
            return INF
        due = self.next_due()
        if due > self.clock.now():
            return None if due == INF else due
        try:
            self.run_due()
        except Exception:  # noqa: BLE001 - logged by apply; the timer must go on
            self.normal, self.low = [], []
            self.normal_due = self.low_due = INF
        return self.clock.now()

    def close(self) -> threading.Thread | None:
        """Stops the timer (with condition held); the thread to join, if any."""
        self._closed = True
        self.condition.notify_all()
        thread, self._thread = self._thread, None
        return thread

    def after_fork(self, condition: threading.Condition) -> None:
        self.condition = condition
        self._thread = None
        if self.pending() and not self._closed:
            with condition:
                self._wake()


def _timer(ref: weakref.ReferenceType[Coordinator]) -> None:
    """The timer thread: holds its coordinator only while it works, so a
    state nobody holds (and nobody closed) is collected, and its timer ends."""
    while True:
        coordinator = ref()
        if coordinator is None:
            return
        condition, clock = coordinator.condition, coordinator.clock
        with condition:
            moment = coordinator._step()
            if moment == INF:
                return
            del coordinator
            if moment is None:
                condition.wait(1.0)  # and look again whether the state is still held
            elif moment > clock.now():
                clock.wait(condition, min(moment, clock.now() + 1.0))
