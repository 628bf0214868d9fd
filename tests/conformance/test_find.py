"""find and count: every operator, None handling, ordering, paging and lazy results."""

# `Todo.f.x == None` builds a condition; `is None` would not.
# ruff: noqa: E711

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

import statekeep
from statekeep import Condition, Entity, FieldRef

from .models import IndexedRecord, Note, PlainRecord, Todo

F = Todo.f


@pytest.fixture
def todos(store: statekeep.Store) -> statekeep.Store:
    rows = [
        ("01", "apple", False, 3, "x", datetime(2024, 1, 1)),
        ("02", "banana", True, None, "", None),
        ("03", "cherry", False, 1, "x", datetime(2024, 3, 1, 12)),
        ("04", "apricot", True, 3, "y", datetime(2024, 2, 1)),
        ("05", "Apple", False, None, "y", None),
        ("06", "date", False, 2, "", datetime(2023, 12, 31, 23, 59, 59, 500000)),
        ("07", "avocado", True, 1, "x", datetime(2024, 1, 1)),
    ]
    # saved out of id order, so id order is the store's doing
    for id, title, done, priority, notes, due in reversed(rows):
        store.save(Todo(id=id, title=title, done=done, priority=priority, notes=notes, due=due))
    return store


def ids(found: Iterator[Entity]) -> list[str]:
    return [entity.id for entity in found]


CONDITIONS: list[tuple[str, list[Condition], dict[str, Any], list[str]]] = [
    ("eq", [F.priority == 3], {}, ["01", "04"]),
    ("eq none", [F.priority == None], {}, ["02", "05"]),
    ("ne is null-safe", [F.priority != 3], {}, ["02", "03", "05", "06", "07"]),
    ("ne none", [F.priority != None], {}, ["01", "03", "04", "06", "07"]),
    ("lt never matches none", [F.priority < 2], {}, ["03", "07"]),
    ("le", [F.priority <= 2], {}, ["03", "06", "07"]),
    ("gt", [F.priority > 1], {}, ["01", "04", "06"]),
    ("ge", [F.priority >= 1], {}, ["01", "03", "04", "06", "07"]),
    ("in", [F.priority.in_([1, 3])], {}, ["01", "03", "04", "07"]),
    ("in with none", [F.priority.in_([1, None])], {}, ["02", "03", "05", "07"]),
    ("in only none", [F.priority.in_([None])], {}, ["02", "05"]),
    ("in empty", [F.priority.in_([])], {}, []),
    ("in a generator", [F.priority.in_(p for p in (2, 9))], {}, ["06"]),
    ("not in keeps none", [F.priority.not_in([1, 3])], {}, ["02", "05", "06"]),
    ("not in with none", [F.priority.not_in([1, None])], {}, ["01", "04", "06"]),
    ("not in empty", [F.priority.not_in([])], {}, ["01", "02", "03", "04", "05", "06", "07"]),
    ("eq indexed text", [F.title == "cherry"], {}, ["03"]),
    ("ne indexed text", [F.title != "cherry"], {}, ["01", "02", "04", "05", "06", "07"]),
    ("lt indexed text", [F.title < "apricot"], {}, ["01", "05"]),
    ("in indexed text", [F.title.in_(["date", "Apple", "fig"])], {}, ["05", "06"]),
    (
        "not in indexed text",
        [F.title.not_in(["apple", "banana"])],
        {},
        ["03", "04", "05", "06", "07"],
    ),
    ("startswith", [F.title.startswith("ap")], {}, ["01", "04"]),
    ("startswith is case-sensitive", [F.title.startswith("A")], {}, ["05"]),
    ("startswith one letter", [F.title.startswith("a")], {}, ["01", "04", "07"]),
    ("startswith whole value", [F.title.startswith("apple")], {}, ["01"]),
    ("startswith longer than value", [F.title.startswith("applesauce")], {}, []),
    ("startswith empty", [F.title.startswith("")], {}, ["01", "02", "03", "04", "05", "06", "07"]),
    ("startswith not indexed", [F.notes.startswith("x")], {}, ["01", "03", "07"]),
    ("bool eq true", [F.done == True], {}, ["02", "04", "07"]),
    ("bool eq false", [F.done == False], {}, ["01", "03", "05", "06"]),
    ("bool ne true", [F.done != True], {}, ["01", "03", "05", "06"]),
    ("bool gt false", [F.done > False], {}, ["02", "04", "07"]),
    ("datetime eq", [F.due == datetime(2024, 1, 1)], {}, ["01", "07"]),
    ("datetime lt", [F.due < datetime(2024, 1, 1)], {}, ["06"]),
    ("datetime ge", [F.due >= datetime(2024, 1, 1)], {}, ["01", "03", "04", "07"]),
    (
        "datetime gt whole second",
        [F.due > datetime(2023, 12, 31, 23, 59, 59)],
        {},
        ["01", "03", "04", "06", "07"],
    ),
    ("datetime eq none", [F.due == None], {}, ["02", "05"]),
    ("datetime as iso text", [F.due == "2024-02-01T00:00:00"], {}, ["04"]),
    ("two conditions are anded", [F.done == False, F.priority >= 2], {}, ["01", "06"]),
    ("keyword", [], {"done": True}, ["02", "04", "07"]),
    ("keywords are anded", [], {"done": True, "priority": 1}, ["07"]),
    ("keyword none", [], {"priority": None}, ["02", "05"]),
    ("keyword and condition", [F.title.startswith("a")], {"done": True}, ["04", "07"]),
    ("keyword id", [], {"id": "03"}, ["03"]),
    ("condition on id", [F.id.in_(["02", "06", "99"])], {}, ["02", "06"]),
    ("condition on version", [F.version == 1], {}, ["01", "02", "03", "04", "05", "06", "07"]),
    ("nothing matches", [F.title == "fig"], {}, []),
]


