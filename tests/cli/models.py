"""Entities the command-line tests store (each in a collection of its own).

The child process of these tests imports this module too, so it stays free
of anything but statekeep and pydantic."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from statekeep import Entity, Indexed


class Person(Entity, collection="cli_person"):
    """Two indexed fields (a text and a number) and a body of every JSON kind."""

    name: Annotated[str, Indexed()]
    age: Annotated[int, Indexed()] = 0
    score: float = 0.0
    big: int = 0
    tags: list[str] = Field(default_factory=list)
    extra: dict[str, Any] = Field(default_factory=dict)
    nick: str | None = None


class Note(Entity, collection="cli_note"):
    text: str = ""


class Doc(Entity, collection="cli_doc", last_write_wins=True):
    """What the write-behind tests enqueue (written over whatever is stored)."""

    title: str = ""
    n: int = 0


class Reading(Entity, collection="cli_reading"):
    """Floats of every size, in a body PostgreSQL's jsonb spells anew."""

    value: float = 0.0
    values: list[float] = Field(default_factory=list)
    nested: dict[str, Any] = Field(default_factory=dict)
