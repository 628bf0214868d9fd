"""Field types beyond the plain ones: aliases, computed fields, unions,
literals, enums, and the fields that cannot be indexed or ordered by."""

from __future__ import annotations

import enum
from typing import Annotated, Literal

import pytest
from pydantic import ConfigDict, computed_field
from pydantic.alias_generators import to_camel

import statekeep
from statekeep import Entity, Indexed
from statekeep.errors import ConfigurationError, QueryError


class Person(Entity):
    model_config = ConfigDict(alias_generator=to_camel)
    full_name: Annotated[str, Indexed()]
    home_town: str = ""


class Box(Entity):
    width: int

    @computed_field  # type: ignore[prop-decorator]
    @property
    def area(self) -> int:
        return self.width * self.width


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 10


class Score(Entity):
    mixed: Annotated[int | float, Indexed()] = 0
    stars: Annotated[Literal[1, 5, 10], Indexed()] = 1
    level: Annotated[Level, Indexed()] = Level.LOW
    label: Annotated[int | str, Indexed()] = 0


def test_aliased_fields_round_trip_and_are_queried_by_name(store: statekeep.Store) -> None:
    ada = store.save(Person(fullName="Ada", homeTown="London"))
    assert store.get(Person, ada.id).full_name == "Ada"
    assert [p.id for p in store.find(Person, Person.f.full_name == "Ada")] == [ada.id]
    assert store.count(Person, home_town="London") == 1


def test_computed_fields_are_not_stored_and_come_back_computed(store: statekeep.Store) -> None:
    box = store.save(Box(width=3))
    assert store.get(Box, box.id).area == 9
    assert [b.area for b in store.find(Box)] == [9]


def test_indexed_unions_literals_and_enums_compare_as_numbers(store: statekeep.Store) -> None:
    store.save_many(
        [
            Score(id="a", mixed=2.5, stars=1, level=Level.LOW, label="text"),
            Score(id="b", mixed=10, stars=10, level=Level.HIGH, label=7),
            Score(id="c", mixed=-1, stars=5, level=Level.LOW, label=3),
        ]
    )
    assert [s.id for s in store.find(Score, Score.f.mixed > 2)] == ["a", "b"]
    assert [s.id for s in store.find(Score, order_by="mixed")] == ["c", "a", "b"]
    assert [s.id for s in store.find(Score, Score.f.stars >= 5)] == ["b", "c"]
    assert [s.id for s in store.find(Score, Score.f.level > Level.LOW)] == ["b"]
    # mixed kinds order as SQLite orders them: numbers before text
    assert [s.id for s in store.find(Score, order_by="label")] == ["c", "b", "a"]


def test_a_field_of_lists_cannot_be_indexed() -> None:
    with pytest.raises(ConfigurationError, match="tags"):

        class Tagged(Entity):
            tags: Annotated[list[str], Indexed()] = []


@pytest.mark.parametrize("field", ["winners", "address"])
def test_ordering_by_a_field_of_lists_or_dicts_is_a_query_error(
    store: statekeep.Store, field: str
) -> None:
    class Standing(Entity):
        winners: list[str] = []
        address: dict[str, str] = {}

    store.save(Standing(winners=["x"]))
    with pytest.raises(QueryError, match=field):
        store.find(Standing, order_by=field)


@pytest.mark.parametrize("last", ["\ud7ff", "\U0010ffff", "z"])
def test_startswith_works_whatever_the_prefix_ends_with(store: statekeep.Store, last: str) -> None:
    class Word(Entity):
        text: Annotated[str, Indexed()]

    prefix = "ab" + last
    store.save_many([Word(id="in", text=prefix + "x"), Word(id="out", text="ab")])
    assert [w.id for w in store.find(Word, Word.f.text.startswith(prefix))] == ["in"]
