"""State machines bound to entity fields, on the 9-state session flow.

Every (state, event) pair of the table the tests write out by hand
(_models.TABLE) moves to its target; every other pair of states and events
is refused with a TransitionError that names the machine, state, event,
reason and entity, and changes nothing: in memory, and through store.send on
every backend. Then guards, actions and their order, async callbacks,
restoring from a reopened store, queries by state, the checks a machine's
class gets when it is made, Mermaid output and introspection."""

from __future__ import annotations

import asyncio
import types
from collections.abc import Callable
from typing import Any

import pydantic
import pytest

import statekeep
import statekeep.aio
from statekeep import ConfigurationError, Entity, Machine, State, TransitionError
from statekeep.backends.base import Query
from statekeep.entity import recorded_count

from ._models import (
    ALLOWED,
    EVENTS,
    FORBIDDEN,
    NEEDS_DEVICES,
    STATES,
    TABLE,
    Recorder,
    RecordingSession,
    SessionFlow,
    allowed_from,
    snapshot,
)
from .conftest import OpenStore, RunAsync


def session_in(state: str, devices: int = 1, id: str = "s1") -> RecordingSession:
    return RecordingSession(id=id, state=SessionFlow(state), devices=devices)


def pair_id(pair: tuple[str, str]) -> str:
    return f"{pair[0]}-{pair[1]}"


# -- the table, and what a machine tells about itself --------------------------------------------


def test_the_declared_table_is_the_reference() -> None:
    assert [s.value for s in SessionFlow.states] == STATES
    assert list(SessionFlow.events) == EVENTS
    assert SessionFlow.initial is SessionFlow.idle
    assert SessionFlow.finals == frozenset({SessionFlow.completed})
    triples = SessionFlow.transitions
    assert len(triples) == len(TABLE)  # each declared once
    assert {(s.value, e, t.value) for s, e, t in triples} == {
        (state, event, target) for (state, event), target in TABLE.items()
    }
    for source, _, target in triples:
        assert type(source) is SessionFlow and type(target) is SessionFlow
    assert SessionFlow.history is False


def test_states_are_str_enum_members() -> None:
    assert SessionFlow.paused == "paused" and isinstance(SessionFlow.paused, str)
    assert SessionFlow("paused") is SessionFlow.paused
    assert SessionFlow["paused"] is SessionFlow.paused
    assert repr(SessionFlow.paused) == "SessionFlow.paused"
    assert [state.final for state in SessionFlow] == [s == "completed" for s in STATES]
    for state in STATES:
        assert list(SessionFlow(state).exits()) == allowed_from(state)
    # events are not members: the enum has the ten states only
    assert len(SessionFlow) == 10 and "start" not in SessionFlow.__members__
    start: Any = SessionFlow.start  # typed as a callable; at run time the event itself
    assert (start.name, start.machine) == ("start", SessionFlow)


@pytest.mark.parametrize("state", STATES)
def test_allowed_events_are_the_tables_without_guards(state: str) -> None:
    session = session_in(state, devices=0)  # the guard of permitted would hold it back
    assert session.allowed_events() == allowed_from(state)
    assert SessionFlow.allowed_events(session) == allowed_from(state)


def test_can_send_evaluates_guards_and_changes_nothing() -> None:
    session = session_in("checking_permissions", devices=0)
    assert SessionFlow.can_send(session, "permitted") is False
    session.devices = 2
    before = snapshot(session)
    assert SessionFlow.can_send(session, "permitted") is True
    assert SessionFlow.can_send(session, "start") is False  # not from here
    assert SessionFlow.can_send(session, "no_such_event") is False
    assert snapshot(session) == before  # asking does not move it
    assert session.state is SessionFlow.checking_permissions


# -- every allowed pair moves, every other pair is refused (in memory) ---------------------------


def _send_as_method(session: RecordingSession, event: str) -> RecordingSession:
    return session.send(event)


def _send_as_event(session: RecordingSession, event: str) -> RecordingSession:
    moved: RecordingSession = getattr(SessionFlow, event)(session)
    return moved


def _send_on_machine(session: RecordingSession, event: str) -> RecordingSession:
    SessionFlow.send(session, event)
    return session


SPELLINGS: dict[str, Callable[[RecordingSession, str], RecordingSession]] = {
    "entity.send": _send_as_method,
    "Flow.event(entity)": _send_as_event,
    "Flow.send(entity)": _send_on_machine,
}


@pytest.mark.parametrize("spelling", SPELLINGS)
@pytest.mark.parametrize("pair", ALLOWED, ids=pair_id)
def test_an_allowed_event_moves_to_its_target(pair: tuple[str, str], spelling: str) -> None:
    state, event = pair
    session = session_in(state)
    returned = SPELLINGS[spelling](session, event)
    assert returned is session
    assert session.state is SessionFlow(TABLE[pair])
    assert type(session.state) is SessionFlow
    assert session.version == 0  # in memory: nothing saved
    assert "state" in session.model_fields_set
    assert recorded_count(session) == 1  # announced with the next save
    # the field is still validated as the enum, and dumps as its value
    assert session.model_dump()["state"] == TABLE[pair]
    assert RecordingSession.model_validate_json(session.model_dump_json()).state is session.state


