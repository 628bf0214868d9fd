"""Created and Updated events make their entity from the stored body on the
first read of `event.entity` (issue 19): a handler that reads only ids and
versions costs no parse, and everything else sees the entity as before.

The parses are counted by the entity class itself (ParseCounted overrides
model_validate_json), so "not parsed" is what the store really did."""

from __future__ import annotations

import asyncio
import copy
import pickle
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar

import pydantic
import pytest

import statekeep
from statekeep import Entity
from statekeep._emit import decode, encode
from statekeep._ids import new_id

from ._support import has_outbox, outbox_events, wait_for
from .models import Todo


class Parsed(Entity, collection="ev_parsed"):
    """Counts the parses of its stored bodies (the lazy entity's only maker)."""

    parses: ClassVar[list[str]] = []
    title: str = ""
    tags: list[str] = []

    @classmethod
    def model_validate_json(cls, json_data: Any, **options: Any) -> Parsed:
        cls.parses.append(json_data if isinstance(json_data, str) else str(json_data))
        return super().model_validate_json(json_data, **options)


class Unreadable(Entity, collection="ev_unreadable"):
    """Its default is not validated (pydantic's way): a stored body with
    `"amount": null` does not validate against the class."""

    amount: int = None  # type: ignore[assignment]


@pytest.fixture(autouse=True)
def _fresh_counts() -> None:
    Parsed.parses.clear()


def test_a_handler_that_reads_only_ids_parses_nothing(store: statekeep.Store) -> None:
    seen: list[tuple[str, str, int, str]] = []
    store.on(Parsed, lambda e: seen.append((e.name, e.entity_id, e.version, e.event_id)))
    item = store.save(Parsed(id="p", title="one"))
    item.title = "two"
    store.save(item)
    store.save_many([Parsed(id=f"m{n}") for n in range(3)])
    assert [s[:3] for s in seen] == [
        ("ev_parsed.created", "p", 1),
        ("ev_parsed.updated", "p", 2),
        *[("ev_parsed.created", f"m{n}", 1) for n in range(3)],
    ]
    assert Parsed.parses == []


def test_the_entity_is_made_on_first_read_then_kept(store: statekeep.Store) -> None:
    got: list[Any] = []
    store.on(Parsed.Created, got.append)
    saved = store.save(Parsed(id="p", title="one", tags=["a"]))
    (event,) = got
    assert Parsed.parses == []
    assert "entity" not in event.__dict__  # not made yet
    entity = event.entity
    assert len(Parsed.parses) == 1
    assert event.entity is entity  # kept: no second parse
    assert len(Parsed.parses) == 1
    assert type(entity) is Parsed
    assert entity == saved  # the entity as stored, at the version the save gave it
    assert entity.version == 1
    assert entity is not saved


def test_the_entity_is_a_copy_of_its_own(store: statekeep.Store) -> None:
    got: list[Any] = []
    store.on(Parsed, got.append)
    item = Parsed(id="p", title="one", tags=["a"])
    store.save(item)
    item.title = "changed after the save"
    item.tags.append("b")
    (event,) = got
    assert event.entity.title == "one"  # read only now: the stored body, not the object
    assert event.entity.tags == ["a"]
    event.entity.tags.append("c")
    assert item.tags == ["a", "b"]


def test_typed_views_and_generic_classes_hold(store: statekeep.Store) -> None:
    typed: list[Any] = []
    generic: list[Any] = []
    store.on(Todo.Created, typed.append)
    store.on(statekeep.Updated, generic.append)
    todo = store.save(Todo(id="t", title="x"))
    todo.done = True
    store.save(todo)
    (created,) = typed
    (updated,) = generic
    assert type(created) is Todo.Created
    assert isinstance(created, statekeep.Created)
    assert created.entity == Todo(id="t", title="x", version=1)
    assert type(updated) is Todo.Updated
    assert updated.entity.done is True and updated.entity.version == 2


