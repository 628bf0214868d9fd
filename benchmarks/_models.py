"""The entity every benchmark stores, and the rows it is built from.

Kept free of SQLAlchemy so the memory child process imports only what
statekeep itself needs (see _orm.py for the SQLAlchemy twin).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import statekeep

TAGS = ("home", "work", "urgent", "later", "errand", "idea", "call", "read")
_EPOCH = datetime(2024, 1, 1, 9, 30)


class BenchTodo(statekeep.Entity, collection="bench_todo"):
    """Five plain fields, none indexed: the JSON body is the whole row."""

    title: str
    done: bool = False
    priority: int = 0
    tags: list[str]
    created: datetime


def fields(i: int, rng: random.Random) -> dict[str, Any]:
    """The field values of the i-th entity (without id and version)."""
    return {
        "title": f"todo number {i}: buy milk and call the plumber",
        "done": i % 3 == 0,
        "priority": rng.randrange(5),
        "tags": rng.sample(TAGS, 3),
        "created": _EPOCH + timedelta(seconds=i, microseconds=rng.randrange(1_000_000)),
    }


def field_rows(n: int, seed: int = 1) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [fields(i, rng) for i in range(n)]


def new_ids(n: int) -> list[str]:
    """n ids as statekeep makes them (time-ordered), from the id field's own factory."""
    factory = BenchTodo.model_fields["id"].default_factory
    assert factory is not None
    return [factory() for _ in range(n)]  # type: ignore[call-arg]


def entities(rows: list[dict[str, Any]], ids: list[str] | None = None) -> list[BenchTodo]:
    """Fresh entities (version 0) for rows; with ids, under those ids."""
    if ids is None:
        return [BenchTodo(**row) for row in rows]
    return [BenchTodo(id=id, **row) for id, row in zip(ids, rows, strict=True)]


def stream(n: int, seed: int = 1) -> Iterator[BenchTodo]:
    """n entities made one at a time: nothing holds on to them but the consumer."""
    rng = random.Random(seed)
    for i in range(n):
        yield BenchTodo(**fields(i, rng))