@pytest.mark.parametrize("spelling", SPELLINGS)
@pytest.mark.parametrize("pair", FORBIDDEN, ids=pair_id)
def test_a_forbidden_event_is_refused_and_changes_nothing(
    pair: tuple[str, str], spelling: str
) -> None:
    state, event = pair
    session = session_in(state)
    before = snapshot(session)
    with pytest.raises(TransitionError) as caught:
        SPELLINGS[spelling](session, event)
    error = caught.value
    assert (error.machine, error.state, error.event, error.entity_id) == (
        "SessionFlow",
        state,
        event,
        "s1",
    )
    assert error.reason and state in error.reason
    assert event in str(error) and state in str(error)
    assert snapshot(session) == before
    assert session.state is SessionFlow(state)


@pytest.mark.parametrize("event", ["bogus", "", "_table_", "idle", "Start"])
def test_an_unknown_event_is_refused_naming_the_events(event: str) -> None:
    session = session_in("idle")
    before = snapshot(session)
    with pytest.raises(TransitionError) as caught:
        session.send(event)
    assert caught.value.event == event and caught.value.state == "idle"
    assert "no such event" in caught.value.reason and "start" in caught.value.reason
    assert snapshot(session) == before


@pytest.mark.parametrize("event", [3, None, b"start", SessionFlow.idle])
def test_an_event_that_is_not_an_event_name_is_refused(event: Any) -> None:
    session = session_in("idle")
    before = snapshot(session)
    with pytest.raises(TransitionError):
        session.send(event)
    assert snapshot(session) == before


def test_the_guard_holds_permitted_back_until_the_session_has_devices() -> None:
    session = session_in("checking_permissions", devices=0)
    before = snapshot(session)
    with pytest.raises(TransitionError) as caught:
        session.send("permitted")
    assert "has_devices" in caught.value.reason
    assert (caught.value.state, caught.value.event) == ("checking_permissions", "permitted")
    assert snapshot(session) == before
    session.devices = 1
    session.send("permitted")
    assert session.state is SessionFlow.starting
    assert ("checking_permissions", "permitted") in NEEDS_DEVICES


def test_a_whole_session_from_idle_to_completed() -> None:
    session = RecordingSession(devices=1)
    assert session.state == "idle"
    for event in ["start", "validated", "permitted", "started", "pause", "paused_ok"]:
        session.send(event)
    assert session.state == "paused"
    for event in ["resume", "resumed", "pause", "paused_ok", "end", "ended"]:
        session.send(event)
    assert session.state is SessionFlow.completed
    assert session.allowed_events() == []
    assert recorded_count(session) == 12


# -- the same through store.send, on every backend -----------------------------------------------


def test_every_allowed_event_through_store_send(store: statekeep.Store) -> None:
    recorder = Recorder()
    store.on(RecordingSession.Transitioned, recorder)
    for n, (state, event) in enumerate(ALLOWED):
        id = f"ok{n:02d}"
        session = store.save(session_in(state, id=id))
        returned = store.send(session, event)
        assert returned is session
        target = SessionFlow(TABLE[state, event])
        assert session.state is target and session.version == 2
        stored = store.get(RecordingSession, id)
        assert stored.state is target and stored.version == 2
        assert recorder.moves()[-1] == (id, event, state, TABLE[state, event], 2)
    assert len(recorder.moves()) == len(ALLOWED)


def test_every_forbidden_event_through_store_send_stores_nothing(store: statekeep.Store) -> None:
    sessions = {state: store.save(session_in(state, id=f"in-{state}")) for state in STATES}
    stored_before = {s.id: s.model_dump() for s in store.find(RecordingSession)}
    recorder = Recorder()
    store.on(statekeep.Event, recorder)
    for state, event in FORBIDDEN:
        session = sessions[state]
        before = snapshot(session)
        with pytest.raises(TransitionError) as caught:
            store.send(session, event)
        error = caught.value
        assert (error.machine, error.state, error.event, error.entity_id) == (
            "SessionFlow",
            state,
            event,
            session.id,
        ), (state, event)
        assert error.reason
        assert snapshot(session) == before, (state, event)
    assert len(recorder) == 0  # no event: nothing was written
    assert {s.id: s.model_dump() for s in store.find(RecordingSession)} == stored_before


def test_store_send_of_a_new_entity_creates_it(store: statekeep.Store) -> None:
    session = store.send(RecordingSession(id="new"), "start")
    assert session.version == 1
    assert store.get(RecordingSession, "new").state is SessionFlow.validating


def test_store_send_refused_by_a_guard_stores_nothing(store: statekeep.Store) -> None:
    session = store.save(session_in("checking_permissions", devices=0))
    before = snapshot(session)
    with pytest.raises(TransitionError) as caught:
        store.send(session, "permitted")
    assert "has_devices" in caught.value.reason
    assert snapshot(session) == before
    assert store.get(RecordingSession, "s1").model_dump() == session.model_dump()


# -- guards ----------------------------------------------------------------------------------------


class GuardFlow(Machine):
    idle = State(initial=True)
    left, right = State(), State()
    done = State(final=True)

    by_field = idle.to(done, cond="ready")
    by_property = idle.to(done, cond="is_ready")
    by_method = idle.to(done, cond="check_ready")
    by_function = idle.to(done, cond="ready_here")
    by_callable = idle.to(done, cond=lambda job: job.ready)
    by_unless = idle.to(done, unless="blocked")
    by_both = idle.to(done, cond=["ready", "check_ready"], unless="blocked")
    by_keywords = idle.to(done, cond="enough")
    by_any_keywords = idle.to(done, cond="says_yes")
    # the first transition whose guards hold is taken
    choose = idle.to(left, cond="prefer_left") | idle.to(right)  # type: ignore[operator]
    # a name both the entity class and the machine have: the entity's
    by_shadowed = idle.to(done, cond="shadowed")
    back = (left | right).to(idle)
    finish = (left | right).to(done)

    def ready_here(job: Any) -> bool:  # noqa: N805  # the machine's: called with the entity
        return bool(job.ready)

    def shadowed(job: Any) -> bool:  # noqa: N805
        return False


