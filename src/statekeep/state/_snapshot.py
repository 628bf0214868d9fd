"""The rows a persisted AppState is kept in (collection `app_state_snapshots`).

One full snapshot per state (id: name@full; written over, last write wins)
and the deltas written after it (id: name@version, fifteen digits: no
state's ids are another's, whatever the names). A delta names the
full snapshot it builds on (`base`) and the version it follows (`prev`), so
restoring follows an unbroken chain from the full snapshot and stops at the
first gap: what it restores is always a version that existed.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict

from .._schema import Indexed
from ..entity import Entity


class StateSnapshot(Entity, collection="app_state_snapshots", last_write_wins=True):
    model_config = ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")

    state: Annotated[str, Indexed()]  # the state's name
    kind: str  # "full" or "delta"
    seq: int  # the state's version it brings the state to
    base: int  # the version of the full snapshot it builds on (a full one: its own)
    prev: int  # the version it follows (a full one: its own)
    level: int  # zstd level
    data: bytes  # packed (see _pack), compressed


def full_id(name: str) -> str:
    return f"{name}@full"


def delta_id(name: str, version: int) -> str:
    return f"{name}@{version:015d}"