@pytest.mark.parametrize(
    ("conditions", "equals", "expected"),
    [case[1:] for case in CONDITIONS],
    ids=[case[0] for case in CONDITIONS],
)
def test_conditions(
    todos: statekeep.Store,
    conditions: list[Condition],
    equals: dict[str, Any],
    expected: list[str],
) -> None:
    assert ids(todos.find(Todo, *conditions, **equals)) == expected
    assert todos.count(Todo, *conditions, **equals) == len(expected)


ORDERINGS: list[tuple[str, Any, list[str]]] = [
    ("default is id", None, ["01", "02", "03", "04", "05", "06", "07"]),
    ("id desc", "-id", ["07", "06", "05", "04", "03", "02", "01"]),
    ("none first ascending, ties by id", "priority", ["02", "05", "03", "07", "06", "01", "04"]),
    ("none last descending, ties by id", "-priority", ["01", "04", "06", "03", "07", "02", "05"]),
    ("text is by code point", F.title, ["05", "01", "04", "07", "02", "03", "06"]),
    ("text desc", "-title", ["06", "03", "02", "07", "04", "01", "05"]),
    ("fieldref desc", F.title.desc(), ["06", "03", "02", "07", "04", "01", "05"]),
    ("datetime", "due", ["02", "05", "06", "01", "07", "04", "03"]),
    ("datetime desc", F.due.desc(), ["03", "04", "01", "07", "06", "02", "05"]),
    ("bool", "done", ["01", "03", "05", "06", "02", "04", "07"]),
    ("not indexed text", "notes", ["02", "06", "01", "03", "07", "04", "05"]),
    ("two keys", ["done", "-priority"], ["01", "06", "03", "05", "04", "07", "02"]),
    ("two keys mixed forms", [F.done.desc(), F.title], ["04", "07", "02", "05", "01", "03", "06"]),
    ("tuple of keys", ("-notes", F.priority.asc()), ["05", "04", "03", "07", "01", "02", "06"]),
]


@pytest.mark.parametrize(
    ("order_by", "expected"),
    [case[1:] for case in ORDERINGS],
    ids=[case[0] for case in ORDERINGS],
)
def test_ordering(todos: statekeep.Store, order_by: Any, expected: list[str]) -> None:
    assert ids(todos.find(Todo, order_by=order_by)) == expected


def test_ordering_with_conditions(todos: statekeep.Store) -> None:
    found = todos.find(Todo, F.priority != None, done=False, order_by="-priority")
    assert ids(found) == ["01", "06", "03"]