class GuardJob(Entity, collection="mc_guard_job"):
    state: GuardFlow = GuardFlow.idle
    ready: bool = False
    blocked: bool = False
    prefer_left: bool = False
    size: int = 0
    calls: int = 0

    @property
    def is_ready(self) -> bool:
        return self.ready

    def check_ready(self) -> bool:
        return self.ready

    def enough(self, minimum: int) -> bool:
        return self.size >= minimum

    def says_yes(self, **data: Any) -> bool:
        return data.get("answer") == "yes"

    def shadowed(self) -> bool:
        return self.ready


@pytest.mark.parametrize(
    "event", ["by_field", "by_property", "by_method", "by_function", "by_callable"]
)
def test_a_cond_guard_of_each_kind(event: str) -> None:
    job = GuardJob()
    with pytest.raises(TransitionError) as caught:
        job.send(event)
    assert "held back by its guards" in caught.value.reason
    assert job.state == "idle"
    job.ready = True
    assert GuardFlow.can_send(job, event)
    job.send(event)
    assert job.state is GuardFlow.done


def test_an_unless_guard_holds_back_when_it_is_true() -> None:
    job = GuardJob(blocked=True)
    with pytest.raises(TransitionError) as caught:
        job.send("by_unless")
    assert "not blocked" in caught.value.reason
    job.blocked = False
    job.send("by_unless")
    assert job.state is GuardFlow.done


@pytest.mark.parametrize(
    ("ready", "blocked", "moves"),
    [(True, False, True), (False, False, False), (True, True, False), (False, True, False)],
)
def test_every_guard_of_a_transition_must_agree(ready: bool, blocked: bool, moves: bool) -> None:
    job = GuardJob(ready=ready, blocked=blocked)
    assert GuardFlow.can_send(job, "by_both") is moves
    if moves:
        job.send("by_both")
        assert job.state is GuardFlow.done
    else:
        with pytest.raises(TransitionError) as caught:
            job.send("by_both")
        for name in ("ready", "check_ready", "not blocked"):
            assert name in caught.value.reason
        assert job.state is GuardFlow.idle


def test_guards_get_the_keywords_given_to_send() -> None:
    job = GuardJob(size=5)
    with pytest.raises(TransitionError):
        job.send("by_keywords", minimum=6)
    assert GuardFlow.can_send(job, "by_keywords", minimum=5)
    assert job.state == "idle"
    job.send("by_keywords", minimum=5)
    assert job.state is GuardFlow.done

    other = GuardJob()
    with pytest.raises(TransitionError):
        other.send("by_any_keywords", answer="no")
    other.send("by_any_keywords", answer="yes")
    assert other.state is GuardFlow.done


def test_the_first_transition_whose_guards_hold_is_taken() -> None:
    left = GuardJob(prefer_left=True).send("choose")
    right = GuardJob(prefer_left=False).send("choose")
    assert (left.state, right.state) == (GuardFlow.left, GuardFlow.right)


def test_a_name_on_the_entity_class_comes_before_the_machines() -> None:
    job = GuardJob(ready=True)
    job.send("by_shadowed")  # the machine's shadowed() says False; the entity's says ready
    assert job.state is GuardFlow.done


class BoomError(Exception):
    pass


def test_a_guard_that_raises_changes_nothing() -> None:
    class Raising(Machine):
        idle = State(initial=True)
        done = State(final=True)
        go = idle.to(done, cond="explode")

    class RaisingJob(Entity, collection="mc_raising_guard"):
        state: Raising = Raising.idle

        def explode(self) -> bool:
            raise BoomError

    job = RaisingJob()
    before = snapshot(job)
    with pytest.raises(BoomError):
        job.send("go")
    assert snapshot(job) == before


# -- actions ---------------------------------------------------------------------------------------

log: list[str] = []


def _logger(what: str) -> Callable[[Any], None]:
    def act(job: Any) -> None:
        log.append(f"{what}@{job.state}")

    return act


class ActionFlow(Machine):
    idle = State(initial=True, exit=_logger("State(exit=)"))
    busy = State(enter=[_logger("State(enter=)"), "enter_by_name"])
    done = State(final=True)

    go = idle.to(busy, before=_logger("before="), after=_logger("after="))
    poke = busy.to(busy, internal=True, before=_logger("before="), after=_logger("after="))
    again = busy.to(busy)
    finish = busy.to(done)
    close = busy.to(done)

    def on_go(job: Any) -> None:  # noqa: N805  # a machine's function of a conventional name
        log.append(f"Flow.on_go@{job.state}")


class ActionJob(Entity, collection="mc_action_job"):
    state: ActionFlow = ActionFlow.idle
    touched: int = 0
    reason: str = ""

    def before_go(self) -> None:
        log.append(f"before_go@{self.state}")

    def on_go(self) -> None:
        log.append(f"on_go@{self.state}")

    def on_exit_idle(self) -> None:
        log.append(f"on_exit_idle@{self.state}")

    def on_enter_busy(self) -> None:
        log.append(f"on_enter_busy@{self.state}")
        self.touched += 1

    def enter_by_name(self) -> None:
        log.append(f"enter_by_name@{self.state}")

    def on_exit_busy(self) -> None:
        log.append(f"on_exit_busy@{self.state}")

    def after_go(self) -> None:
        log.append(f"after_go@{self.state}")

    def on_finish(self, why: str = "") -> None:
        log.append(f"on_finish: {why}")

    def on_close(self, reason: str = "") -> None:
        self.reason = reason


