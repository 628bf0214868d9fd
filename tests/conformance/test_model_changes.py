"""Models change between deploys: indexes added, dropped, retyped, fields removed.

Each test plays two versions of an application against one database: one
store per version (two stores open at once on backends that keep data, as in
a rolling deploy; one store elsewhere), each with its own class for the same
collection. Whatever the order of writes, every reader gets the answers the
bodies say.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

import pytest
from pydantic import AliasChoices, Field

import statekeep
from statekeep import Entity, Indexed

from .conftest import Backend


@pytest.fixture
def second(backend: Backend, store_url: str, store: statekeep.Store) -> Iterator[statekeep.Store]:
    """Another process's store on the same data where the backend keeps data;
    else the same store."""
    if "persistent" not in backend.capabilities:
        yield store
        return
    with statekeep.open(store_url) as other:
        yield other


def ids(found: Iterator[Any]) -> list[str]:
    return sorted(entity.id for entity in found)


# -- item 1: an index dropped, then added again -------------------------------


class PrioV1(Entity, collection="prio_task"):
    prio: Annotated[int, Indexed()] = 0


class PrioV2(Entity, collection="prio_task", shared=True):
    prio: int = 0


class PrioV3(Entity, collection="prio_task", shared=True):
    prio: Annotated[int, Indexed()] = 0


def test_an_index_dropped_and_added_again_is_right(
    store: statekeep.Store, second: statekeep.Store
) -> None:
    store.save_many(PrioV1(id=f"t{i}", prio=i) for i in range(10))
    moved = list(second.find(PrioV2))
    for task in moved:  # version 2 has no index on prio and moves every task up
        task.prio += 100
    second.save_many(moved)
    second.save(PrioV2(id="new", prio=7))
    assert store.count(PrioV3, PrioV3.f.prio >= 100) == 10
    assert ids(store.find(PrioV3, prio=3)) == []
    assert ids(store.find(PrioV3, prio=103)) == ["t3"]
    assert ids(store.find(PrioV3, prio=7)) == ["new"]
    ordered = [t.prio for t in store.find(PrioV3, order_by="-prio", limit=2)]
    assert ordered == [109, 108]


# -- item 2: a rolling deploy, the old version still writing ------------------


class JobOld(Entity, collection="rolling_job"):
    name: str
    priority: int = 0


class JobNew(Entity, collection="rolling_job", shared=True):
    name: Annotated[str, Indexed()]
    priority: Annotated[int, Indexed()] = 0


def test_rows_an_older_version_writes_are_found_by_the_newer(
    store: statekeep.Store, second: statekeep.Store
) -> None:
    old, new = store, second
    old.save(JobOld(id="before", name="before"))
    assert ids(new.find(JobNew, priority=0)) == ["before"]  # the new version adds the columns
    old.save(JobOld(id="after", name="after"))  # the old version goes on writing
    old.save_many(JobOld(id=f"bulk{i}", name=f"bulk{i}", priority=i % 2) for i in range(10))
    updated = old.get(JobOld, "before")
    updated.priority = 5  # an update by the old version leaves no stale column
    old.save(updated)
    assert ids(new.find(JobNew, priority=0)) == ["after"] + [f"bulk{i}" for i in (0, 2, 4, 6, 8)]
    assert new.count(JobNew, priority=0) == 6
    assert new.count(JobNew, priority=5) == 1
    assert ids(new.find(JobNew, name="after")) == ["after"]
    assert [j.id for j in new.find(JobNew, order_by="-priority", limit=1)] == ["before"]
    # and the old version reads what the new one wrote
    new.save(JobNew(id="fresh", name="fresh", priority=9))
    assert old.get(JobOld, "fresh").priority == 9
    assert ids(old.find(JobOld, JobOld.f.priority > 6)) == ["fresh"]


# -- item 3: an indexed field changes kind ------------------------------------


class CodeAsInt(Entity, collection="coded"):
    code: Annotated[int, Indexed()] = 0


class CodeAsText(Entity, collection="coded", shared=True):
    code: Annotated[str, Indexed()] = ""


def test_an_indexed_field_that_changes_kind_compares_as_its_new_kind(
    store: statekeep.Store, second: statekeep.Store
) -> None:
    store.save_many(CodeAsInt(id=f"c{i}", code=i) for i in (7, 10, 9))
    # a migration rewrites the stored values as text
    second.save_many(
        [CodeAsText(id="c7", code="007", version=1), CodeAsText(id="c9", code="9", version=1)]
    )
    second.save(CodeAsText(id="c10", code="10", version=1))
    second.save(CodeAsText(id="abc", code="abc"))
    assert ids(second.find(CodeAsText, code="7")) == []
    assert ids(second.find(CodeAsText, code="007")) == ["c7"]
    assert ids(second.find(CodeAsText, CodeAsText.f.code.startswith("0"))) == ["c7"]
    ordered = [c.code for c in second.find(CodeAsText, order_by="code")]
    assert ordered == ["007", "10", "9", "abc"]  # text order, not numeric
    assert second.count(CodeAsText, CodeAsText.f.code > "8") == 2


# -- item 4: a field removed or renamed ---------------------------------------


class ProfileV1(Entity, collection="profile"):
    name: str
    nickname: str = ""
    age: Annotated[int, Indexed()] = 0


class ProfileRemoved(Entity, collection="profile", shared=True):
    name: str
    age: Annotated[int, Indexed()] = 0


class ProfileRenamed(Entity, collection="profile", shared=True):
    full_name: str = Field(validation_alias=AliasChoices("full_name", "name"))
    age: Annotated[int, Indexed()] = 0


def test_rows_keep_being_read_after_a_field_is_removed_or_renamed(
    store: statekeep.Store, second: statekeep.Store
) -> None:
    store.save_many(ProfileV1(id=f"p{i}", name=f"n{i}", nickname="x", age=i) for i in range(5))
    found = list(second.find(ProfileRemoved, ProfileRemoved.f.age >= 3))
    assert [(p.id, p.name) for p in found] == [("p3", "n3"), ("p4", "n4")]
    assert second.count(ProfileRemoved) == 5
    profile = second.get(ProfileRemoved, "p0")
    second.save(profile)  # saved again without the removed field
    assert store.get(ProfileV1, "p0").nickname == ""
    renamed = second.get(ProfileRenamed, "p1")
    assert renamed.full_name == "n1"
    second.save(renamed)
    assert second.get(ProfileRenamed, "p1").full_name == "n1"
    assert [p.full_name for p in second.find(ProfileRenamed, age=2)] == ["n2"]


def test_extra_fields_are_still_refused_when_an_entity_is_made() -> None:
    with pytest.raises(statekeep.ValidationError):
        ProfileRemoved(name="x", nickname="typo")  # type: ignore[call-arg]


# -- defaults that are SQL text in a trigger ----------------------------------

_AWKWARD = "it's 100% \"so\" $fill$ ü $$ \\ ';"


class AwkwardV1(Entity, collection="awkward_default"):
    name: str = ""


class AwkwardV2(Entity, collection="awkward_default", shared=True):
    name: str = ""
    label: Annotated[str, Indexed()] = _AWKWARD


def test_an_indexed_default_with_quotes_percent_and_dollars_is_found(
    store: statekeep.Store, second: statekeep.Store
) -> None:
    store.save_many(AwkwardV1(id=f"a{i}", name=f"n{i}") for i in range(3))
    assert second.count(AwkwardV2, label=_AWKWARD) == 3
    store.save(AwkwardV1(id="late"))  # the older version, after the newer made the column
    second.save(AwkwardV2(id="other", label="x"))
    assert ids(second.find(AwkwardV2, label=_AWKWARD)) == ["a0", "a1", "a2", "late"]
    assert ids(second.find(AwkwardV2, AwkwardV2.f.label.startswith("it's 100%"))) == [
        "a0",
        "a1",
        "a2",
        "late",
    ]


# -- two classes of one collection in one process ------------------------------


class Chore(Entity, collection="chore_both"):
    title: Annotated[str, Indexed()]  # required: no default
    notes: str = ""


class ChoreTitle(Entity, collection="chore_both", shared=True):  # a projection
    title: Annotated[str, Indexed()] = ""


@pytest.mark.requires("persistent")
def test_a_class_and_its_projection_are_read_by_turns_without_rebuilding_the_column(
    store: statekeep.Store, store_url: str
) -> None:
    """The two declare `title` with different defaults. Each read of one after
    the other rebuilt the column (a rewrite of the whole table, under the
    write lock): here, while another store holds a transaction open, every
    such read waited for it and failed."""
    store.save_many(Chore(id=f"c{i}", title=f"t{i % 2}") for i in range(20))
    assert store.count(Chore, title="t0") == 10
    assert store.count(ChoreTitle, title="t0") == 10
    with statekeep.open(store_url) as other:
        assert other.count(Chore, title="t0") == other.count(ChoreTitle, title="t0") == 10
        with other.transaction():
            other.save(Chore(id="held", title="t0"))  # uncommitted: holds the write lock
            started = time.monotonic()
            for _ in range(3):
                assert store.count(Chore, title="t1") == 10
                found = ids(store.find(ChoreTitle, title="t1"))
                assert found == sorted(f"c{i}" for i in range(1, 20, 2))
            assert time.monotonic() - started < 2


# -- a SQL tool writes the table --------------------------------------------


class Visit(Entity, collection="visit_sql"):
    at: Annotated[datetime, Indexed()]
    where: Annotated[str, Indexed()] = "home"


@pytest.mark.requires("sqlite", "persistent")
def test_a_sql_tool_writes_a_table_with_an_indexed_time(
    store: statekeep.Store, store_url: str
) -> None:
    """The fill trigger called statekeep_time, a function only statekeep's
    connections have: any other program's INSERT failed. A body edited in
    place (stamp and version kept) was not filled again: its columns went stale."""
    store.save(Visit(id="v0", at=datetime(2024, 1, 1, 12, tzinfo=UTC)))
    tool = sqlite3.connect(store_url.removeprefix("sqlite:///"))
    bodies = {
        "v1": '{"id":"v1","version":1,"at":"2024-01-01T14:00:00+02:00"}',
        "v2": '{"id":"v2","version":1,"at":"2024-01-01T12:00:00.250000Z","where":"work"}',
        "v3": '{"id":"v3","version":1,"at":"2023-12-31T23:30:00.000001-12:30"}',
    }
    with tool:
        tool.executemany(
            "INSERT INTO visit_sql (id, version, body) VALUES (?, 1, ?)", bodies.items()
        )
        tool.execute(  # a row statekeep wrote, edited in place
            "UPDATE visit_sql SET body = json_set(body, '$.where', 'away') WHERE id = 'v0'"
        )
    tool.close()
    noon = datetime(2024, 1, 1, 12, tzinfo=UTC)
    assert ids(store.find(Visit, at=noon)) == ["v0", "v1"]
    assert ids(store.find(Visit, Visit.f.at > noon)) == ["v2", "v3"]
    assert [v.id for v in store.find(Visit, order_by="at")] == ["v0", "v1", "v3", "v2"]
    assert ids(store.find(Visit, where="home")) == ["v1", "v3"]
    assert ids(store.find(Visit, where="away")) == ["v0"]
