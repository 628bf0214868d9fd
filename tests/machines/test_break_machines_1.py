"""Defects of statekeep.machines found by trying to break it as a new user
would: each test states what a user can expect and fails against the current
code, fixed since; each test names what it guards.

Written against 7942709 and checked again against the working tree of
2d6f483+ (the defects fixed meanwhile were taken out). Everything runs on
memory://: none of these depends on the backend. Collections are prefixed
`bk_`."""

from __future__ import annotations

import contextlib
import dataclasses
import pickle
from collections.abc import Callable, Iterator
from typing import Any

import pydantic
import pytest

import statekeep
from statekeep import (
    ConfigurationError,
    Entity,
    Machine,
    State,
    TransitionError,
    ValidationError,
)
from statekeep.machines import history_class

# -- shared machines and entities ---------------------------------------------------------------


class BkFlow(Machine):
    idle = State(initial=True)
    active = State()
    done = State(final=True)
    start = idle.to(active, cond="ready")
    end = active.to(done)


class BkJob(Entity, collection="bk_job"):
    state: BkFlow = BkFlow.idle
    ready: bool = True
    note: str = ""


@pytest.fixture
def mem() -> Iterator[statekeep.Store]:
    with statekeep.open("memory://") as store:
        yield store


# == what a send leaves, in memory and stored ===================================================


class BkReview(Machine):
    draft = State(initial=True)
    published = State(final=True)
    publish = draft.to(published)


class BkPost(Entity, collection="bk_post"):
    state: BkReview = BkReview.draft
    title: str = ""

    @pydantic.model_validator(mode="after")
    def published_posts_have_titles(self) -> BkPost:
        if self.state is BkReview.published and not self.title:
            raise ValueError("a published post needs a title")
        return self


def test_a_send_the_model_refuses_changes_nothing(mem: statekeep.Store) -> None:
    post = mem.save(BkPost())
    with pytest.raises((ValidationError, TransitionError)):
        post.send("publish")  # refused by the model: "nothing has changed"
    assert post.state is BkReview.draft
    post.title = ""  # an unrelated save of the refused entity...
    mem.save(post)
    assert mem.get(BkPost, post.id).state is BkReview.draft  # ...stores no unreadable row


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


class BkPlain(Machine):
    idle = State(initial=True)
    done = State(final=True)
    go = idle.to(done)


@dataclasses.dataclass(frozen=True)
class BkFrozenRecord:
    state: BkPlain = BkPlain.idle


def test_a_frozen_dataclass_is_not_moved() -> None:
    record = BkFrozenRecord()
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.state = BkPlain.done  # type: ignore[misc]  # what frozen means
    before = hash(record)
    with contextlib.suppress(ConfigurationError, TransitionError, AttributeError):
        BkPlain.send(record, "go")
    assert record.state is BkPlain.idle
    assert hash(record) == before


# == definitions =================================================================================


def _define(source: str) -> None:
    exec(source, {"Machine": Machine, "State": State})


@pytest.mark.parametrize(
    "source",
    [
        # an event named like a state
        "class M(Machine):\n a = State(initial=True)\n b = State(final=True)\n b = a.to(b)\n",
        # inheriting from a machine with states
        "class M(Machine):\n a = State(initial=True)\n b = State(final=True)\n go = a.to(b)\n"
        "class N(M):\n pass\n",
        # a state with one of the names enum keeps for itself
        "class M(Machine):\n a = State(initial=True)\n _order_ = State(final=True)\n"
        " go = a.to(_order_)\n",
        "class M(Machine):\n a = State(initial=True)\n _x_ = State(final=True)\n go = a.to(_x_)\n",
    ],
    ids=["event-named-like-a-state", "subclass-of-a-machine", "state-_order_", "state-_x_"],
)
def test_a_definition_mistake_is_a_configuration_error(source: str) -> None:
    with pytest.raises(ConfigurationError):
        _define(source)