@pytest.fixture
def action_log() -> list[str]:
    log.clear()
    return log


def test_actions_run_in_order_around_the_change_of_state(action_log: list[str]) -> None:
    job = ActionJob()
    job.send("go")
    assert action_log == [
        "before=@idle",
        "before_go@idle",
        "on_go@idle",
        "Flow.on_go@idle",
        "State(exit=)@idle",
        "on_exit_idle@idle",
        # the state changes here
        "State(enter=)@busy",
        "enter_by_name@busy",
        "on_enter_busy@busy",
        "after=@busy",
        "after_go@busy",
    ]
    assert job.touched == 1


def test_an_internal_transition_runs_no_exit_or_enter_actions(action_log: list[str]) -> None:
    job = ActionJob().send("go")
    action_log.clear()
    job.send("poke")
    assert action_log == ["before=@busy", "after=@busy"]
    assert job.touched == 1
    job.send("again")  # to itself, not internal: leaves and enters again
    assert action_log[2:] == [
        "on_exit_busy@busy",
        "State(enter=)@busy",
        "enter_by_name@busy",
        "on_enter_busy@busy",
    ]
    assert job.touched == 2


def test_actions_get_the_keywords_given_to_send(action_log: list[str]) -> None:
    job = ActionJob().send("go")
    action_log.clear()
    job.send("finish", why="all done")
    assert job.state is ActionFlow.done
    assert action_log == ["on_finish: all done", "on_exit_busy@busy"]


def test_an_action_that_sets_a_field_before_the_move_keeps_the_move() -> None:
    job = ActionJob().send("go")
    job.send("close", reason="all done")  # on_close assigns job.reason, before the move
    assert (job.state, job.reason) == (ActionFlow.done, "all done")
    assert recorded_count(job) == 2


class FailingFlow(Machine):
    idle = State(initial=True)
    busy = State()
    done = State(final=True)

    go = idle.to(busy, before="maybe_fail_before", after="maybe_fail_after")
    finish = busy.to(done, after="maybe_fail_after")


class FailingJob(Entity, collection="mc_failing_job"):
    state: FailingFlow = FailingFlow.idle
    fail_at: str = ""  # which action raises: before, exit, enter or after
    note: str = "untouched"
    failures: int = 0

    def _fail(self, where: str) -> None:
        if self.fail_at == where:
            self.note = f"changed by {where}"  # changes of the action itself are put back too
            self.failures += 1
            raise BoomError

    def maybe_fail_before(self) -> None:
        self._fail("before")

    def on_exit_idle(self) -> None:
        self._fail("exit")

    def on_enter_busy(self) -> None:
        self._fail("enter")

    def maybe_fail_after(self) -> None:
        self._fail("after")


@pytest.mark.parametrize("fail_at", ["before", "exit", "enter", "after"])
def test_an_action_that_raises_leaves_the_entity_as_it_was(fail_at: str) -> None:
    job = FailingJob(fail_at=fail_at)
    before = snapshot(job)
    with pytest.raises(BoomError):
        job.send("go")
    assert snapshot(job) == before
    assert job.state is FailingFlow.idle and job.note == "untouched" and job.failures == 0


def test_an_action_that_raises_after_earlier_sends_keeps_those(store: statekeep.Store) -> None:
    recorder = Recorder()
    store.on(FailingJob.Transitioned, recorder)
    job = FailingJob(id="j")
    job.send("go")  # recorded, kept
    job.fail_at = "after"
    with pytest.raises(BoomError):
        job.send("finish")
    assert job.state is FailingFlow.busy and recorded_count(job) == 1
    store.save(job)
    assert recorder.moves() == [("j", "go", "idle", "busy", 1)]


def test_an_action_that_raises_in_store_send_stores_nothing(store: statekeep.Store) -> None:
    recorder = Recorder()
    store.on(statekeep.Event, recorder)
    job = store.save(FailingJob(id="j", state=FailingFlow.busy, fail_at="after"))
    recorder.clear()
    before = snapshot(job)
    with pytest.raises(BoomError):
        store.send(job, "finish")
    assert snapshot(job) == before
    assert store.get(FailingJob, "j").model_dump() == job.model_dump()
    assert len(recorder) == 0
    store.save(job)  # nothing of the failed send goes out with the next save
    assert recorder.names() == ["mc_failing_job.updated"]


class ChainFlow(Machine):
    idle = State(initial=True)
    ending = State()
    completed = State(final=True)
    end = idle.to(ending, after="fail_if_asked")
    ended = ending.to(completed)


class ChainJob(Entity, collection="mc_chain_job"):
    state: ChainFlow = ChainFlow.idle
    fail: bool = False

    def on_enter_ending(self) -> None:
        self.send("ended")  # an automatic transition, from an action

    def fail_if_asked(self) -> None:  # runs after on_enter_ending
        if self.fail:
            raise BoomError


def test_an_action_may_send_the_next_event(store: statekeep.Store) -> None:
    recorder = Recorder()
    store.on(ChainJob.Transitioned, recorder)
    job = store.send(ChainJob(id="c"), "end")
    assert job.state is ChainFlow.completed
    assert store.get(ChainJob, "c").state is ChainFlow.completed
    assert recorder.moves() == [
        ("c", "end", "idle", "ending", 1),
        ("c", "ended", "ending", "completed", 1),
    ]


