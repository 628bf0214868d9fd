"""Long strings on every backend: an indexed string of any length is stored and
found like a short one (PostgreSQL indexes a prefix of it; SQLite's index
entries spill to overflow pages; memory and files hold no index). A long id
is stored too, but on PostgreSQL, whose primary key holds at most about
2.7 KB: there it is a ValidationError that says so, with nothing stored."""

from __future__ import annotations

import random
import string
from collections.abc import Callable

import pytest

import statekeep
from statekeep import ValidationError

from .conftest import Backend
from .models import Todo

Check = Callable[[], None]


def text(length: int, seed: int) -> str:
    """Text that compresses poorly, so that its size is what an index would hold."""
    return "".join(random.Random(seed).choices(string.ascii_letters, k=length))


@pytest.mark.parametrize("length", [3_000, 10_000, 100_000])
def test_a_long_indexed_string_is_stored_and_found(store: statekeep.Store, length: int) -> None:
    long = text(length, length)
    store.save(Todo(id="one", title=long))
    store.save_many([Todo(id=f"many{i}", title=long + str(i)) for i in range(3)])
    receipt = store.enqueue(Todo(id="queued", title=long + "q"))
    assert store.flush(timeout=10)
    assert receipt.error is None
    assert store.get(Todo, "one").title == long
    assert [t.id for t in store.find(Todo, title=long)] == ["one"]
    assert [t.id for t in store.find(Todo, Todo.f.title == long + "q")] == ["queued"]
    assert store.count(Todo, Todo.f.title.startswith(long)) == 5
    assert store.count(Todo, Todo.f.title > long) == 4
    assert store.count(Todo, Todo.f.title.in_([long, long + "1", "other"])) == 2
    assert [t.id for t in store.find(Todo, order_by="-title", limit=2)] == ["queued", "many2"]


def test_a_long_id(backend: Backend, store: statekeep.Store, assert_unchanged: Check) -> None:
    long = text(10_000, 7)
    todo = Todo(id=long, title="long id")
    if "postgresql" in backend.capabilities:
        with pytest.raises(ValidationError, match=r"an id must fit .* 2,704 bytes"):
            store.save(todo)
        with pytest.raises(ValidationError):
            store.save_many([Todo(id="fine", title="fine"), todo])
        assert todo.version == 0
        assert_unchanged()
        return
    store.save(todo)
    assert store.get(Todo, long).title == "long id"
    assert [t.id for t in store.find(Todo, title="long id")] == [long]
    store.delete(store.get(Todo, long))
    assert_unchanged()