def test_history_declared_on_a_base_machine_is_not_lost() -> None:
    try:

        class BkHistoryBase(Machine, history=True):
            pass

    except ConfigurationError:
        return  # refused where it cannot apply: fine

    class BkHistoryDerived(BkHistoryBase):
        a = State(initial=True)
        b = State(final=True)
        go = a.to(b)

    assert BkHistoryDerived.history


class BkTaken(Entity, collection="bk_taken_transitions"):
    """A user's own collection, named as another class's history collection will be."""

    what: str = ""


class BkKept(Machine, history=True):
    a = State(initial=True)
    b = State(final=True)
    go = a.to(b)


def test_a_history_collection_clash_is_refused_when_the_class_is_defined(
    mem: statekeep.Store,
) -> None:
    try:

        class BkTakenOwner(Entity, collection="bk_taken"):
            state: BkKept = BkKept.a

    except ConfigurationError:
        return  # refused when defined: fine
    taken = mem.save(BkTakenOwner())
    mem.send(taken, "go")  # ConfigurationError here, in the middle of a send


def test_a_machine_field_resolved_by_model_rebuild_is_bound() -> None:
    BkEarly.model_rebuild()
    early = BkEarly(state=BkLate.idle)
    assert early.send("go").state is BkLate.done


class BkEarly(Entity, collection="bk_early"):
    state: BkLate | None = None


class BkLate(Machine):
    idle = State(initial=True)
    done = State(final=True)
    go = idle.to(done)


# == hostile input: typed errors ================================================================

_UNHASHABLE: Any = []


@pytest.mark.parametrize(
    "call",
    [
        lambda job: BkFlow.send(job, "start", field=_UNHASHABLE),
        lambda job: BkFlow.can_send(job, "start", field=_UNHASHABLE),
        lambda job: BkFlow.allowed_events(job, field=_UNHASHABLE),
    ],
    ids=["send", "can_send", "allowed_events"],
)
def test_an_unhashable_field_is_a_configuration_error(call: Callable[[BkJob], Any]) -> None:
    with pytest.raises(ConfigurationError):
        call(BkJob())


def test_transition_many_refuses_an_unhashable_event(mem: statekeep.Store) -> None:
    mem.save(BkJob())
    event: Any = []
    with pytest.raises(TransitionError):
        mem.transition_many(BkJob, event)


# == diagrams and records ========================================================================


class BkKeywords(Machine):
    """States named as Mermaid stateDiagram keywords (plausible names)."""

    start_here = State(initial=True)
    default = State()
    note = State()
    scale = State(final=True)
    pick = start_here.to(default)
    annotate = default.to(note)
    resize = note.to(scale)


# what stateDiagram-v2's lexer takes as a keyword where a state id is expected (checked with
# mermaid 10.9.8's parser: a diagram using one of these as an id fails to parse)
_MERMAID_KEYWORDS = {"default", "state", "note", "scale", "classdef", "acctitle"}


def test_to_mermaid_output_parses_whatever_the_state_names() -> None:
    ids: set[str] = set()
    for line in BkKeywords.to_mermaid(current=BkKeywords.note).splitlines()[1:]:
        text = line.strip()
        if "-->" in text:
            left, right = text.split("-->", 1)
            ids.update({left.strip(), right.split(":", 1)[0].strip()})
        elif text.startswith("class "):
            ids.add(text.split()[1])
    ids.discard("[*]")
    assert not {name.lower() for name in ids} & _MERMAID_KEYWORDS, sorted(ids)


class BkPickled(Machine, history=True):
    a = State(initial=True)
    b = State(final=True)
    go = a.to(b)


class BkPickledJob(Entity, collection="bk_pickled_job"):
    state: BkPickled = BkPickled.a


def test_a_history_record_can_be_pickled(mem: statekeep.Store) -> None:
    job = mem.save(BkPickledJob())
    mem.send(job, "go")
    (record,) = mem.history(job)
    assert type(record) is history_class(BkPickledJob)
    assert pickle.loads(pickle.dumps(record)) == record
