"""Entities and domain events the event tests use.

Todo and Note are the conformance suite's (collections "todo" and "note"),
so patterns read as in the docs ("todo.*"). The child processes import this
module too, so it stays free of anything but statekeep and those models."""

from __future__ import annotations

from conformance.models import Counter, Note, Todo
from statekeep import Entity, Event


class Session(Entity):
    """Records domain events (collection "session")."""

    minutes: int = 0


class SessionCompleted(Event):
    """A domain event: its name is `session.session_completed`."""

    minutes: int


class SessionAbandoned(Event):
    reason: str = ""


class Item(Entity, collection="ev_item"):
    """What the cross-process tests write: n is the write's number in the plan."""

    n: int = 0


class Tick(Entity, collection="ev_tick"):
    """Carries the wall-clock time it was saved at (the latency measurement)."""

    sent: float = 0.0


__all__ = [
    "Counter",
    "Item",
    "Note",
    "Session",
    "SessionAbandoned",
    "SessionCompleted",
    "Tick",
    "Todo",
]
