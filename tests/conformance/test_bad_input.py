"""Bad input gets a clear, typed error and leaves what is stored untouched."""

from __future__ import annotations

import contextlib
import math
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any

import pydantic
import pytest

import statekeep
from statekeep import (
    ConfigurationError,
    Entity,
    Indexed,
    NotFoundError,
    QueryError,
    StatekeepError,
    TransientBackendError,
    UnknownFieldError,
    ValidationError,
)

from .models import Bag, Keywords, Note, Numbers, Todo

Check = Callable[[], None]

# -- wrong types ------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "location"),
    [
        ({"title": 5}, ("title",)),
        ({"title": "x", "priority": "high"}, ("priority",)),
        ({"title": "x", "done": "perhaps"}, ("done",)),
        ({"title": "x", "due": "not a date"}, ("due",)),
        ({}, ("title",)),
        ({"title": "x", "colour": "red"}, ("colour",)),
        ({"title": "x", "version": -1}, ("version",)),
        ({"title": "x", "id": ""}, ("id",)),
        ({"title": "x", "id": 7}, ("id",)),
    ],
)
def test_wrong_field_types_raise_validation_error(
    store: statekeep.Store, assert_unchanged: Check, data: dict[str, Any], location: tuple[str, ...]
) -> None:
    with pytest.raises(ValidationError) as excinfo:
        Todo(**data)
    error = excinfo.value
    assert isinstance(error, ValueError)
    assert not isinstance(error, pydantic.ValidationError)
    details = error.errors()
    assert details
    assert details[0]["loc"] == location
    assert "msg" in details[0] and "type" in details[0]
    assert_unchanged()


def test_a_bad_assignment_raises_and_keeps_the_old_value(
    store: statekeep.Store, assert_unchanged: Check
) -> None:
    todo = store.get(Todo, "seed-1")
    with pytest.raises(ValidationError) as excinfo:
        todo.priority = "high"  # type: ignore[assignment]
    assert excinfo.value.errors()[0]["loc"] == ("priority",)
    with pytest.raises(ValidationError):
        todo.version = -3
    with pytest.raises(ValidationError):
        todo.colour = "red"
    assert (todo.priority, todo.version) == (1, 1)
    assert_unchanged()
    store.save(todo)  # still a good entity
    assert store.get(Todo, "seed-1").version == 2


@pytest.mark.parametrize(
    "make",
    [
        lambda: Todo.f.priority == "high",
        lambda: Todo.f.priority > "high",
        lambda: Todo.f.priority.in_([1, "high"]),
        lambda: Todo.f.due < "yesterday-ish",
        lambda: Todo.f.title == 5,
        lambda: Todo.f.priority == [1, 2],
    ],
    ids=["eq", "gt", "in", "datetime", "text", "list"],
)
def test_condition_values_of_the_wrong_type(
    store: statekeep.Store, assert_unchanged: Check, make: Callable[[], Any]
) -> None:
    with pytest.raises(ValidationError) as excinfo:
        store.find(Todo, make())
    assert excinfo.value.errors()
    assert_unchanged()


def test_keyword_values_of_the_wrong_type(store: statekeep.Store, assert_unchanged: Check) -> None:
    with pytest.raises(ValidationError):
        store.find(Todo, priority="high")
    with pytest.raises(ValidationError):
        store.count(Todo, done="perhaps")
    assert_unchanged()


