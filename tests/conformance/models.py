"""The entity classes the conformance tests store (each its own collection)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import Field

from statekeep import Entity, Indexed


class Todo(Entity):
    title: Annotated[str, Indexed()]
    done: bool = False
    priority: int | None = None
    notes: str = ""
    due: datetime | None = None


class Note(Entity):
    text: str


class Counter(Entity):
    total: int = 0
    winners: list[str] = Field(default_factory=list)


class Bag(Entity):
    """Anything JSON holds, unchecked by pydantic."""

    anything: Any = None


class Numbers(Entity):
    indexed: Annotated[int, Indexed()] = 0
    plain: int = 0
    ratio: float = 0.0


class Keywords(Entity, collection="select"):
    """SQL keywords as collection and field names."""

    order: Annotated[int, Indexed()] = 0
    group: str = ""


class RecordingTake(Entity):
    name: str = ""


class RecordingTakeAlias(Entity, collection="recording_take", shared=True):
    """The same collection on purpose: a second class for it needs shared=True."""

    name: str = ""


# Twins with the same fields, one with every field indexed (a column), one
# with none (read from the JSON body): the same data must give the same answers.
class IndexedRecord(Entity):
    label: Annotated[str | None, Indexed()] = None
    number: Annotated[int | None, Indexed()] = None
    ratio: Annotated[float | None, Indexed()] = None
    flag: Annotated[bool | None, Indexed()] = None
    at: Annotated[datetime | None, Indexed()] = None


class PlainRecord(Entity):
    label: str | None = None
    number: int | None = None
    ratio: float | None = None
    flag: bool | None = None
    at: datetime | None = None
