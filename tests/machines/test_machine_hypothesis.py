"""Random event sequences against a plain reference: a dict of (state,
event) -> target written out by hand (_models.TABLE) and the one guard
(permitted needs devices). In memory, every send moves exactly when the
reference does, and a refused one changes nothing; through a store (memory,
and SQLite on a file with fewer examples), the stored state and version,
the history records and the Transitioned events are the reference's, for
store.send and transition_many alike.

STATEKEEP_STRESS=1 runs ten times the examples."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import statekeep
from statekeep import TransitionError
from statekeep.entity import recorded_count

from ._models import (
    EVENTS,
    NEEDS_DEVICES,
    STATES,
    TABLE,
    Recorder,
    RecordingSession,
    SessionFlow,
    TrackedFlow,
    TrackedSession,
    allowed_from,
    snapshot,
)

STRESS = os.environ.get("STATEKEEP_STRESS", "") not in ("", "0")
SCALE = 10 if STRESS else 1

# -- the reference ---------------------------------------------------------------------------------


@dataclass
class Reference:
    """The session as the table says it goes: its state, devices, version
    (once stored) and every move it made."""

    state: str = "idle"
    devices: int = 0
    version: int = 0
    moves: list[tuple[str, str, str, int]] = field(default_factory=list)  # event, from, to, v

    def target(self, event: str) -> str | None:
        """Where event leads now, or None when it is refused."""
        target = TABLE.get((self.state, event))
        if target is None or ((self.state, event) in NEEDS_DEVICES and self.devices <= 0):
            return None
        return target

    def send(self, event: str, version: int) -> None:
        target = self.target(event)
        assert target is not None
        self.moves.append((event, self.state, target, version))
        self.state = target


# A step: ("send", event name), ("follow", k): send the k-th event the table allows
# from where the reference is (so that runs go deep), ("devices", n), or, through a
# store, ("many", event): transition_many for this one entity.
Step = tuple[str, Any]
NAMES = [*EVENTS, "no_such_event"]


def _step(through_store: bool) -> Callable[[tuple[int, int]], Step]:
    """Mostly follows (the draws shrink towards them), some events at random,
    some changes of devices and, through a store, some transition_many."""

    def make(drawn: tuple[int, int]) -> Step:
        kind, value = drawn
        if kind < 65:
            return ("follow", value)
        if kind < 80:
            return ("send", NAMES[value % len(NAMES)])
        if kind < 90 or not through_store:
            return ("devices", value % 3)
        return ("many", EVENTS[value % len(EVENTS)])

    return make


draws = st.tuples(st.integers(0, 99), st.integers(0, 1000))
memory_steps = st.lists(draws.map(_step(through_store=False)), max_size=40)
store_steps = st.lists(draws.map(_step(through_store=True)), max_size=30)


def event_of(step: Step, reference: Reference) -> str:
    kind, value = step
    if kind == "follow":
        allowed = allowed_from(reference.state)
        return allowed[value % len(allowed)] if allowed else "start"
    return str(value)


# -- in memory -------------------------------------------------------------------------------------


@settings(max_examples=200 * SCALE, deadline=None)
@given(st.integers(0, 2), memory_steps)
def test_in_memory_sends_follow_the_reference(devices: int, steps: list[Step]) -> None:
    session = RecordingSession(id="h", devices=devices)
    reference = Reference(devices=devices)
    for step in steps:
        if step[0] == "devices":
            session.devices = reference.devices = step[1]
        else:
            event = event_of(step, reference)
            target = reference.target(event)
            if target is None:
                before = snapshot(session)
                with pytest.raises(TransitionError) as caught:
                    session.send(event)
                assert (caught.value.state, caught.value.event) == (reference.state, event)
                assert snapshot(session) == before
            else:
                assert session.send(event) is session
                reference.send(event, 0)
        assert session.state is SessionFlow(reference.state)
        assert session.allowed_events() == allowed_from(reference.state)
        for event in EVENTS:
            assert SessionFlow.can_send(session, event) is (reference.target(event) is not None)
    assert recorded_count(session) == len(reference.moves)
    assert session.version == 0


# -- through a store -------------------------------------------------------------------------------


URLS: dict[str, tuple[Callable[[Path], str], int]] = {
    "memory": (lambda directory: "memory://", 100),
    "sqlite-file": (lambda directory: f"sqlite:///{directory / 'hypothesis.db'}", 20),
}


@pytest.fixture(params=list(URLS))
def shared_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[statekeep.Store]:
    """One store for all the examples of a test (each works on entities of its own)."""
    make, _ = URLS[request.param]
    with statekeep.open(make(tmp_path)) as store:
        yield store


def examples(store: statekeep.Store) -> int:
    return (URLS["memory"][1] if store.url == "memory://" else URLS["sqlite-file"][1]) * SCALE


_ids = itertools.count()


def run_in_store(
    store: statekeep.Store, recorder: Recorder, devices: int, steps: list[Step]
) -> None:
    id = f"h{next(_ids):06d}"
    session = store.save(TrackedSession(id=id, devices=devices))
    reference = Reference(devices=devices, version=1)
    for step in steps:
        kind = step[0]
        if kind == "devices":
            session.devices = reference.devices = step[1]
            store.save(session)
            reference.version += 1
            continue
        event = event_of(step, reference)
        target = reference.target(event)
        if kind == "many":
            report = store.transition_many(TrackedSession, event, chunk_size=1, id=id)
            if target is None:
                assert report.moved == 0 and set(report.skipped) == {id}
            else:
                assert (report.moved, report.skipped) == (1, {})
                reference.version += 1
                reference.send(event, reference.version)
            session = store.get(TrackedSession, id)
        elif target is None:
            before = snapshot(session)
            with pytest.raises(TransitionError):
                store.send(session, event)
            assert snapshot(session) == before
        else:
            assert store.send(session, event) is session
            reference.version += 1
            reference.send(event, reference.version)
        assert session.state is TrackedFlow(reference.state)
        assert session.version == reference.version
    stored = store.get(TrackedSession, id)
    assert (stored.state, stored.version, stored.devices) == (
        TrackedFlow(reference.state),
        reference.version,
        reference.devices,
    )
    assert [
        (record.event, record.source, record.target, record.entity_version)
        for record in store.history(stored)
    ] == reference.moves
    assert [
        (event, source, target, version)
        for entity_id, event, source, target, version in recorder.moves()
        if entity_id == id
    ] == reference.moves


def test_sends_through_a_store_follow_the_reference(shared_store: statekeep.Store) -> None:
    recorder = Recorder()
    shared_store.on(TrackedSession.Transitioned, recorder)

    @settings(
        max_examples=examples(shared_store),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(st.integers(0, 2), store_steps)
    def check(devices: int, steps: list[Step]) -> None:
        run_in_store(shared_store, recorder, devices, steps)

    check()


# -- transition_many over many entities, against the reference of each -----------------------------

states_of = st.lists(st.sampled_from(STATES), min_size=1, max_size=12)


def test_transition_many_follows_the_reference(shared_store: statekeep.Store) -> None:
    store = shared_store
    recorder = Recorder()
    store.on(TrackedSession.Transitioned, recorder)

    @settings(
        max_examples=examples(store),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(
        states_of,
        st.lists(st.booleans(), min_size=12, max_size=12),
        st.sampled_from(EVENTS),
        st.integers(1, 5),
        st.sampled_from([None, "a", "b"]),
    )
    def check(
        states: list[str], has_devices: list[bool], event: str, chunk_size: int, team: str | None
    ) -> None:
        batch = f"b{next(_ids):06d}"
        references = {}
        entities = []
        for n, state in enumerate(states):
            id = f"{batch}-{n:02d}"
            reference = Reference(state=state, devices=int(has_devices[n]), version=1)
            references[id] = (reference, "a" if n % 2 else "b")
            entities.append(
                TrackedSession(
                    id=id,
                    state=TrackedFlow(state),
                    devices=reference.devices,
                    team=references[id][1],
                )
            )
        store.save_many(entities)
        recorder.clear()
        conditions = (TrackedSession.f.id.startswith(batch),)
        equals: dict[str, Any] = {} if team is None else {"team": team}
        report = store.transition_many(
            TrackedSession, event, *conditions, chunk_size=chunk_size, **equals
        )
        selected = {id for id, (_, t) in references.items() if team is None or t == team}
        movable = {id for id in selected if references[id][0].target(event) is not None}
        assert report.moved == len(movable)
        assert set(report.skipped) == selected - movable
        expected_moves = []
        for id, (reference, _) in sorted(references.items()):
            if id in movable:
                reference.version += 1
                reference.send(event, reference.version)
                expected_moves.append((id, *reference.moves[-1]))
            stored = store.get(TrackedSession, id)
            assert (stored.state, stored.version) == (
                TrackedFlow(reference.state),
                reference.version,
            )
            assert [
                (r.event, r.source, r.target, r.entity_version) for r in store.history(stored)
            ] == reference.moves
        assert sorted(recorder.moves()) == sorted(expected_moves)

    check()