@pytest.mark.parametrize(
    "run",
    [
        lambda s: s.find(Todo, Todo.f.priority < None),
        lambda s: s.find(Todo, Todo.f.priority >= None),
        lambda s: s.find(Todo, Todo.f.title.startswith(5)),  # type: ignore[arg-type]
        lambda s: s.find(Todo, Todo.f.title.in_("abc")),
        lambda s: s.find(Todo, Todo.f.title.not_in(5)),  # type: ignore[arg-type]
        lambda s: s.find(Todo, "title == 'x'"),
        lambda s: s.find(Todo, Note.f.text == "a note"),
        lambda s: s.find(Todo, order_by=5),
        lambda s: s.count(Todo, True),
        lambda s: bool(Todo.f.done == True),
        lambda s: s.find(Todo, Todo.f.done == True and Todo.f.priority == 1),
        lambda s: s.get_many(Todo, "seed-1"),
    ],
    ids=[
        "lt none",
        "ge none",
        "startswith non-text",
        "in a string",
        "not in a number",
        "a string condition",
        "another class's condition",
        "order by a number",
        "a bool condition",
        "truth of a condition",
        "conditions joined with and",
        "get_many one string",
    ],
)
def test_malformed_queries_raise_query_error(
    store: statekeep.Store, assert_unchanged: Check, run: Callable[[statekeep.Store], Any]
) -> None:
    with pytest.raises(QueryError):
        run(store)
    assert_unchanged()


# -- unknown fields ---------------------------------------------------------


@pytest.mark.parametrize(
    "run",
    [
        lambda s: s.find(Todo, Todo.f.colour == "red"),
        lambda s: s.find(Todo, colour="red"),
        lambda s: s.count(Todo, colour="red"),
        lambda s: s.find(Todo, order_by="colour"),
        lambda s: s.find(Todo, order_by="-colour"),
        lambda s: s.find(Todo, order_by=["title", "colour"]),
        lambda s: s.find(Todo, Todo.f.done == True, order_by=["-colour"], limit=1),
    ],
    ids=[
        "condition",
        "keyword",
        "count keyword",
        "order_by",
        "order_by desc",
        "order_by list",
        "mixed",
    ],
)
def test_unknown_fields_raise_unknown_field_error(
    store: statekeep.Store, assert_unchanged: Check, run: Callable[[statekeep.Store], Any]
) -> None:
    with pytest.raises(UnknownFieldError) as excinfo:
        run(store)  # raised when the query is made, before it is iterated
    error = excinfo.value
    assert error.field == "colour"
    assert "colour" in str(error)
    assert isinstance(error, QueryError)
    assert isinstance(error, AttributeError)
    assert_unchanged()


def test_unknown_field_on_f_is_an_attribute_error(
    store: statekeep.Store, assert_unchanged: Check
) -> None:
    assert not hasattr(Todo.f, "colour")
    assert hasattr(Todo.f, "title")
    assert_unchanged()


# -- hostile strings --------------------------------------------------------

