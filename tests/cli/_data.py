"""A store's worth of varied entities, and the checks that two stores hold the same."""

from __future__ import annotations

import statekeep

from .models import Note, Person

# ids with quotes, backslashes, slashes, spaces, LIKE's wildcards and non-ASCII
# and the line separators JSON does not escape but str.splitlines() splits at
ODD_IDS = [
    'quote"d',
    "it's",
    "back\\slash",
    "a/b",
    "two words",
    "50%_off",
    "日本語",
    "😀",
    "é",
    "line\u2028sep",
    "next\x85line",
]
NAMES = ["Ann", "Bob", "Zoë", "李", "O'Brien", 'say "hi"']


def people() -> list[Person]:
    """Persons in every shape: nested bodies, unicode, big integers, optional fields."""
    found = []
    for n in range(24):
        found.append(
            Person(
                id=f"p{n:02}",
                name=NAMES[n % len(NAMES)],
                age=n % 5,
                score=[0.1, -2.5, 1.5e-300, 3.0, 1234.5678][n % 5],
                big=[0, 2**63 - 1, -(2**63), 2**70, 10**30][n % 5],
                tags=["x", "日本", "a\u2028b"][: n % 4],
                extra={"z": n, "a": {"y": [1, {"b": 2, "a": 1}], "x": None}, "t": "line\nbreak"},
                nick=None if n % 2 else f"nick {n} ✓",
            )
        )
    for n, id in enumerate(ODD_IDS):
        found.append(Person(id=id, name=id, age=100 + n, extra={"id is": id}))
    return found


def populate(store: statekeep.Store) -> None:
    """Persons (some saved up to three times: versions 1 to 3) and notes."""
    for person in people():
        store.save(person)
    for n, person in enumerate(people()):
        for _ in range(n % 3):
            stored = store.get(Person, person.id)
            stored.tags = [*stored.tags, "again"]
            store.save(stored)
    store.save_many([Note(id=f"n{n}", text=f"note {n} «ünïcödé»") for n in range(10)])


def assert_same(source: statekeep.Store, target: statekeep.Store) -> None:
    """Every Person and Note of source is in target, equal, at the same version;
    and find on the indexed fields gives the same answers on both."""
    for cls in (Person, Note):
        mine = {e.id: e for e in source.find(cls)}
        theirs = {e.id: e for e in target.find(cls)}
        assert sorted(theirs) == sorted(mine), cls.__name__
        for id, entity in mine.items():
            got = target.get(cls, id)
            assert got == entity, (id, got, entity)
            assert got.version == entity.version, id
    for name in [*NAMES, *ODD_IDS]:
        expected = sorted(p.id for p in source.find(Person, name=name))
        assert expected, name
        assert sorted(p.id for p in target.find(Person, name=name)) == expected, name
    for age in (0, 3, 104):
        expected = sorted(p.id for p in source.find(Person, age=age))
        assert sorted(p.id for p in target.find(Person, age=age)) == expected, age
