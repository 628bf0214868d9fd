"""The machines and entities the state machine tests share, and the session
flow's transition table written out independently of its declaration (the
reference the tests hold the machine to).

Collections are prefixed `mc_` so that they never meet another suite's
(statekeep._demo has a RecordingSession of its own)."""

from __future__ import annotations

import threading
from typing import Any

import statekeep
from statekeep import Entity, Machine, State

# -- the 9-state session flow (and its final state), as /tmp/proto/s1.py declares it ------------


class SessionFlow(Machine):
    idle = State(initial=True)
    validating, checking_permissions, starting, active = State(), State(), State(), State()
    pausing, paused, resuming, ending = State(), State(), State(), State()
    completed = State(final=True)

    start = idle.to(validating)
    validated = validating.to(checking_permissions)
    permitted = checking_permissions.to(starting, cond="has_devices")
    started = starting.to(active)
    pause = active.to(pausing)
    paused_ok = pausing.to(paused)
    resume = paused.to(resuming)
    resumed = resuming.to(active)
    end = (active | paused).to(ending)
    ended = ending.to(completed)


class RecordingSession(Entity, collection="mc_recording_session"):
    state: SessionFlow = SessionFlow.idle
    devices: int = 0
    note: str = ""

    def has_devices(self) -> bool:
        return self.devices > 0


# The same table, in a machine that keeps history (store.history).
class TrackedFlow(Machine, history=True):
    idle = State(initial=True)
    validating, checking_permissions, starting, active = State(), State(), State(), State()
    pausing, paused, resuming, ending = State(), State(), State(), State()
    completed = State(final=True)

    start = idle.to(validating)
    validated = validating.to(checking_permissions)
    permitted = checking_permissions.to(starting, cond="has_devices")
    started = starting.to(active)
    pause = active.to(pausing)
    paused_ok = pausing.to(paused)
    resume = paused.to(resuming)
    resumed = resuming.to(active)
    end = (active | paused).to(ending)
    ended = ending.to(completed)


class TrackedSession(Entity, collection="mc_tracked_session"):
    state: TrackedFlow = TrackedFlow.idle
    devices: int = 0
    team: str = "a"

    def has_devices(self) -> bool:
        return self.devices > 0


# -- the reference: written out by hand, not read from the machine ------------------------------

STATES = [
    "idle",
    "validating",
    "checking_permissions",
    "starting",
    "active",
    "pausing",
    "paused",
    "resuming",
    "ending",
    "completed",
]
EVENTS = [
    "start",
    "validated",
    "permitted",
    "started",
    "pause",
    "paused_ok",
    "resume",
    "resumed",
    "end",
    "ended",
]
# (state, event) -> the state it leads to
TABLE: dict[tuple[str, str], str] = {
    ("idle", "start"): "validating",
    ("validating", "validated"): "checking_permissions",
    ("checking_permissions", "permitted"): "starting",
    ("starting", "started"): "active",
    ("active", "pause"): "pausing",
    ("pausing", "paused_ok"): "paused",
    ("paused", "resume"): "resuming",
    ("resuming", "resumed"): "active",
    ("active", "end"): "ending",
    ("paused", "end"): "ending",
    ("ending", "ended"): "completed",
}
# the pairs a guard holds back: taken only when the session has devices
NEEDS_DEVICES = {("checking_permissions", "permitted")}
ALLOWED = sorted(TABLE)
FORBIDDEN = [(state, event) for state in STATES for event in EVENTS if (state, event) not in TABLE]


def allowed_from(state: str) -> list[str]:
    """The events the reference allows from state, in declaration order."""
    return [event for event in EVENTS if (state, event) in TABLE]


# -- helpers --------------------------------------------------------------------------------------


class Recorder:
    """A handler that keeps the events it is given (thread-safe)."""

    def __init__(self) -> None:
        self.events: list[statekeep.Event] = []
        self._lock = threading.Lock()

    def __call__(self, event: statekeep.Event) -> None:
        with self._lock:
            self.events.append(event)

    def __len__(self) -> int:
        with self._lock:
            return len(self.events)

    def moves(self) -> list[tuple[str, str, str, str, int]]:
        """(entity id, event, source, target, version) of each Transitioned."""
        with self._lock:
            return [
                (e.entity_id, e.event, e.source, e.target, e.version)
                for e in self.events
                if isinstance(e, statekeep.Transitioned)
            ]

    def names(self) -> list[str]:
        with self._lock:
            return [e.name for e in self.events]

    def clear(self) -> None:
        with self._lock:
            self.events.clear()


def snapshot(entity: Entity) -> tuple[Any, ...]:
    """What a refused or failed send must leave as it was: the fields (the
    state as its enum member), the fields set, and the events recorded for the
    entity's next save."""
    from statekeep.entity import recorded_count

    return (
        entity.model_dump(),
        dict(entity.__dict__),
        set(entity.model_fields_set),
        recorded_count(entity),
    )