HOSTILE = [
    "it's",
    'say "hi"',
    "'; DROP TABLE todo; --",
    '"; DROP TABLE "todo"; --',
    "Robert'); DELETE FROM todo WHERE ('1'='1",
    "back\\slash",
    "50%_off",
    "*",
    "?",
    ":name",
    "$.title",
    "{'json': true}",
    '{"title": "injected"}',
    "tab\tnew\nline\rcr",
    "\x01\x02\x1b[31m\x7f",
    "naïve café",
    "日本語のテキスト",
    "emoji 🎉👩‍👩‍👧",
    "\u202eright-to-left",
    "\U0010ffff",
    "zero\u200bwidth",
    " ",
    "null",
    "NULL",
    "123",
    "1e5",
    "true",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_strings_are_stored_verbatim_and_found_again(
    store: statekeep.Store, assert_unchanged: Check, text: str
) -> None:
    todo = store.save(Todo(id=text, title=text, notes=text))
    loaded = store.get(Todo, text)
    assert (loaded.id, loaded.title, loaded.notes) == (text, text, text)
    assert [t.id for t in store.find(Todo, title=text)] == [text]
    assert [t.id for t in store.find(Todo, Todo.f.notes == text)] == [text]
    assert [t.id for t in store.find(Todo, id=text)] == [text]
    assert [t.id for t in store.find(Todo, Todo.f.title.in_([text, "nothing"]))] == [text]
    assert text in [t.id for t in store.find(Todo, Todo.f.title.startswith(text))]
    assert text in [t.id for t in store.find(Todo, Todo.f.notes.startswith(text))]
    assert text not in [t.id for t in store.find(Todo, Todo.f.title != text)]
    assert list(store.get_many(Todo, [text])) == [text]
    todo.done = True
    store.save(todo)
    assert store.get(Todo, text).done is True
    store.delete(todo)
    with pytest.raises(NotFoundError):
        store.get(Todo, text)
    assert_unchanged()


def test_hostile_ids_all_together_in_id_order(store: statekeep.Store) -> None:
    store.save_many(Note(id=text, text=text) for text in HOSTILE)
    assert [n.id for n in store.find(Note)] == sorted(HOSTILE)
    assert {n.id: n.text for n in store.find(Note)} == {text: text for text in HOSTILE}


def test_startswith_treats_wildcards_literally(store: statekeep.Store) -> None:
    for id, title in [
        ("1", "50%_off"),
        ("2", "50 percent"),
        ("3", "50%x_off"),
        ("4", "a_b"),
        ("5", "axb"),
    ]:
        store.save(Todo(id=id, title=title, notes=title))
    for field in ("title", "notes"):
        ref = getattr(Todo.f, field)
        assert [t.id for t in store.find(Todo, ref.startswith("50%_"))] == ["1"]
        assert [t.id for t in store.find(Todo, ref.startswith("a_"))] == ["4"]
        assert [t.id for t in store.find(Todo, ref.startswith("A"))] == []


@pytest.mark.parametrize("text", ["\ud800", "a\udfffb"], ids=["lone high", "lone low"])
def test_lone_surrogates_are_refused_not_leaked(
    store: statekeep.Store, assert_unchanged: Check, text: str
) -> None:
    """Text that cannot be UTF-8 is never stored; looking it up finds nothing or says why."""
    todo = Todo(title=text)
    with pytest.raises(ValidationError):
        store.save(todo)
    assert todo.version == 0
    with pytest.raises(StatekeepError):
        store.get(Todo, text)
    for run in (
        lambda: list(store.find(Todo, title=text)),
        lambda: list(store.find(Todo, Todo.f.notes == text)),
        lambda: list(store.find(Todo, Todo.f.title.startswith(text))),
        lambda: store.get_many(Todo, [text]),
    ):
        with contextlib.suppress(StatekeepError):
            assert not run()
    assert_unchanged()


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan], ids=["inf", "-inf", "nan"])
def test_non_finite_floats_round_trip_or_are_refused(
    store: statekeep.Store, assert_unchanged: Check, value: float
) -> None:
    """Never stored in a form that cannot be read back (statekeep refuses them
    as soon as the entity is made or changed)."""
    with pytest.raises(ValidationError):
        Numbers(id="n", ratio=value)
    numbers = Numbers(id="n", ratio=1.5)
    with pytest.raises(ValidationError):
        numbers.ratio = value
    assert numbers.ratio == 1.5
    with pytest.raises(NotFoundError):
        store.get(Numbers, "n")
    assert_unchanged()


@pytest.mark.parametrize(
    "value",
    [2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 2**100],
    ids=["max", "min", "max+1", "min-1", "2**100"],
)
@pytest.mark.parametrize("field", ["indexed", "plain"])
def test_large_integers_are_the_same_answer_on_every_backend(
    store: statekeep.Store, assert_unchanged: Check, value: int, field: str
) -> None:
    """An indexed integer beyond 64 bits is refused (an index column holds 64
    bits) on every backend, with nothing stored; any other integer is stored
    and read back exactly. A condition beyond 64 bits is a QueryError."""
    by_field: dict[str, Any] = {field: value}
    numbers = Numbers(id="n", **by_field)
    fits = -(2**63) <= value < 2**63
    if field == "indexed" and not fits:
        for write in (
            lambda: store.save(numbers),
            lambda: store.save_many([Numbers(id="m"), numbers]),
        ):
            with pytest.raises(ValidationError, match="64 bits"):
                write()
        assert numbers.version == 0
        assert store.get_many(Numbers, ["n", "m"]) == {}
        assert_unchanged()
        return
    store.save(numbers)
    assert getattr(store.get(Numbers, "n"), field) == value
    if fits:
        assert [n.id for n in store.find(Numbers, **by_field)] == ["n"]
    else:
        with pytest.raises(QueryError, match="64 bits"):
            list(store.find(Numbers, **by_field))
    assert_unchanged()