def test_an_action_that_raises_after_a_chained_send_undoes_both(store: statekeep.Store) -> None:
    recorder = Recorder()
    store.on(ChainJob.Transitioned, recorder)
    job = ChainJob(id="c", fail=True)
    before = snapshot(job)
    with pytest.raises(BoomError):
        job.send("end")
    assert job.state is ChainFlow.idle
    assert snapshot(job) == before
    store.save(job)
    assert recorder.moves() == []
    assert store.get(ChainJob, "c").state is ChainFlow.idle


# -- async guards and actions ----------------------------------------------------------------------


class AsyncFlow(Machine):
    idle = State(initial=True)
    active = State()
    done = State(final=True)
    start = idle.to(active, cond="allowed")
    end = active.to(done, after="fail_if_asked")
    plain = idle.to(done)


class AsyncJob(Entity, collection="mc_async_job"):
    state: AsyncFlow = AsyncFlow.idle
    permit: bool = True
    entered: int = 0
    fail: bool = False

    async def allowed(self, **data: Any) -> bool:
        await asyncio.sleep(0)
        return self.permit and data.get("ok", True) is True

    async def on_enter_active(self) -> None:
        await asyncio.sleep(0)
        self.entered += 1

    async def fail_if_asked(self) -> None:
        await asyncio.sleep(0)
        if self.fail:
            self.entered = 99
            raise BoomError


def test_asend_awaits_async_guards_and_actions() -> None:
    async def main() -> None:
        job = AsyncJob()
        returned = await job.asend("start")
        assert returned is job
        assert (job.state, job.entered) == (AsyncFlow.active, 1)
        refused = AsyncJob(permit=False)
        before = snapshot(refused)
        with pytest.raises(TransitionError) as caught:
            await refused.asend("start")
        assert "allowed" in caught.value.reason
        assert snapshot(refused) == before
        with pytest.raises(TransitionError):
            await AsyncJob().asend("start", ok=False)  # keywords reach async guards too
        start: Any = AsyncFlow.start  # (typed as a callable: see test_machine_typing)
        other = await start.asend(AsyncJob())  # the event's own asend
        assert other.state is AsyncFlow.active
        failing = AsyncJob(state=AsyncFlow.active, fail=True)
        before = snapshot(failing)
        with pytest.raises(BoomError):
            await failing.asend("end")
        assert snapshot(failing) == before
        # asend also sends events whose callbacks are all plain functions
        assert (await AsyncJob().asend("plain")).state is AsyncFlow.done

    asyncio.run(main())


def test_a_sync_send_of_an_event_with_async_callbacks_is_refused(store: statekeep.Store) -> None:
    job = store.save(AsyncJob(id="a"))
    before = snapshot(job)
    sends: list[Callable[[], object]] = [
        lambda: job.send("start"),
        lambda: AsyncFlow.start(job),
        lambda: store.send(job, "start"),
    ]
    for send in sends:
        with pytest.raises(TransitionError) as caught:
            send()
        assert "asend" in caught.value.reason
        assert (caught.value.state, caught.value.event, caught.value.entity_id) == (
            "idle",
            "start",
            "a",
        )
        assert snapshot(job) == before
    assert AsyncFlow.can_send(job, "start") is False
    assert store.get(AsyncJob, "a").version == 1
    # an event of the same machine without async callbacks goes as usual
    assert store.send(job, "plain").state is AsyncFlow.done


def test_async_store_send_awaits_async_callbacks(run_async: RunAsync) -> None:
    async def body(store: statekeep.aio.AsyncStore) -> None:
        recorder = Recorder()
        store.on(AsyncJob.Transitioned, recorder)
        job = await store.save(AsyncJob(id="a"))
        refused = await store.save(AsyncJob(id="r", permit=False))
        await store.send(job, "start")
        assert (job.state, job.entered, job.version) == (AsyncFlow.active, 1, 2)
        stored = await store.get(AsyncJob, "a")
        assert (stored.state, stored.entered) == (AsyncFlow.active, 1)
        before = snapshot(refused)
        with pytest.raises(TransitionError):
            await store.send(refused, "start")
        assert snapshot(refused) == before
        job.fail = True
        await store.save(job)
        before = snapshot(job)
        with pytest.raises(BoomError):
            await store.send(job, "end")
        assert snapshot(job) == before
        assert (await store.get(AsyncJob, "a")).state is AsyncFlow.active
        for _ in range(200):
            if recorder.moves():
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        assert recorder.moves() == [("a", "start", "idle", "active", 2)]

    run_async(body)


# -- stored states: restored as members, found by an index, counted in one query -----------------


@pytest.mark.requires("persistent")
def test_a_reopened_store_restores_the_state_and_sending_goes_on(
    open_store: OpenStore,
) -> None:
    first = open_store()
    session = first.save(RecordingSession(id="s", devices=1))
    for event in ["start", "validated", "permitted", "started", "pause"]:
        first.send(session, event)
    first.close()

    again = open_store()
    loaded = again.get(RecordingSession, "s")
    assert loaded.state is SessionFlow.pausing and type(loaded.state) is SessionFlow
    assert loaded.version == 6
    assert loaded.allowed_events() == ["paused_ok"]
    with pytest.raises(TransitionError):
        again.send(loaded, "resume")
    again.send(loaded, "paused_ok")
    again.send(loaded, "end")
    again.send(loaded, "ended")
    found = next(iter(again.find(RecordingSession, state=SessionFlow.completed)))
    assert found.state is SessionFlow.completed and found.version == 9


