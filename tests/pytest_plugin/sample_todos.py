"""The sample project's tests of its todos (run as test_todos.py): save and
find, events, and isolation. Each test writes the URL of its store to
urls.txt, for tests/test_pytest_plugin.py to check where it was."""

from __future__ import annotations

from pathlib import Path

import pytest
from todo_app import Todo

import statekeep
from statekeep.pytest_plugin import RecordedEvents

URLS = Path(__file__).with_name("urls.txt")


@pytest.fixture(autouse=True)
def note_the_url(statekeep_url: str) -> None:
    with URLS.open("a") as urls:
        urls.write(statekeep_url + "\n")


@pytest.mark.parametrize("title", ["first", "second", "third"])
def test_each_test_starts_empty(statekeep_store: statekeep.Store, title: str) -> None:
    assert statekeep_store.count(Todo) == 0  # nothing of the tests before
    statekeep_store.save(Todo(title=title))
    statekeep_store.save(Todo(title="shared", done=True))
    assert [t.title for t in statekeep_store.find(Todo, title=title)] == [title]
    assert statekeep_store.count(Todo) == 2


def test_save_and_find(statekeep_store: statekeep.Store) -> None:
    statekeep_store.save_many(Todo(title=f"task {i}", done=i % 2 == 0) for i in range(10))
    open_ = statekeep_store.find(Todo, Todo.f.done == False, order_by="title", limit=2)
    assert [t.title for t in open_] == ["task 1", "task 3"]


def test_events_of_saves(
    statekeep_store: statekeep.Store, statekeep_events: RecordedEvents
) -> None:
    todo = statekeep_store.save(Todo(title="write"))
    todo.done = True
    statekeep_store.save(todo)
    assert statekeep_events.names == ["todo.created", "todo.updated"]
    assert [e.entity.title for e in statekeep_events.of(Todo.Created)] == ["write"]
    assert [e.entity.done for e in statekeep_events.of(statekeep.Updated)] == [True]
    assert len(statekeep_events.of("todo.*")) == len(statekeep_events) == 2
    assert statekeep_events[0].entity_id == statekeep_events[-1].entity_id == todo.id
    statekeep_events.clear()
    assert list(statekeep_events) == []


def test_events_of_enqueued_writes(
    statekeep_store: statekeep.Store, statekeep_events: RecordedEvents
) -> None:
    statekeep_store.enqueue(Todo(title="later"))  # stored by the write-behind thread
    assert statekeep_events.wait(1, of=Todo.Created, timeout=10)
    assert [e.entity.title for e in statekeep_events.of(Todo.Created)] == ["later"]
    assert not statekeep_events.wait(1, of=Todo.Deleted, timeout=0.05)
