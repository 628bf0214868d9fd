"""Bad input gets a clear, typed error and leaves what is stored untouched."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
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
    UnknownFieldError,
    ValidationError,
)

from .models import Keywords, Note, Numbers, Todo

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
def test_large_integers_round_trip_or_are_refused(
    store: statekeep.Store, assert_unchanged: Check, value: int, field: str
) -> None:
    """Stored and found again exactly, or refused with a typed error and nothing stored."""
    by_field: dict[str, Any] = {field: value}
    numbers = Numbers(id="n", **by_field)
    try:
        store.save(numbers)
    except StatekeepError:
        assert numbers.version == 0
        with pytest.raises(NotFoundError):
            store.get(Numbers, "n")
    else:
        assert getattr(store.get(Numbers, "n"), field) == value
        try:
            found = [n.id for n in store.find(Numbers, **by_field)]
        except StatekeepError:
            pass
        else:
            assert found == ["n"]
    assert_unchanged()


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