@pytest.mark.parametrize(
    ("limit", "offset", "expected"),
    [
        (3, 0, ["05", "01", "04"]),
        (3, 2, ["04", "07", "02"]),
        (None, 5, ["03", "06"]),
        (None, 0, ["05", "01", "04", "07", "02", "03", "06"]),
        (100, 0, ["05", "01", "04", "07", "02", "03", "06"]),
        (0, 0, []),
        (0, 3, []),
        (5, 7, []),
        (None, 100, []),
        (1, 6, ["06"]),
    ],
)
def test_limit_and_offset(
    todos: statekeep.Store, limit: int | None, offset: int, expected: list[str]
) -> None:
    assert ids(todos.find(Todo, order_by="title", limit=limit, offset=offset)) == expected


def test_limit_and_offset_apply_after_filtering(todos: statekeep.Store) -> None:
    assert ids(todos.find(Todo, F.priority != None, limit=2, offset=1)) == ["03", "04"]


def test_find_is_lazy_and_can_be_consumed_partially(store: statekeep.Store) -> None:
    store.save_many(Todo(id=f"{i:05d}", title=f"t{i:05d}") for i in range(20_000))
    found = store.find(Todo, order_by="-title")
    assert iter(found) is found  # an iterator, not a list
    assert ids(itertools.islice(found, 3)) == ["19999", "19998", "19997"]
    assert next(found).id == "19996"
    # an abandoned, half-read result gets in nobody's way
    store.save(Todo(id="later", title="later"))
    assert store.count(Todo) == 20_001
    del found
    store.save(Note(text="after"))
    assert store.count(Note) == 1


@pytest.mark.parametrize("order_by", ["title", "priority"], ids=["indexed", "not-indexed"])
def test_saving_each_result_while_iterating_visits_each_once(
    store: statekeep.Store, order_by: str
) -> None:
    """The everyday loop: `for todo in find(...): change it; save(todo)`."""
    store.save_many(Todo(id=f"{i:03d}", title=f"item {i:03d}", priority=i) for i in range(100))
    seen: list[str] = []
    for todo in store.find(Todo, order_by=order_by):
        seen.append(todo.id)
        if len(seen) > 200:
            break  # it is revisiting rows it has already changed
        todo.title = "zz " + todo.title
        todo.priority = (todo.priority or 0) + 1000
        store.save(todo)
    assert len(seen) == 100, f"visited {len(seen)} rows of 100: rows changed by save() came back"
    assert sorted(seen) == [f"{i:03d}" for i in range(100)]
    assert store.count(Todo, F.title.startswith("zz item")) == 100
    assert store.count(Todo, F.title.startswith("zz zz")) == 0


def test_in_with_tens_of_thousands_of_values(todos: statekeep.Store) -> None:
    many = [f"no-{i}" for i in range(40_000)]
    assert ids(todos.find(Todo, F.id.in_([*many, "03", "05"]))) == ["03", "05"]
    assert todos.count(Todo, F.title.not_in([*many, "apple"])) == 6


def test_aware_datetimes_compare_and_order_in_time_order(store: statekeep.Store) -> None:
    utc = UTC
    whole = datetime(2024, 1, 1, 12, 0, 0, tzinfo=utc)
    half_past = datetime(2024, 1, 1, 12, 0, 0, 500000, tzinfo=utc)
    before = datetime(2024, 1, 1, 11, 59, 59, 999999, tzinfo=utc)
    store.save(Todo(id="whole", title="a", due=whole))
    store.save(Todo(id="half", title="b", due=half_past))
    store.save(Todo(id="before", title="c", due=before))
    assert ids(store.find(Todo, F.due > whole)) == ["half"]
    assert ids(store.find(Todo, F.due < whole)) == ["before"]
    assert ids(store.find(Todo, F.due == whole)) == ["whole"]
    assert ids(store.find(Todo, order_by="due")) == ["before", "whole", "half"]


# -- indexed and non-indexed fields give the same answers -------------------