@pytest.mark.parametrize(
    "value",
    [
        {"a": math.nan},
        {"nested": [1.0, {"x": -math.inf}]},
        [math.inf],
        math.nan,
    ],
    ids=["dict", "nested", "list", "bare"],
)
def test_non_finite_numbers_anywhere_in_a_body_are_refused(
    store: statekeep.Store, assert_unchanged: Check, value: Any
) -> None:
    """Not stored as null (as JSON serialisers do): refused, on every write path."""
    bag = Bag(id="bag", anything=value)
    for write in (
        lambda: store.save(bag),
        lambda: store.save_many([Bag(id="ok"), bag]),
        lambda: store.save_many(iter([bag]), atomic=False),
    ):
        with pytest.raises(ValidationError, match="infinite or NaN"):
            write()
    assert bag.version == 0
    assert store.get_many(Bag, ["bag", "ok"]) == {}
    with pytest.raises(ValidationError, match="infinite or NaN"):
        store.enqueue(bag)
    assert_unchanged()


def test_the_words_nan_and_infinity_in_text_are_stored(store: statekeep.Store) -> None:
    words = Bag(id="w", anything={"NaN": "Infinity", "list": ["-Infinity", "NaN"]})
    store.save(words)
    assert store.get(Bag, "w").anything == words.anything


# -- collection names -------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "",
        "todo; DROP TABLE todo",
        'to"do',
        "to'do",
        "to do",
        "to-do",
        "to.do",
        "todo\n",
        "\ntodo",
        "1todo",
        "tôdo",
        "sqlite_master",
        "SQLITE_sequence",
        "a" * 64,
        5,
        b"todo",
    ],
)
def test_hostile_collection_names_are_refused_at_class_definition(
    store: statekeep.Store, assert_unchanged: Check, name: Any
) -> None:
    with pytest.raises(ConfigurationError):

        class Hostile(Entity, collection=name):
            title: str = ""

    assert_unchanged()


def test_an_indexed_field_named_like_the_body_column_is_refused(
    store: statekeep.Store, assert_unchanged: Check
) -> None:
    with pytest.raises(ConfigurationError):

        class Document(Entity):
            body: Annotated[str, Indexed()]

    assert_unchanged()


def test_longest_collection_name_and_sql_keywords_work(
    store: statekeep.Store, assert_unchanged: Check
) -> None:
    class Long(Entity, collection="a" * 63):
        value: Annotated[int, Indexed()] = 0

    store.save(Long(id="x", value=3))
    assert [e.id for e in store.find(Long, Long.f.value >= 3)] == ["x"]
    store.save_many([Keywords(id="k1", order=2, group="b"), Keywords(id="k2", order=1, group="a")])
    assert [k.id for k in store.find(Keywords, order_by="order")] == ["k2", "k1"]
    assert [k.id for k in store.find(Keywords, Keywords.f.order > 1)] == ["k1"]
    assert [k.id for k in store.find(Keywords, group="a")] == ["k2"]
    store.delete(Keywords, "k1")
    assert store.count(Keywords) == 1
    assert_unchanged()


# -- things that are not entities, ids that are not ids ---------------------


class NotAnEntity(pydantic.BaseModel):
    title: str = "x"


@pytest.mark.parametrize(
    "thing",
    [{"title": "x"}, NotAnEntity(), Todo, None, 42, "todo"],
    ids=["dict", "pydantic model", "entity class", "None", "int", "str"],
)
def test_saving_a_non_entity(store: statekeep.Store, assert_unchanged: Check, thing: Any) -> None:
    with pytest.raises(ValidationError):
        store.save(thing)
    assert_unchanged()


