"""Bad subscriptions and bad recorded events get a clear, typed error at the
call that made them, subscribe nothing, and leave stored data unchanged."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pydantic
import pytest

import statekeep
from statekeep import ConfigurationError, ValidationError

from ._support import Recorder
from .models import Note, Session, SessionCompleted, Todo


class NotAnEvent:
    pass


class PlainModel(pydantic.BaseModel):
    x: int = 0


def snapshot(store: statekeep.Store) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (cls.__name__, entity.id): entity.model_dump()
        for cls in (Todo, Note, Session)
        for entity in store.find(cls)
    }


@pytest.fixture
def unchanged(store: statekeep.Store) -> Iterator[Callable[[], None]]:
    """Seeds the store; calling the result asserts nothing was stored, changed
    or delivered since, and that no subscription was left behind."""
    store.save(Todo(id="seed", title="x"))
    store.save(Note(id="seed", text="x"))
    before = snapshot(store)
    subscriptions = list(store.bus._subscriptions)

    def check() -> None:
        assert snapshot(store) == before
        assert store.bus._subscriptions == subscriptions

    yield check


BAD_TARGETS = [
    pytest.param(5, id="int"),
    pytest.param(None, id="None"),
    pytest.param(NotAnEvent, id="plain class"),
    pytest.param(PlainModel, id="non-entity model"),
    pytest.param(statekeep.Entity, id="Entity itself"),
    pytest.param("", id="empty pattern"),
    pytest.param(" todo.*", id="padded pattern"),
    pytest.param(Todo(title="x"), id="an entity instance"),
    pytest.param(SessionCompleted(minutes=1), id="an event instance"),
    pytest.param([Todo.Created], id="a list"),
    pytest.param(b"todo.*", id="bytes"),
]


@pytest.mark.parametrize("target", BAD_TARGETS)
def test_on_refuses_what_is_not_an_event_type_or_pattern(
    store: statekeep.Store, unchanged: Callable[[], None], target: object
) -> None:
    with pytest.raises(ConfigurationError):
        store.on(target, Recorder())
    with pytest.raises(ConfigurationError):
        store.on(target)  # the decorator form fails at once, not when it decorates
    store.save(Todo(id="seed-2", title="x"))  # delivered to nobody: nothing was subscribed
    store.delete(Todo, "seed-2")
    unchanged()


@pytest.mark.parametrize(
    "handler",
    [
        pytest.param(42, id="int"),
        pytest.param("print", id="str"),
        pytest.param(object(), id="object"),
    ],
)
def test_on_refuses_a_handler_that_is_not_callable(
    store: statekeep.Store, unchanged: Callable[[], None], handler: object
) -> None:
    with pytest.raises(ConfigurationError):
        store.on(Todo, handler)  # type: ignore[call-overload]
    decorate = store.on(Todo)
    with pytest.raises(ConfigurationError):
        decorate(handler)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        decorate(None)  # type: ignore[arg-type]
    unchanged()


@pytest.mark.parametrize("priority", [True, False, 1.5, "1", None])
def test_on_refuses_a_priority_that_is_not_an_int(
    store: statekeep.Store, unchanged: Callable[[], None], priority: object
) -> None:
    with pytest.raises(ConfigurationError):
        store.on(Todo, Recorder(), priority=priority)  # type: ignore[call-overload]
    unchanged()


def test_subscribe_needs_the_outbox(store: statekeep.Store, unchanged: Callable[[], None]) -> None:
    with pytest.raises(ConfigurationError, match="outbox=True"):
        store.subscribe("projector", Recorder())
    assert store._durable._running == {}
    unchanged()


@pytest.mark.parametrize("outbox", ["yes", 1, None])
def test_the_outbox_option_is_a_bool(store_url: str, outbox: object) -> None:
    with pytest.raises(ConfigurationError):
        statekeep.open(store_url, outbox=outbox)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("", id="empty"),
        pytest.param(" padded", id="leading space"),
        pytest.param("padded ", id="trailing space"),
        pytest.param("x" * 201, id="201 characters"),
        pytest.param(None, id="None"),
        pytest.param(7, id="int"),
        pytest.param(b"projector", id="bytes"),
        pytest.param("nul\x00name", id="NUL"),  # PostgreSQL text cannot hold it
        pytest.param("lone\udcffsurrogate", id="surrogate"),  # not UTF-8: UnicodeEncodeError
    ],
)
def test_subscribe_refuses_bad_names(outbox_store: statekeep.Store, name: object) -> None:
    store = outbox_store
    store.save(Todo(id="seed", title="x"))
    with pytest.raises(ConfigurationError):
        store.subscribe(name, Recorder())  # type: ignore[arg-type]
    assert store._durable._running == {}
    assert store.count(Todo) == 1
    if isinstance(name, str):
        with pytest.raises(ConfigurationError):
            store.unsubscribe(name)


def test_subscribe_refuses_bad_handlers_and_event_filters(outbox_store: statekeep.Store) -> None:
    store = outbox_store
    with pytest.raises(ConfigurationError):
        store.subscribe("projector", "not callable")  # type: ignore[arg-type]
    for events in ([5], [NotAnEvent], [""], [Todo.Created, PlainModel]):
        with pytest.raises(ConfigurationError):
            store.subscribe("projector", Recorder(), events=events)
    assert store._durable._running == {}


def test_a_name_runs_once_per_store(outbox_store: statekeep.Store) -> None:
    store = outbox_store
    first = store.subscribe("projector", Recorder())
    with pytest.raises(ConfigurationError, match="already running"):
        store.subscribe("projector", Recorder())
    first.stop()
    assert not first.running
    store.subscribe("projector", Recorder()).stop()  # a stopped name may run again


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(None, id="None"),
        pytest.param({"minutes": 1}, id="dict"),
        pytest.param(SessionCompleted, id="an event class"),
        pytest.param(Session(), id="an entity"),
        pytest.param(PlainModel(), id="a plain model"),
        pytest.param(statekeep.Created(), id="Created"),
        pytest.param(statekeep.Deleted(), id="Deleted"),
        pytest.param("lifecycle-of-todo", id="Todo.Updated"),
    ],
)
def test_record_refuses_non_events_and_lifecycle_events(
    store: statekeep.Store, unchanged: Callable[[], None], event: object
) -> None:
    if event == "lifecycle-of-todo":
        event = Todo.Updated(collection="todo", entity_id="x", version=1)
    recorder = Recorder()
    store.on(statekeep.Event, recorder)
    session = Session(id="s")
    with pytest.raises(ValidationError, match="domain event"):
        session.record(event)  # type: ignore[arg-type]
    store.save(session)
    assert recorder.seen == [("session.created", "s", 1)]  # nothing was recorded
    store.delete(session)
    store.off(recorder)
    unchanged()


def test_a_closed_store_refuses_subscriptions(open_store: Callable[..., statekeep.Store]) -> None:
    store = open_store()
    store.close()
    with pytest.raises(statekeep.StoreClosedError):
        store.on(Todo, Recorder())
    with pytest.raises(statekeep.StoreClosedError):
        store.subscribe("projector", Recorder())


def test_events_are_immutable(store: statekeep.Store) -> None:
    recorder = Recorder()
    store.on(Todo, recorder)
    store.save(Todo(id="a", title="x"))
    (event,) = recorder.events
    with pytest.raises(pydantic.ValidationError):
        event.version = 5  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        SessionCompleted(minutes=1, unexpected=True)  # type: ignore[call-arg]