LABELS = [None, "", "a", "b", "B", "ab", "it's", "日本", "émile", "z", "a%_"]
NUMBERS = [None, -5, 0, 1, 2, 2, 10, 2**40]
RATIOS = [None, -1.5, 0.0, 0.25, 1.0, 3.75, 1e10]
FLAGS = [None, True, False]
TIMES = [
    None,
    datetime(2024, 1, 1),
    datetime(2024, 1, 1, 0, 0, 0, 250000),
    datetime(2023, 6, 30, 23, 59),
    datetime(2024, 12, 31, 23, 59, 59, 999999),
]
FIELDS: dict[str, list[Any]] = {
    "label": LABELS,
    "number": NUMBERS,
    "ratio": RATIOS,
    "flag": FLAGS,
    "at": TIMES,
}


def _records() -> list[dict[str, Any]]:
    strides = {"label": 1, "number": 3, "ratio": 5, "flag": 7, "at": 2}
    return [
        {
            "id": f"r{i:02d}",
            **{name: FIELDS[name][(i * strides[name]) % len(FIELDS[name])] for name in FIELDS},
        }
        for i in range(45)
    ]


def _matches(value: Any, op: str, target: Any) -> bool:
    """The contract, written out: == and != are null-safe; the rest never match None."""
    if op == "==":
        return bool(value == target)
    if op == "!=":
        return bool(value != target)
    if op == "in":
        return value in target
    if op == "not in":
        return value not in target
    if value is None:
        return False
    if op == "startswith":
        return bool(value.startswith(target))
    return bool(
        {"<": value < target, "<=": value <= target, ">": value > target, ">=": value >= target}[op]
    )


def _condition(cls: type[Entity], name: str, op: str, target: Any) -> Condition:
    ref: FieldRef = getattr(cls.f, name)
    if op == "in":
        return ref.in_(target)
    if op == "not in":
        return ref.not_in(target)
    if op == "startswith":
        return ref.startswith(target)
    conditions: dict[str, Condition] = {
        "==": ref == target,
        "!=": ref != target,
        "<": ref < target,
        "<=": ref <= target,
        ">": ref > target,
        ">=": ref >= target,
    }
    return conditions[op]


def _cases() -> Iterator[tuple[str, str, Any]]:
    for name, values in FIELDS.items():
        present = sorted({v for v in values if v is not None}, key=lambda v: (type(v).__name__, v))
        yield name, "==", None
        yield name, "!=", None
        yield name, "in", ()
        yield name, "not in", ()
        yield name, "in", (None,)
        yield name, "not in", (None,)
        for value in present:
            for op in ("==", "!=", "<", "<=", ">", ">="):
                yield name, op, value
            yield name, "in", (value, None)
            yield name, "not in", (value,)
            yield name, "not in", (value, None)
    for prefix in ("", "a", "B", "it'", "日", "a%", "a_", "zz"):
        yield "label", "startswith", prefix


def _expected_order(records: list[dict[str, Any]], keys: list[tuple[str, bool]]) -> list[str]:
    result = sorted(records, key=lambda r: r["id"])
    for name, descending in reversed(keys):
        result.sort(
            key=lambda r: (r[name] is not None, r[name] if r[name] is not None else 0),
            reverse=descending,
        )
    return [r["id"] for r in result]


def test_indexed_and_plain_fields_give_the_same_results(store: statekeep.Store) -> None:
    records = _records()
    store.save_many(IndexedRecord(**r) for r in records)
    store.save_many(PlainRecord(**r) for r in records)
    checked = 0
    for name, op, target in _cases():
        expected = [r["id"] for r in records if _matches(r[name], op, target)]
        for cls in (IndexedRecord, PlainRecord):
            condition = _condition(cls, name, op, target)
            found = ids(store.find(cls, condition))
            assert found == expected, (cls.__name__, name, op, target)
            assert store.count(cls, condition) == len(expected), (cls.__name__, name, op, target)
        checked += 1
    assert checked > 200
    orders = [[(name, False)] for name in FIELDS] + [[(name, True)] for name in FIELDS]
    orders += [
        [("flag", False), ("number", True)],
        [("label", True), ("at", False), ("ratio", True)],
    ]
    for keys in orders:
        expected = _expected_order(records, keys)
        order_by = [("-" if descending else "") + name for name, descending in keys]
        for cls in (IndexedRecord, PlainRecord):
            assert ids(store.find(cls, order_by=order_by)) == expected, (cls.__name__, keys)