@pytest.mark.parametrize(
    "thing",
    [{"title": "x"}, NotAnEntity(), Todo, None, 42, "todo"],
    ids=["dict", "pydantic model", "entity class", "None", "int", "str"],
)
def test_save_many_with_a_non_entity_among_entities(
    store: statekeep.Store, assert_unchanged: Check, thing: Any
) -> None:
    good = [Todo(title="good"), Todo(title="also good")]
    with pytest.raises(ValidationError):
        store.save_many([good[0], thing, good[1]])
    assert [t.version for t in good] == [0, 0]
    assert_unchanged()


@pytest.mark.parametrize(
    "run",
    [
        lambda s: s.get(dict, "x"),
        lambda s: s.get(NotAnEntity, "x"),
        lambda s: s.find(NotAnEntity),
        lambda s: s.count(str),
        lambda s: s.delete(NotAnEntity, "x"),
        lambda s: s.get_many(Entity, ["x"]),
    ],
    ids=["get dict", "get model", "find model", "count str", "delete model", "get_many base"],
)
def test_a_non_entity_class(
    store: statekeep.Store, assert_unchanged: Check, run: Callable[[statekeep.Store], Any]
) -> None:
    with pytest.raises(ConfigurationError):
        run(store)
    assert_unchanged()


@pytest.mark.parametrize("bad_id", ["", 5, None, b"seed-1", ["seed-1"]])
def test_ids_that_are_not_strings(
    store: statekeep.Store, assert_unchanged: Check, bad_id: Any
) -> None:
    with pytest.raises(QueryError):
        store.get(Todo, bad_id)
    with pytest.raises(QueryError):
        store.delete(Todo, bad_id)
    with pytest.raises(QueryError):
        store.get_many(Todo, [bad_id])
    assert_unchanged()


def test_delete_entity_with_an_id_too(store: statekeep.Store, assert_unchanged: Check) -> None:
    todo = store.get(Todo, "seed-1")
    with pytest.raises(QueryError):
        store.delete(todo, "seed-2")  # type: ignore[call-overload]
    assert_unchanged()


@pytest.mark.parametrize(
    ("limit", "offset"),
    [(-1, 0), (1.5, 0), ("3", 0), (None, -1), (None, None), (None, 1.0), (None, "2")],
)
def test_bad_limit_and_offset(
    store: statekeep.Store, assert_unchanged: Check, limit: Any, offset: Any
) -> None:
    with pytest.raises(QueryError):
        store.find(Todo, limit=limit, offset=offset)
    assert_unchanged()


# -- URLs and options -------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "",
        "memory",
        "memory:/",
        "memory://somewhere",
        "postgres://localhost/db",
        "nosuch://",
        "sqlite://",
        "sqlite:///",
        "MEMORY://",
        "memory://?lock_timeout=soon",
        "memory://?colour=red",
        "sqlite://:memory:?colour=red",
        None,
        42,
    ],
)
def test_bad_urls(store: statekeep.Store, assert_unchanged: Check, url: Any) -> None:
    with pytest.raises(ConfigurationError):
        statekeep.open(url)
    assert_unchanged()


@pytest.mark.parametrize(
    "query", ["colour=red", "timeout=soon", "synchronous=off", "lock_timeout=1&timeout=1"]
)
def test_bad_options_for_this_backend(
    store: statekeep.Store, store_url: str, assert_unchanged: Check, query: str
) -> None:
    with pytest.raises(ConfigurationError):
        statekeep.open(f"{store_url}?{query}")
    assert_unchanged()


def test_a_sqlite_file_that_cannot_be_opened(
    store: statekeep.Store, assert_unchanged: Check, tmp_path: Any
) -> None:
    with pytest.raises(ConfigurationError):
        statekeep.open(f"sqlite:///{tmp_path}/no/such/directory/x.db")
    with pytest.raises(ConfigurationError):
        statekeep.open(f"sqlite:///{tmp_path}")  # a directory
    assert_unchanged()


