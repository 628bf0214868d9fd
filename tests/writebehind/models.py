"""Entities the write-behind tests store (each in a collection of its own).

The crash test's child process imports this module too, so it stays free of
anything but statekeep."""

from __future__ import annotations

from typing import Annotated

from statekeep import Entity, Indexed


class Reading(Entity, collection="wb_reading", last_write_wins=True):
    """A per-entity counter and a payload derived from it: content tells its age."""

    counter: Annotated[int, Indexed()] = 0
    payload: str = ""


class Doc(Entity, collection="wb_doc", last_write_wins=True):
    """Written over whatever is stored (the opt-out of the conflict rule): the
    tests of ordering, coalescing and durability enqueue new objects over
    stored ids; the conflict rule's own tests use _exact.Mark."""

    title: str = ""
    n: int = 0


class Tag(Entity, collection="wb_tag"):
    """An indexed code, a whole number in this version (a later one widens it)."""

    code: Annotated[int, Indexed()] = 0


def payload_of(id: str, counter: int) -> str:
    """The payload a Reading with this id and counter carries (checked on read)."""
    return f"{id}:{counter}:" + "x" * (counter % 17)