def test_find_by_state(store: statekeep.Store) -> None:
    store.save_many(
        RecordingSession(id=f"s{n}", state=SessionFlow(STATES[n % 4 + 3])) for n in range(12)
    )
    paused = {s.id for s in store.find(RecordingSession, state=SessionFlow.paused)}
    assert paused == {"s3", "s7", "s11"}
    assert {s.id for s in store.find(RecordingSession, state="paused")} == paused
    assert {s.id for s in store.find(RecordingSession, RecordingSession.f.state == "paused")} == (
        paused
    )
    either = store.find(
        RecordingSession, RecordingSession.f.state.in_([SessionFlow.active, SessionFlow.paused])
    )
    assert {s.id for s in either} == {"s1", "s5", "s9", "s3", "s7", "s11"}
    assert store.count(RecordingSession, state=SessionFlow.starting) == 3
    for session in store.find(RecordingSession, state=SessionFlow.pausing):
        assert session.state is SessionFlow.pausing


def test_a_machine_field_is_an_indexed_column() -> None:
    spec = RecordingSession.__statekeep__.spec
    assert "state" in spec.columns
    (index,) = [index for index in spec.indexes if index.name == "state"]
    assert index.kind == "text" and index.default == "idle"


def _plan(store: statekeep.Store, **equals: Any) -> str:
    info = RecordingSession.__statekeep__
    lines: list[str] = store.backend.explain(info.spec, Query(info.filters((), equals)))
    return "\n".join(lines)


@pytest.mark.requires("sqlite")
def test_find_by_state_is_an_index_lookup_on_sqlite(store: statekeep.Store) -> None:
    store.save_many(RecordingSession(state=SessionFlow(STATES[n % 10])) for n in range(200))
    assert "USING INDEX mc_recording_session__state" in _plan(store, state=SessionFlow.paused)
    unindexed = _plan(store, devices=3)
    assert "SCAN" in unindexed and "INDEX" not in unindexed


@pytest.mark.requires("postgresql")
def test_find_by_state_is_an_index_lookup_on_postgresql(store_url: str) -> None:
    # without sequential scans, what the planner can do through the index it does through it
    with statekeep.open(f"{store_url}&options=-c%20enable_seqscan%3Doff") as store:
        store.save_many(RecordingSession(state=SessionFlow(STATES[n % 10])) for n in range(500))
        plan = _plan(store, state=SessionFlow.paused)
        assert "mc_recording_session__state" in plan and "Index" in plan
        assert "mc_recording_session__state" not in _plan(store, devices=3)


def test_count_by_state_is_one_grouped_query(
    store: statekeep.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert store.count_by(RecordingSession, "state") == {}  # nothing stored yet
    wanted = {"idle": 1, "active": 4, "paused": 2, "completed": 3}
    store.save_many(
        RecordingSession(state=SessionFlow(state), devices=n)
        for state, many in wanted.items()
        for n in range(many)
    )
    backend = store.backend
    calls: list[str] = []
    grouped, counted = backend.count_by, backend.count

    def count_by_spy(*args: Any) -> Any:
        calls.append("count_by")
        return grouped(*args)

    def count_spy(*args: Any) -> Any:
        calls.append("count")
        return counted(*args)

    monkeypatch.setattr(backend, "count_by", count_by_spy)
    monkeypatch.setattr(backend, "count", count_spy)
    counts = store.count_by(RecordingSession, "state")
    assert calls == ["count_by"]
    assert counts == {SessionFlow(state): n for state, n in wanted.items()}
    assert all(type(key) is SessionFlow for key in counts)
    # with conditions, still one query
    calls.clear()
    some = store.count_by(RecordingSession, "state", RecordingSession.f.devices >= 1)
    assert calls == ["count_by"]
    assert some == {SessionFlow.active: 3, SessionFlow.paused: 1, SessionFlow.completed: 2}
    assert store.count_by(RecordingSession, "state", state=SessionFlow.paused) == {
        SessionFlow.paused: 2
    }


def test_count_by_refuses_a_field_that_is_not_indexed(store: statekeep.Store) -> None:
    with pytest.raises(statekeep.QueryError):
        store.count_by(RecordingSession, "devices")
    with pytest.raises(statekeep.QueryError):
        store.count_by(RecordingSession, "no_such_field")


# -- the checks a machine's class gets when it is made -------------------------------------------


def test_no_initial_state_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="initial"):

        class NoInitial(Machine):
            idle = State()
            done = State(final=True)
            go = idle.to(done)


def test_two_initial_states_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="initial"):

        class TwoInitial(Machine):
            idle = State(initial=True)
            other = State(initial=True)
            done = State(final=True)
            go = idle.to(done)
            go_too = other.to(done)


def test_an_unreachable_state_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="island"):

        class Unreachable(Machine):
            idle = State(initial=True)
            island = State()
            done = State(final=True)
            go = idle.to(done)
            leave = island.to(done)


def test_a_state_with_no_way_out_that_is_not_final_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="stuck"):

        class DeadEnd(Machine):
            idle = State(initial=True)
            stuck = State()
            done = State(final=True)
            go = idle.to(stuck)
            finish = idle.to(done)


def test_a_final_state_with_a_way_out_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="final"):

        class LeakyFinal(Machine):
            idle = State(initial=True)
            done = State(final=True)
            go = idle.to(done)
            reopen = done.to(idle)