def test_a_sqlite_file_locked_while_it_is_made_is_a_transient_error(tmp_path: Any) -> None:
    """Another process making the database holds it locked: open() may work
    again in a moment, so the error is transient, not a configuration error."""
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("CREATE TABLE made_by_another_process (a)")
    with pytest.raises(TransientBackendError):
        statekeep.open(f"sqlite:///{path}?timeout=0.2")
    holder.execute("COMMIT")
    holder.close()
    with statekeep.open(f"sqlite:///{path}?timeout=0.2") as store:  # the same call, later
        store.save(Note(id="n", text="opened"))
        assert store.get(Note, "n").text == "opened"


# -- misuse of the API: every entry point, hostile arguments ----------------

Run = Callable[[statekeep.Store], Any]


def _handler(event: Any) -> None:
    pass


def _with_default(store: statekeep.Store, run: Callable[[], Any]) -> Any:
    with statekeep.use(store):
        return run()


def _enter_twice(store: statekeep.Store) -> None:
    block = store.transaction()
    with block:
        store.save(Todo(id="inside", title="rolled back"))
        block.__enter__()


MISUSES: list[tuple[str, Run, type[StatekeepError]]] = [
    ("save_many None", lambda s: s.save_many(None), ValidationError),  # type: ignore[arg-type]
    ("save_many a number", lambda s: s.save_many(5), ValidationError),  # type: ignore[arg-type]
    ("save_many one entity", lambda s: s.save_many(Todo(title="x")), ValidationError),  # type: ignore[arg-type]
    ("save_many a dict", lambda s: s.save_many({"title": "x"}), ValidationError),  # type: ignore[dict-item]
    (
        "save_many atomic text",
        lambda s: s.save_many([Todo(title="x")], atomic="no"),  # type: ignore[arg-type]
        ConfigurationError,
    ),
    (
        "save_many atomic None",
        lambda s: s.save_many([Todo(title="x")], atomic=None),  # type: ignore[arg-type]
        ConfigurationError,
    ),
    (
        "save_many chunk_size True",
        lambda s: s.save_many([Todo(title="x")], chunk_size=True),
        ConfigurationError,
    ),
    (
        "save_many chunk_size 1.5",
        lambda s: s.save_many([Todo(title="x")], chunk_size=1.5),  # type: ignore[arg-type]
        ConfigurationError,
    ),
    ("get_many None", lambda s: s.get_many(Todo, None), QueryError),  # type: ignore[arg-type]
    ("get_many a number", lambda s: s.get_many(Todo, 5), QueryError),  # type: ignore[arg-type]
    ("get_many bytes", lambda s: s.get_many(Todo, b"seed-1"), QueryError),  # type: ignore[arg-type]
    ("find limit True", lambda s: s.find(Todo, limit=True), QueryError),
    ("find limit False", lambda s: s.find(Todo, limit=False), QueryError),
    ("find offset True", lambda s: s.find(Todo, offset=True), QueryError),
    ("find limit 2**63", lambda s: s.find(Todo, limit=2**63), QueryError),
    ("find offset 2**70", lambda s: s.find(Todo, offset=2**70), QueryError),
    ("find order_by None", lambda s: s.find(Todo, order_by=[None]), QueryError),  # type: ignore[list-item]
    (
        "Entity.find limit True",
        lambda s: _with_default(s, lambda: Todo.find(limit=True)),
        QueryError,
    ),
    ("count a number", lambda s: s.count(Todo, 5), QueryError),  # type: ignore[arg-type]
    ("delete None", lambda s: s.delete(None), ConfigurationError),  # type: ignore[call-overload]
    ("delete a class, no id", lambda s: s.delete(Todo), QueryError),  # type: ignore[call-overload]
    ("enqueue None", lambda s: s.enqueue(None), ValidationError),  # type: ignore[arg-type]
    ("enqueue priority text", lambda s: s.enqueue(Todo(title="x"), priority="high"), QueryError),  # type: ignore[arg-type]
    ("enqueue priority True", lambda s: s.enqueue(Todo(title="x"), priority=True), QueryError),  # type: ignore[arg-type]
    ("enqueue priority 1.0", lambda s: s.enqueue(Todo(title="x"), priority=1.0), QueryError),  # type: ignore[arg-type]
    ("enqueue deadline nan", lambda s: s.enqueue(Todo(title="x"), deadline=math.nan), QueryError),
    (
        "enqueue expect_version True",
        lambda s: s.enqueue(Todo(title="x"), expect_version=True),
        QueryError,
    ),
    ("enqueue_delete a class, no id", lambda s: s.enqueue_delete(Todo), QueryError),
    ("flush text", lambda s: s.flush("soon"), ConfigurationError),  # type: ignore[arg-type]
    ("flush negative", lambda s: s.flush(-1), ConfigurationError),
    ("flush nan", lambda s: s.flush(math.nan), ConfigurationError),
    ("flush True", lambda s: s.flush(True), ConfigurationError),
    ("on a number", lambda s: s.on(5, _handler), ConfigurationError),
    ("on a handler that is not callable", lambda s: s.on(Todo, 5), ConfigurationError),  # type: ignore[call-overload]
    ("on priority text", lambda s: s.on(Todo, _handler, priority="high"), ConfigurationError),  # type: ignore[call-overload]
    ("off None", lambda s: s.off(None), ConfigurationError),  # type: ignore[arg-type]
    ("off a number", lambda s: s.off(5), ConfigurationError),  # type: ignore[arg-type]
    ("subscribe without outbox", lambda s: s.subscribe("billing", _handler), ConfigurationError),
    ("prune_events True", lambda s: s.prune_events(True), ConfigurationError),
    ("prune_events text", lambda s: s.prune_events("all"), ConfigurationError),  # type: ignore[arg-type]
    (
        "transaction exit without enter",
        lambda s: s.transaction().__exit__(None, None, None),
        ConfigurationError,
    ),
    ("transaction entered twice", _enter_twice, ConfigurationError),
    ("close text", lambda s: s.close("soon"), ConfigurationError),  # type: ignore[arg-type]
    ("close negative", lambda s: s.close(-1), ConfigurationError),
    ("use None", lambda s: statekeep.use(None), ConfigurationError),
    ("use a URL", lambda s: statekeep.use("memory://"), ConfigurationError),
]


