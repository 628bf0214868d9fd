"""Entities the PostgreSQL tests store. The child processes import this
module too, so it stays free of anything but statekeep."""

from __future__ import annotations

from typing import Annotated

from statekeep import Entity, Indexed


class Tally(Entity, collection="pg_tally"):
    """A counter that processes race to increment; writer names the last one."""

    total: Annotated[int, Indexed()] = 0
    writer: str = ""


class Reading(Entity, collection="pg_reading"):
    """A per-entity counter and a payload derived from it: content tells its age."""

    counter: Annotated[int, Indexed()] = 0
    payload: str = ""


class Doc(Entity, collection="pg_doc"):
    title: Annotated[str, Indexed()] = ""
    n: int = 0


class Wide(Entity, collection="pg_wide"):
    indexed: Annotated[int, Indexed()] = 0
    plain: int = 0


def payload_of(id: str, counter: int) -> str:
    return f"{id}:{counter}:" + "x" * (counter % 13)
