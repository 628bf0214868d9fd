"""Active Record: `todo.save()`, `Todo.get(id)` and friends over the default store."""

# `Todo.f.x == None` builds a condition; `is None` would not.
# ruff: noqa: E711

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import statekeep
from statekeep import ConfigurationError, NotFoundError

from .models import Todo

Check = Callable[[], None]


def test_every_method_over_the_default_store(store: statekeep.Store) -> None:
    statekeep.use(store)
    a = Todo(id="a", title="a", priority=2)
    assert a.save() is a
    assert a.version == 1
    Todo(id="b", title="b", done=True).save()
    Todo(id="c", title="c", priority=1).save()
    assert store.get(Todo, "a") == a
    assert Todo.get("b").done is True
    assert [t.id for t in Todo.all()] == ["a", "b", "c"]
    assert [t.id for t in Todo.all(order_by="-title")] == ["c", "b", "a"]
    assert [t.id for t in Todo.find(Todo.f.priority != None, order_by="priority")] == ["c", "a"]
    assert [t.id for t in Todo.find(done=False, limit=1, offset=1)] == ["c"]
    assert Todo.count() == 3
    assert Todo.count(Todo.f.priority >= 1, done=False) == 2
    a.title = "a2"
    a.save()
    assert store.get(Todo, "a").title == "a2"
    a.delete()
    assert a.version == 0
    with pytest.raises(NotFoundError):
        Todo.get("a")
    assert store.count(Todo) == 2


ACTIONS: dict[str, Callable[[Todo], Any]] = {
    "save": lambda t: t.save(),
    "delete": lambda t: t.delete(),
    "get": lambda t: Todo.get(t.id),
    "find": lambda t: Todo.find(Todo.f.done == False),
    "all": lambda t: Todo.all(),
    "count": lambda t: Todo.count(),
}


@pytest.mark.parametrize("action", ACTIONS.values(), ids=ACTIONS.keys())
def test_without_a_default_store(
    store: statekeep.Store, assert_unchanged: Check, action: Callable[[Todo], Any]
) -> None:
    todo = store.get(Todo, "seed-1")
    with pytest.raises(ConfigurationError) as excinfo:
        action(todo)
    assert "statekeep.use" in str(excinfo.value)
    assert todo.version == 1
    fresh = Todo(title="fresh")
    with pytest.raises(ConfigurationError):
        fresh.save()
    assert fresh.version == 0
    assert_unchanged()


def test_use_as_a_context_manager_restores_the_previous_store(
    store: statekeep.Store, make_store: Callable[[], statekeep.Store]
) -> None:
    other, third = make_store(), make_store()
    statekeep.use(store)
    Todo(id="1", title="to the first").save()
    with statekeep.use(other) as current:
        assert current is other
        Todo(id="2", title="to the other").save()
        with statekeep.use(third):
            Todo(id="3", title="to the third").save()
        Todo(id="4", title="to the other again").save()
    Todo(id="5", title="to the first again").save()
    assert [t.id for t in store.find(Todo)] == ["1", "5"]
    assert [t.id for t in other.find(Todo)] == ["2", "4"]
    assert [t.id for t in third.find(Todo)] == ["3"]


def test_use_restores_the_previous_store_after_an_exception(
    store: statekeep.Store, make_store: Callable[[], statekeep.Store]
) -> None:
    other = make_store()
    with statekeep.use(store):
        with pytest.raises(RuntimeError), statekeep.use(other):
            raise RuntimeError
        Todo(id="x", title="x").save()
    assert store.count(Todo) == 1
    assert other.count(Todo) == 0
    with pytest.raises(ConfigurationError):  # and no default once the outer block ends
        Todo.count()


def test_use_without_a_block_lasts(
    store: statekeep.Store, make_store: Callable[[], statekeep.Store]
) -> None:
    other = make_store()
    statekeep.use(store)
    statekeep.use(other)
    Todo(id="x", title="x").save()
    assert other.count(Todo) == 1
    assert store.count(Todo) == 0


def test_active_record_inside_a_transaction(store: statekeep.Store) -> None:
    with statekeep.use(store):
        kept = Todo(id="kept", title="kept").save()
        with pytest.raises(RuntimeError), store.transaction():
            Todo(id="new", title="new").save()
            kept.title = "changed"
            kept.save()
            raise RuntimeError
        assert kept.version == 1
        assert [t.title for t in Todo.all()] == ["kept"]