@pytest.mark.parametrize(
    ("run", "error"), [case[1:] for case in MISUSES], ids=[case[0] for case in MISUSES]
)
def test_misuse_is_a_typed_error_that_changes_nothing(
    store: statekeep.Store, assert_unchanged: Check, run: Run, error: type[StatekeepError]
) -> None:
    with pytest.raises(error) as raised:
        run(store)
    assert str(raised.value)
    assert not store.closed  # a misused close() did not close it
    assert_unchanged()
    assert store.flush(5)  # nothing enqueued by a refused call, or it is stored
    assert_unchanged()


@pytest.mark.parametrize(
    "writebehind",
    [{"colour": "red"}, {"window": -1}, {"policy": "sometimes"}, {"fsync": "yes"}, 5, True, "auto"],
)
def test_bad_writebehind_options(
    store: statekeep.Store, store_url: str, assert_unchanged: Check, writebehind: Any
) -> None:
    with pytest.raises(ConfigurationError):
        statekeep.open(store_url, writebehind=writebehind)
    assert_unchanged()


def test_writebehind_options_as_a_dict(store_url: str) -> None:
    options = {"max_pending": 1, "policy": "raise", "window": 30.0, "drain_timeout": 5.0}
    with statekeep.open(store_url, writebehind=options) as store:
        store.enqueue(Note(id="first", text="queued"))
        with pytest.raises(statekeep.QueueFullError):  # max_pending=1 and policy "raise"
            store.enqueue(Note(id="second", text="refused"))
        assert store.flush(5)
        assert [n.id for n in store.find(Note)] == ["first"]


