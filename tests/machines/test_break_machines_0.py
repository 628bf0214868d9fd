"""Defects of statekeep.machines found by trying to break it as a new user
would: each test states what a user can expect and fails against the current
code, fixed since; each test names what it guards.

Everything here runs on memory:// unless the defect is about what a backend
keeps (then on every backend of the registry, through the suite's `store`).
Collections are prefixed `bk0_`."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Annotated, Any
from unittest import mock

import pydantic
import pytest

import statekeep
import statekeep.aio
from statekeep import (
    ConfigurationError,
    ConflictError,
    Entity,
    Indexed,
    Machine,
    State,
    TransitionError,
    ValidationError,
)

# -- shared machines and entities ---------------------------------------------------------------


class BkFlow(Machine):
    idle = State(initial=True)
    active = State()
    done = State(final=True)
    start = idle.to(active, cond="ready")
    end = active.to(done)


class BkJob(Entity, collection="bk0_job"):
    state: BkFlow = BkFlow.idle
    ready: bool = True
    note: str = ""


@pytest.fixture
def mem() -> Iterator[statekeep.Store]:
    with statekeep.open("memory://") as store:
        yield store


def _moves(store: statekeep.Store, cls: type[Entity]) -> list[tuple[str, str, str, int]]:
    """(source, event, target, version) of every Transitioned event of cls, as delivered."""
    seen: list[tuple[str, str, str, int]] = []

    def note(event: Any) -> None:
        seen.append((event.source, event.event, event.target, event.version))

    store.on(cls.Transitioned, note)
    return seen


# == stored state and what the store keeps =======================================================


class BkReview(Machine):
    draft = State(initial=True)
    published = State(final=True)
    publish = draft.to(published)


class BkPost(Entity, collection="bk0_post"):
    state: BkReview = BkReview.draft
    title: str = ""

    @pydantic.model_validator(mode="after")
    def published_posts_have_titles(self) -> BkPost:
        if self.state is BkReview.published and not self.title:
            raise ValueError("a published post needs a title")
        return self


def test_a_send_the_model_refuses_does_not_store_an_unreadable_row(
    store: statekeep.Store,
) -> None:
    with pytest.raises(ValidationError):
        BkPost().state = BkReview.published  # assignment is refused: the model says why
    post = store.save(BkPost())
    with contextlib.suppress(ValidationError, TransitionError):
        store.send(post, "publish")  # the same move through the machine
    # whatever send did, what is stored can be read back
    assert store.get(BkPost, post.id).state is BkReview.draft
    assert len(list(store.find(BkPost))) == 1


class _Interrupt(BaseException):
    """Stands for KeyboardInterrupt (a BaseException, not an Exception)."""


def test_an_interrupt_after_the_commit_leaves_the_entity_as_stored(
    mem: statekeep.Store,
) -> None:
    armed = [True]

    def interrupted(event: Any) -> None:  # Ctrl-C while after-commit handlers run
        if armed[0]:
            armed[0] = False
            raise _Interrupt

    mem.on(BkJob.Transitioned, interrupted)
    job = mem.save(BkJob())
    with pytest.raises(_Interrupt):
        mem.send(job, "start")
    stored = mem.get(BkJob, job.id)
    assert (stored.state, stored.version) == (BkFlow.active, 2)  # committed
    # store.save leaves the entity as committed in the same case; send does not
    assert (job.state, job.version) == (stored.state, stored.version)


def test_async_send_cancelled_during_its_commit_leaves_the_entity_as_stored() -> None:
    async def main() -> tuple[tuple[Any, int], tuple[Any, int]]:
        async with await statekeep.aio.open("memory://") as store:
            committing = threading.Event()

            def slow(event: Any) -> None:  # runs on the worker, after the commit
                committing.set()
                time.sleep(0.2)

            store.on(BkJob.Transitioned, slow)
            job = await store.save(BkJob())
            task = asyncio.create_task(store.send(job, "start"))
            while not committing.is_set():
                await asyncio.sleep(0.001)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            stored = await store.get(BkJob, job.id)
            return (job.state, job.version), (stored.state, stored.version)

    mine, stored = asyncio.run(main())
    assert stored == (BkFlow.active, 2)
    assert mine == stored  # AsyncStore.save gets this right: "the entity's version tells"


def test_retry_announces_only_the_moves_it_stores(mem: statekeep.Store) -> None:
    moves = _moves(mem, BkJob)
    job = mem.save(BkJob())
    other = mem.get(BkJob, job.id)
    mem.send(other, "start")  # another writer: idle -> active, version 2
    job.send("start")  # the caller, stale, in memory
    mem.send(job, "end", retry=True)  # read again (active, v2), end sent again: v3
    assert (job.state, job.version) == (BkFlow.done, 3)
    assert moves == [("idle", "start", "active", 2), ("active", "end", "done", 3)]


def test_a_retried_send_in_a_block_that_rolls_back_loses_no_update(
    mem: statekeep.Store,
) -> None:
    job = mem.save(BkJob())
    other = mem.get(BkJob, job.id)
    other.note = "the other writer's"
    mem.save(other)  # version 2
    with contextlib.suppress(_RollbackError), mem.transaction():
        mem.send(job, "start", retry=True)  # read again (v2), sent, saved as v3
        raise _RollbackError
    assert job.state is BkFlow.idle
    # as it was (docs), or as read again: never the version read again with the old content
    assert (job.version, job.note) in {(1, ""), (2, "the other writer's")}
    job.ready = False
    with contextlib.suppress(ConflictError):
        mem.save(job)  # stale: a conflict, as for any stale entity
    assert mem.get(BkJob, job.id).note == "the other writer's"


class _RollbackError(Exception):
    pass


class BkAbortable(Machine):
    idle = State(initial=True)
    active = State()
    aborted = State(final=True)
    start = idle.to(active)
    abort = (idle | active).to(aborted)


class BkAbortJob(Entity, collection="bk0_abort_job"):
    state: BkAbortable = BkAbortable.idle

    def before_start(self) -> None:
        self.send("abort")  # a before-action that sends


def test_a_before_action_that_sends_cannot_move_the_entity_out_of_a_final_state(
    mem: statekeep.Store,
) -> None:
    moves = _moves(mem, BkAbortJob)
    job = mem.save(BkAbortJob())
    with contextlib.suppress(TransitionError, ConfigurationError):
        mem.send(job, "start")
    stored = mem.get(BkAbortJob, job.id)
    chain = [(source, target) for source, _, target, _ in moves]
    # every announced move starts where the one before it ended, and the last is what is stored
    assert all(a[1] == b[0] for a, b in itertools.pairwise(chain)), chain
    assert not chain or chain[-1][1] == stored.state
    assert not any(source == "aborted" for source, _ in chain)


class BkChained(Machine, history=True):
    idle = State(initial=True)
    active = State()
    done = State(final=True)
    start = idle.to(active)
    end = active.to(done)


class BkChainJob(Entity, collection="bk0_chain_job"):
    state: BkChained = BkChained.idle

    def after_start(self) -> None:
        self.send("end")  # an after-action that sends: the move is kept (commit 2090a2a)


def test_history_of_a_chained_send_matches_its_events(mem: statekeep.Store) -> None:
    moves = _moves(mem, BkChainJob)
    job = mem.save(BkChainJob())
    mem.send(job, "start")
    assert [(s, e, t) for s, e, t, _ in moves] == [
        ("idle", "start", "active"),
        ("active", "end", "done"),
    ]
    steps = [(r.source, r.event, r.target) for r in mem.history(job)]
    assert steps == [("idle", "start", "active"), ("active", "end", "done")]


class BkAudit(Entity, collection="bk0_audit"):
    job: str = ""


_audit_store: list[statekeep.Store] = []


class BkAuditFlow(Machine):
    idle = State(initial=True)
    done = State(final=True)
    go = idle.to(done)


class BkAuditJob(Entity, collection="bk0_audit_job"):
    state: BkAuditFlow = BkAuditFlow.idle
    broken: bool = False

    def on_enter_done(self) -> None:
        _audit_store[0].save(BkAudit(job=self.id))  # the action writes to the store
        if self.broken:
            raise RuntimeError("the action failed")


def test_transition_many_keeps_no_action_writes_of_moves_it_did_not_store(
    mem: statekeep.Store,
) -> None:
    _audit_store[:] = [mem]
    single = mem.save(BkAuditJob(broken=True))
    with pytest.raises(RuntimeError):
        mem.send(single, "go")
    assert mem.count(BkAudit) == 0  # store.send: the action's write rolled back with the move
    mem.delete(single)
    mem.save_many([BkAuditJob(), BkAuditJob(), BkAuditJob(broken=True)])
    with pytest.raises(RuntimeError):
        mem.transition_many(BkAuditJob, "go")
    assert mem.count(BkAuditJob, state="done") == 0  # the chunk was not stored...
    assert mem.count(BkAudit) == 0  # ...yet its actions' writes are


_meddling: dict[str, Any] = {}


class BkMeddled(Machine):
    idle = State(initial=True)
    done = State(final=True)
    go = idle.to(done, cond="meddle")

    def meddle(entity: Any) -> bool:  # noqa: N805  # the machine's: called with the entity
        """Another writer, each time the guard runs: it bumps the first entity during
        the three chunk attempts, then moves the second one out of team a."""
        store: statekeep.Store = _meddling["store"]
        _meddling["calls"] += 1
        if _meddling["calls"] in (1, 3, 5):
            first = store.get(BkMeddledJob, "bk-first")
            first.note += "x"
            store.save(first)
        elif _meddling["calls"] == 7:
            second = store.get(BkMeddledJob, "bk-second")
            second.team = "b"
            store.save(second)
        return True


class BkMeddledJob(Entity, collection="bk0_meddled_job"):
    state: BkMeddled = BkMeddled.idle
    team: Annotated[str, Indexed()] = "a"
    note: str = ""


def test_transition_many_moves_only_entities_that_still_match(mem: statekeep.Store) -> None:
    mem.save_many([BkMeddledJob(id="bk-first"), BkMeddledJob(id="bk-second")])
    _meddling.update(store=mem, calls=0)
    report = mem.transition_many(BkMeddledJob, "go", team="a", chunk_size=2)
    assert report.retried_chunks == 3  # the chunk met another writer three times running
    second = mem.get(BkMeddledJob, "bk-second")
    assert second.team == "b"  # it no longer matches team="a"...
    assert second.state is BkMeddled.idle  # ...so it is not moved
    assert "bk-second" in report.skipped


# == asyncio ====================================================================================


class BkApproval(Machine):
    idle = State(initial=True)
    active = State()
    done = State(final=True)
    start = idle.to(active, cond="approved")
    end = active.to(done)


class BkApprovalJob(Entity, collection="bk0_approval_job"):
    state: BkApproval = BkApproval.idle

    async def approved(self) -> bool:
        await asyncio.sleep(0.01)
        return True


def test_asend_does_not_take_an_event_from_a_state_the_entity_has_left() -> None:
    async def main() -> list[Any]:
        job = BkApprovalJob()
        both = job.asend("start"), job.asend("start")
        return list(await asyncio.gather(*both, return_exceptions=True))

    results = asyncio.run(main())
    refused = [r for r in results if isinstance(r, TransitionError)]
    assert len(refused) == 1, results  # the second 'start' is from active: not declared


def test_a_refused_async_send_does_not_undo_a_concurrent_one() -> None:
    async def main() -> tuple[tuple[Any, int], tuple[Any, int]]:
        async with await statekeep.aio.open("memory://") as store:
            job = await store.save(BkApprovalJob())
            await asyncio.gather(
                store.send(job, "start"), store.send(job, "start"), return_exceptions=True
            )
            stored = await store.get(BkApprovalJob, job.id)
            return (job.state, job.version), (stored.state, stored.version)

    mine, stored = asyncio.run(main())
    assert stored == (BkApproval.active, 2)
    assert mine == stored


# == guards and actions ==========================================================================


class BkDoor(Machine):
    closed = State(initial=True)
    locked = State()
    lock = closed.to(locked)
    unlock = locked.to(closed, cond="has_key")


class BkRoom(Entity, collection="bk0_room"):
    door: BkDoor = BkDoor.locked
    opened_by: str = ""

    def has_key(self, key: str = "") -> bool:
        return key == "brass"

    def on_enter_closed(self, by: str = "") -> None:
        self.opened_by = by


def test_each_callback_gets_the_keywords_it_takes() -> None:
    room = BkRoom()
    room.send("unlock", key="brass", by="ann")  # TypeError: has_key() got 'by'
    assert room.door is BkDoor.closed and room.opened_by == "ann"


_pending: list[Coroutine[Any, Any, Any]] = []


def _asks_remotely(entity: Any) -> Any:
    """A guard that wraps an async check (a lambda would do the same)."""
    check = entity.remote_ok()
    _pending.append(check)
    return check


class BkRemote(Machine):
    a = State(initial=True)
    b = State(final=True)
    go = a.to(b, cond=_asks_remotely)


class BkRemoteJob(Entity, collection="bk0_remote_job"):
    state: BkRemote = BkRemote.a

    async def remote_ok(self) -> bool:
        return False


def test_a_guard_that_returns_a_coroutine_does_not_pass_unawaited() -> None:
    job = BkRemoteJob()
    try:
        with contextlib.suppress(TransitionError, TypeError):
            job.send("go")
        assert job.state is BkRemote.a  # remote_ok() says False
    finally:
        for check in _pending:
            check.close()
        _pending.clear()


async def _yields_false(entity: Any) -> AsyncIterator[bool]:
    yield False


def test_an_async_generator_guard_does_not_always_pass() -> None:
    try:

        class BkGenFlow(Machine):
            a = State(initial=True)
            b = State(final=True)
            go = a.to(b, cond=_yields_false)

        class BkGenJob(Entity, collection="bk0_gen_job"):
            state: BkGenFlow = BkGenFlow.a

    except ConfigurationError:
        return  # refused when declared: fine
    job = BkGenJob()
    with contextlib.suppress(TransitionError):
        job.send("go")
    assert job.state is BkGenFlow.a


class BkGuarded(Machine):
    idle = State(initial=True)
    done = State(final=True)
    go = idle.to(done, cond="allowed")


class BkGuardedJob(Entity, collection="bk0_guarded_job"):
    state: BkGuarded = BkGuarded.idle

    def allowed(self) -> bool:
        return True


def test_a_patched_guard_method_is_the_one_called() -> None:
    with mock.patch.object(BkGuardedJob, "allowed", return_value=False):
        assert not BkGuardedJob().allowed()
        assert not BkGuarded.can_send(BkGuardedJob(), "go")


class BkExits(Machine):
    x = State(initial=True)
    y = State(final=True)
    exit_x = x.to(y)  # its on_<event> is on_exit_x, as is x's on_exit_<state>


def test_a_conventional_callback_runs_once_per_send() -> None:
    calls: list[str] = []
    try:

        class BkExitsJob(Entity, collection="bk0_exits_job"):
            state: BkExits = BkExits.x

            def on_exit_x(self) -> None:
                calls.append("on_exit_x")

    except ConfigurationError:
        return  # the clash refused when declared: fine
    BkExitsJob().send("exit_x")
    assert calls == ["on_exit_x"]


class BkBaseChecks(Machine):
    """A machine with no states: what an enum may be subclassed from, to share callbacks."""

    def approved(entity: Any) -> bool:  # noqa: N805  # the machine's: called with the entity
        return True


class BkDerived(BkBaseChecks):
    idle = State(initial=True)
    done = State(final=True)
    go = idle.to(done, cond="approved")


def test_a_guard_of_the_base_machine_is_found() -> None:
    class BkDerivedJob(Entity, collection="bk0_derived_job"):
        state: BkDerived = BkDerived.idle

    assert BkDerivedJob().send("go").state is BkDerived.done


def test_a_classmethod_of_the_machine_is_a_function_of_its_body() -> None:
    class BkClassChecks(Machine):
        idle = State(initial=True)
        done = State(final=True)
        go = idle.to(done, cond="approved")

        @classmethod
        def approved(cls, entity: Any) -> bool:
            return True

    class BkClassJob(Entity, collection="bk0_class_job"):
        state: BkClassChecks = BkClassChecks.idle

    assert BkClassJob().send("go").state is BkClassChecks.done


class BkPlain(Machine):
    idle = State(initial=True)
    done = State(final=True)
    go = idle.to(done)


class BkFrozen(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True)
    state: BkPlain = BkPlain.idle


def test_a_frozen_model_is_not_moved() -> None:
    model = BkFrozen()
    before = hash(model)
    with contextlib.suppress(
        pydantic.ValidationError, ValidationError, TransitionError, ConfigurationError
    ):
        BkPlain.send(model, "go")
    assert model.state is BkPlain.idle
    assert hash(model) == before


# The definition, input, diagram and record cases of the first round are in
# test_break_machines_1.py (the second round kept them).