def test_a_state_object_used_twice_is_refused() -> None:
    shared = State(final=True)
    with pytest.raises(ConfigurationError, match="one State"):

        class Twice(Machine):
            idle = State(initial=True)
            a = shared
            b = shared
            go = idle.to(a)


def test_a_state_object_of_another_machine_is_refused() -> None:
    class First(Machine):
        idle = State(initial=True)
        done = State(final=True)
        go = idle.to(done)

    borrowed = First.done.declared
    with pytest.raises(ConfigurationError):

        class Second(Machine):
            idle = State(initial=True)
            done = borrowed
            go = idle.to(done)

    stranger = State(final=True)
    with pytest.raises(ConfigurationError, match="not a state"):

        class Third(Machine):
            idle = State(initial=True)
            done = State(final=True)
            go = idle.to(done)
            away = idle.to(stranger)


def test_a_member_that_is_not_a_state_is_refused() -> None:
    with pytest.raises(ConfigurationError):

        class Odd(Machine):
            idle = State(initial=True)
            done = State(final=True)
            three = 3
            go = idle.to(done)


def test_one_event_under_two_names_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="one event"):

        class Alias(Machine):
            idle = State(initial=True)
            done = State(final=True)
            go = idle.to(done)
            also = go


Loose: Any = State  # declarations type checkers would refuse, to see what happens at run time


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: Loose(initial="yes"), id="initial"),
        pytest.param(lambda: Loose(final=1), id="final"),
        pytest.param(lambda: Loose(description=3), id="description"),
        pytest.param(lambda: Loose(exit="not a name"), id="exit-not-a-name"),
        pytest.param(lambda: Loose(enter=["fine", 3]), id="enter-list-item"),
        pytest.param(lambda: Loose().to("done"), id="target"),
        pytest.param(lambda: Loose().to(Loose(), internal=True), id="internal-elsewhere"),
        pytest.param(lambda: Loose().to(Loose(), internal=1), id="internal-flag"),
        pytest.param(lambda: Loose().to(Loose(), cond=[3]), id="cond-list-item"),
        pytest.param(lambda: Loose(enter=3), id="enter-number"),
        pytest.param(lambda: Loose().to(Loose(), cond=3), id="cond-number"),
        pytest.param(lambda: Loose().to(Loose(), after=3.5), id="after-number"),
    ],
)
def test_bad_declarations_are_refused(make: Callable[[], object]) -> None:
    with pytest.raises(ConfigurationError):
        make()


def test_history_takes_a_flag() -> None:
    with pytest.raises(ConfigurationError, match="history"):

        class Flagged(Machine, history="yes"):
            idle = State(initial=True)
            done = State(final=True)
            go = idle.to(done)


# the names every machine has (methods, introspection, what an enum member has)
RESERVED = [
    "send",
    "asend",
    "allowed_events",
    "can_send",
    "states",
    "events",
    "transitions",
    "initial",
    "finals",
    "history",
    "to_mermaid",
    "final",
    "description",
    "exits",
    "declared",
    "name",
    "value",
    "mro",
]


def _machine_with_state_named(name: str) -> type:
    def body(namespace: dict[str, Any]) -> None:
        namespace["idle"] = State(initial=True)
        namespace[name] = State(final=True)
        namespace["go"] = namespace["idle"].to(namespace[name])

    return types.new_class("Reserved", (Machine,), {}, body)


def _machine_with_event_named(name: str) -> type:
    def body(namespace: dict[str, Any]) -> None:
        namespace["idle"] = State(initial=True)
        namespace["done"] = State(final=True)
        namespace[name] = namespace["idle"].to(namespace["done"])

    return types.new_class("Reserved", (Machine,), {}, body)