def test_event_ids_and_times_are_taken_when_the_event_is_made(store: statekeep.Store) -> None:
    got: list[Any] = []
    store.on(Parsed, got.append)
    before_id, before = new_id(), datetime.now(UTC)
    store.save(Parsed(id="p"))
    after_id, after = new_id(), datetime.now(UTC)
    (event,) = got
    assert before_id < event.event_id < after_id  # ordered as new_id() orders them
    assert len(event.event_id) == len(before_id)
    assert event.event_id[11:19] == before_id[11:19]  # this process's prefix
    assert before.replace(microsecond=0) <= event.at <= after
    assert event.at.tzinfo is not None and event.at.utcoffset() == before.utcoffset()
    assert event.event_id is event.event_id and event.at is event.at


def test_reading_all_at_once_from_threads_gives_one_entity(store: statekeep.Store) -> None:
    got: list[Any] = []
    store.on(Parsed, got.append)
    store.save(Parsed(id="p", title="one"))
    (event,) = got
    start = threading.Barrier(8)
    read: list[tuple[Any, str]] = []

    def reader() -> None:
        start.wait()
        read.append((event.entity, event.event_id))

    threads = [threading.Thread(target=reader) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(read) == 8
    assert all(entity is event.entity and id == event.event_id for entity, id in read)


def _eager_twin(event: Any) -> Any:
    """The same event made the eager way (all fields given, pydantic-validated)."""
    fields = {
        "event_id": event.event_id,
        "at": event.at,
        "collection": event.collection,
        "entity_id": event.entity_id,
        "version": event.version,
    }
    return type(event)(**fields, entity=Parsed.model_validate_json(Parsed.parses[-1]))


def _unread(store: statekeep.Store, n: int = 1) -> list[Any]:
    """n Created events of Parsed whose entity nobody has read yet."""
    got: list[Any] = []
    subscription = store.on(Parsed.Created, got.append)
    for i in range(n):
        store.save(Parsed(id=f"u{len(Parsed.parses)}-{i}-{new_id()}", title="t", tags=["x"]))
    subscription.cancel()
    assert all("entity" not in event.__dict__ for event in got)
    return got


@pytest.mark.parametrize(
    "use",
    [
        pytest.param(lambda e: e.model_dump(), id="model_dump"),
        pytest.param(lambda e: e.model_dump(mode="json"), id="model_dump json"),
        pytest.param(lambda e: e.model_dump_json(), id="model_dump_json"),
        pytest.param(lambda e: repr(e), id="repr"),
        pytest.param(lambda e: str(e), id="str"),
        pytest.param(lambda e: dict(e), id="iteration"),
        pytest.param(lambda e: pickle.loads(pickle.dumps(e)), id="pickle"),
        pytest.param(copy.copy, id="copy"),
        pytest.param(copy.deepcopy, id="deepcopy"),
        pytest.param(lambda e: e.model_copy(update={"version": 9}), id="model_copy"),
        pytest.param(lambda e: (e.model_fields_set, e.model_dump(exclude_unset=True)), id="set"),
        pytest.param(
            lambda e: pydantic.TypeAdapter(list[Any]).dump_python([e], mode="json"), id="nested"
        ),
    ],
)
def test_whatever_reads_the_fields_sees_the_entity(store: statekeep.Store, use: Any) -> None:
    (event,) = _unread(store)
    result = use(event)
    assert len(Parsed.parses) == 1
    twin = _eager_twin(event)
    assert event == twin
    assert repr(event) == repr(twin)
    assert event.model_dump_json() == twin.model_dump_json()
    assert use(twin) == result
    assert "'title': 't'" in repr(event.model_dump())


def test_copies_and_pickles_carry_the_entity(store: statekeep.Store) -> None:
    makers: list[Callable[[Any], Any]] = [
        lambda e: pickle.loads(pickle.dumps(e)),
        copy.copy,
        copy.deepcopy,
        lambda e: e.model_copy(update={"version": 9}),
    ]
    for make in makers:
        (event,) = _unread(store)
        other = make(event)
        assert type(other) is type(event)
        assert other.entity == event.entity
        assert other.entity.title == "t"
        assert other.model_dump()["entity"]["tags"] == ["x"]


def test_equality_between_unread_events(store: statekeep.Store) -> None:
    (event,) = _unread(store)
    twin = pickle.loads(pickle.dumps(event))  # (reads the entity of event)
    (fresh,) = _unread(store)
    assert event == twin
    assert event != fresh  # another event, another entity
    assert fresh == pickle.loads(pickle.dumps(fresh))
    with pytest.raises(TypeError):  # an entity is not hashable, nor an event carrying one
        hash(fresh)


def test_the_outbox_entry_is_the_event_and_costs_no_parse(open_store: Any) -> None:
    store = open_store(outbox=True, outbox_retention=None)
    if not has_outbox(store):
        pytest.skip("no outbox on this backend")
    got: list[Any] = []
    store.on(Parsed, lambda e: got.append(e))
    store.save(Parsed(id="o", title="out", tags=["a", "b"]))
    assert Parsed.parses == []  # written to the outbox straight from the body
    (event,) = got
    (stored,) = outbox_events(store)
    assert stored == event  # (now both made their entity)
    assert encode(event) == encode(stored)
    assert decode(encode(event)) == event


def test_an_unread_event_encodes_as_a_read_one(store: statekeep.Store) -> None:
    (event,) = _unread(store)
    entry = encode(event)
    assert Parsed.parses == []
    assert entry == encode(_eager_twin_after_read(event))


def _eager_twin_after_read(event: Any) -> Any:
    event.entity  # noqa: B018 - reads it
    return _eager_twin(event)


def test_async_handlers_get_the_entity(store: statekeep.Store) -> None:
    got: list[tuple[str, Any]] = []
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:

        async def handler(event: Any) -> None:
            got.append((event.entity_id, event.entity))

        async def subscribe() -> None:
            store.on(Parsed.Created, handler)

        asyncio.run_coroutine_threadsafe(subscribe(), loop).result(5)
        store.save(Parsed(id="a", title="async"))
        wait_for(lambda: len(got) == 1, what="the async handler")
        assert got[0][0] == "a"
        assert got[0][1] == Parsed(id="a", title="async", version=1)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def test_write_behind_batches_make_lazy_events_too(store: statekeep.Store) -> None:
    ids: list[tuple[str, int]] = []
    events: list[Any] = []
    store.on(Parsed, lambda e: ids.append((e.entity_id, e.version)))
    assert store.enqueue(Parsed(id="w1", title="one")).wait_stored(10)
    assert store.flush(10)
    assert ids == [("w1", 1)]
    assert Parsed.parses == []
    store.on(Parsed.Updated, events.append)
    item = store.get(Parsed, "w1")
    item.title = "two"
    store.enqueue(item)
    assert store.flush(10)
    (event,) = events
    assert event.entity == Parsed(id="w1", title="two", version=2)


def test_a_body_the_class_does_not_validate_fails_where_it_is_read(
    store: statekeep.Store, caplog: pytest.LogCaptureFixture
) -> None:
    """Its save stands (as it does with no handler); the handler that reads
    the entity gets pydantic's ValidationError, on each read, and fails as
    any handler that raises does."""
    ids: list[str] = []
    failures: list[Any] = []
    store.on(Unreadable, lambda e: ids.append(e.entity_id))
    store.on(Unreadable.Created, lambda e: e.entity)
    store.on(statekeep.HandlerFailed, failures.append)
    store.save(Unreadable(id="u"))
    assert ids == ["u"]
    assert [f.failed_event for f in failures] == ["ev_unreadable.created"]
    assert "ValidationError" in failures[0].error