class _Reading(pydantic.BaseModel):  # pydantic's defaults: NaN allowed, written as null
    value: float


class Sensor(Entity, collection="sensor_nested"):
    reading: _Reading | None = None
    extra: Any = None
    label: str | None = None


@pytest.mark.parametrize(
    "fields",
    [
        {"reading": _Reading(value=math.nan)},
        {"extra": _Reading(value=math.inf)},
        {"extra": {"deep": [[_Reading(value=-math.inf)]]}},
    ],
    ids=["nested model", "model in Any", "model deep in Any"],
)
@pytest.mark.parametrize("how", ["save", "save_many", "enqueue"])
def test_a_non_finite_float_in_a_nested_model_is_refused(
    store: statekeep.Store, assert_unchanged: Check, fields: dict[str, Any], how: str
) -> None:
    """A nested model serialises NaN as null: stored, it no longer fit its
    model and the entity could not be read back."""
    sensor = Sensor(id="s", **fields)
    with pytest.raises(ValidationError):
        if how == "save":
            store.save(sensor)
        elif how == "save_many":
            store.save_many([Sensor(id="ok"), sensor])
        else:
            store.enqueue(sensor).wait_stored(timeout=10)
    assert store.get_many(Sensor, ["s", "ok"]) == {}
    store.save(Sensor(id="fine", reading=_Reading(value=1.5), extra={"n": None}, label=None))
    assert store.get(Sensor, "fine").reading == _Reading(value=1.5)
    store.delete(store.get(Sensor, "fine"))
    assert_unchanged()


class Appointment(Entity, collection="appointment_edge"):
    at: Annotated[datetime, Indexed()] = datetime(2024, 1, 1, tzinfo=UTC)
    noted: datetime | None = None


_LATE = datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5)))  # year 10000 in UTC
_EARLY = datetime(1, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))  # year 0 in UTC


@pytest.mark.parametrize("moment", [_LATE, _EARLY], ids=["late", "early"])
@pytest.mark.parametrize("how", ["save", "save_many", "enqueue"])
def test_an_indexed_time_beyond_the_years_utc_holds_is_refused(
    store: statekeep.Store, assert_unchanged: Check, moment: datetime, how: str
) -> None:
    """Its time key could not be made: an OverflowError escaped save, find and count."""
    appointment = Appointment(id="a", at=moment)
    with pytest.raises(ValidationError):
        if how == "save":
            store.save(appointment)
        elif how == "save_many":
            store.save_many([appointment])
        else:
            store.enqueue(appointment).wait_stored(timeout=10)
    with pytest.raises(QueryError):
        store.count(Appointment, at=moment)
    with pytest.raises(QueryError):
        list(store.find(Appointment, Appointment.f.noted > moment))
    assert store.get_many(Appointment, ["a"]) == {}
    assert_unchanged()


def test_a_stored_time_beyond_the_years_utc_holds_does_not_break_queries(
    store: statekeep.Store,
) -> None:
    """Unindexed, it is stored; a query comparing that field's times read it
    through time_key, which raised (SQLite: an error of the whole query)."""
    store.save(Appointment(id="late", noted=_LATE))
    store.save(Appointment(id="now", noted=datetime(2024, 6, 1, tzinfo=UTC)))
    since = datetime(2024, 1, 1, tzinfo=UTC)
    found = {a.id for a in store.find(Appointment, Appointment.f.noted > since)}
    assert "now" in found and found <= {"now", "late"}
    assert [a.id for a in store.find(Appointment, noted=datetime(2024, 6, 1, tzinfo=UTC))] == [
        "now"
    ]
    assert store.get(Appointment, "late").noted == _LATE