@pytest.mark.parametrize(
    "name",
    [name for name in RESERVED],
)
def test_a_state_with_a_reserved_name_is_a_configuration_error(name: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        _machine_with_state_named(name)


@pytest.mark.parametrize("name", RESERVED)
def test_an_event_with_a_reserved_name_is_a_configuration_error(name: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        _machine_with_event_named(name)


def test_an_event_name_cannot_start_with_an_underscore() -> None:
    with pytest.raises(ConfigurationError):
        _machine_with_event_named("_hidden")


class NamedFlow(Machine):
    """Names that no class has: the machine is made; a class that binds it is refused."""

    idle = State(initial=True)
    busy = State(enter="missing_enter", exit="missing_exit")
    done = State(final=True)
    by_cond = idle.to(done, cond="missing_cond")
    by_unless = idle.to(done, unless="missing_unless")
    by_before = idle.to(done, before="missing_before")
    by_after = idle.to(done, after="missing_after")
    go = idle.to(busy)
    finish = busy.to(done)


@pytest.mark.parametrize(
    "missing",
    [
        "missing_cond",
        "missing_unless",
        "missing_before",
        "missing_after",
        "missing_enter",
        "missing_exit",
    ],
)
def test_an_unknown_guard_or_action_name_is_refused_when_a_class_binds_it(missing: str) -> None:
    provided = {
        name: (lambda self: True)
        for name in (
            "missing_cond",
            "missing_unless",
            "missing_before",
            "missing_after",
            "missing_enter",
            "missing_exit",
        )
        if name != missing
    }

    def body(namespace: dict[str, Any]) -> None:
        namespace["__module__"] = __name__
        namespace["__annotations__"] = {"state": NamedFlow}
        namespace["state"] = NamedFlow.idle
        namespace.update(provided)

    with pytest.raises(ConfigurationError, match=missing):
        types.new_class("Binder", (Entity,), {"collection": "mc_binder"}, body)
    # with every name there, the class is made
    namespace_full = {**provided, missing: lambda self: True}

    def full(namespace: dict[str, Any]) -> None:
        namespace["__module__"] = __name__
        namespace["__annotations__"] = {"state": NamedFlow}
        namespace["state"] = NamedFlow.idle
        namespace.update(namespace_full)

    made: Any = types.new_class("Binder", (Entity,), {"collection": "mc_binder"}, full)
    assert made().send("go").state is NamedFlow.busy


def test_a_class_refused_for_an_unknown_guard_leaves_its_collection_free() -> None:
    class Guarded(Machine):
        idle = State(initial=True)
        done = State(final=True)
        go = idle.to(done, cond="ready")

    with pytest.raises(ConfigurationError, match="ready"):

        class Typo(Entity, collection="mc_refused_then_fixed"):
            state: Guarded = Guarded.idle
            raedy: bool = True

    class Fixed(Entity, collection="mc_refused_then_fixed"):
        state: Guarded = Guarded.idle
        ready: bool = True

    assert Fixed().send("go").state is Guarded.done


# -- Mermaid ---------------------------------------------------------------------------------------

MERMAID = """\
stateDiagram-v2
    [*] --> idle
    idle --> validating : start
    validating --> checking_permissions : validated
    checking_permissions --> starting : permitted [has_devices]
    starting --> active : started
    active --> pausing : pause
    active --> ending : end
    pausing --> paused : paused_ok
    paused --> resuming : resume
    paused --> ending : end
    resuming --> active : resumed
    ending --> completed : ended
    completed --> [*]
"""


def test_to_mermaid() -> None:
    assert SessionFlow.to_mermaid() == MERMAID
    lines = SessionFlow.to_mermaid().splitlines()
    assert lines[0] == "stateDiagram-v2" and lines[1] == "    [*] --> idle"
    transitions = [line for line in lines if " : " in line]
    assert len(transitions) == len(TABLE)
    for (state, event), target in TABLE.items():
        assert any(line.startswith(f"    {state} --> {target} : {event}") for line in transitions)


@pytest.mark.parametrize("current", [SessionFlow.paused, "paused"])
def test_to_mermaid_highlights_the_current_state(current: Any) -> None:
    drawn = SessionFlow.to_mermaid(current=current)
    assert drawn.startswith(MERMAID)
    extra = drawn[len(MERMAID) :].splitlines()
    assert len(extra) == 2
    assert extra[0].strip().startswith("classDef current ")
    assert extra[1] == "    class paused current"
    session = session_in("active")
    assert SessionFlow.to_mermaid(current=session.state).endswith("    class active current\n")


def test_to_mermaid_shows_descriptions_and_unless_guards() -> None:
    class Described(Machine):
        idle = State("waiting: for input", initial=True)
        done = State(final=True)
        go = idle.to(done, cond="ready", unless="blocked")

    drawn = Described.to_mermaid()
    assert "    idle : waiting - for input\n" in drawn
    assert "    idle --> done : go [ready and not blocked]\n" in drawn


class Other(Machine):
    elsewhere = State(initial=True)
    gone = State(final=True)
    leave = elsewhere.to(gone)


@pytest.mark.parametrize(
    "current",
    [
        "bogus",
        3,
        Other.elsewhere,
        pytest.param(
            RecordingSession(),
            id="the-entity-itself",
        ),
    ],
)
def test_to_mermaid_refuses_an_unknown_current_state(current: Any) -> None:
    with pytest.raises(ConfigurationError):
        SessionFlow.to_mermaid(current=current)


# -- an entity with two machines; a plain pydantic model ----------------------------------------


class Light(Machine):
    off = State(initial=True)
    on = State()
    broken = State(final=True)
    switch_on = off.to(on)
    switch_off = on.to(off)
    smash = (off | on).to(broken)


class Lamp(Entity, collection="mc_lamp"):
    state: SessionFlow = SessionFlow.idle
    light: Light = Light.off
    spare: Light = Light.off

    def has_devices(self) -> bool:
        return True


def test_an_entity_with_several_machine_fields_says_which() -> None:
    lamp = Lamp()
    with pytest.raises(ConfigurationError, match="field"):
        lamp.send("switch_on")
    with pytest.raises(ConfigurationError):
        lamp.send("switch_on", field="nope")
    lamp.send("switch_on", field="light")
    assert (lamp.light, lamp.spare, lamp.state) == (Light.on, Light.off, SessionFlow.idle)
    with pytest.raises(ConfigurationError):
        Light.send(lamp, "switch_on")  # two fields of Light: which one?
    Light.send(lamp, "smash", field="spare")
    assert lamp.spare is Light.broken
    lamp.send("start", field="state")
    assert lamp.allowed_events(field="light") == ["switch_off", "smash"]
    assert lamp.allowed_events(field="state") == ["validated"]


class Plain(pydantic.BaseModel):
    light: Light = Light.off


def test_a_plain_pydantic_model_moves_too() -> None:
    lamp = Plain()
    Light.send(lamp, "switch_on")
    assert lamp.light is Light.on
    assert Light.allowed_events(lamp) == ["switch_off", "smash"]
    with pytest.raises(TransitionError) as caught:
        Light.switch_on(lamp)
    assert caught.value.entity_id == ""
    assert lamp.light is Light.on
