"""Models and helpers the state tests share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import immutables
import zstandard
from pydantic import BaseModel

import statekeep
from statekeep.state import StateSnapshot
from statekeep.state._node import Node
from statekeep.state._snapshot import full_id


class Doc(BaseModel):
    title: str = ""
    paragraphs: list[str] = []


class Cursor(BaseModel):
    line: int = 0
    column: int = 0


def thaw(value: Any) -> Any:
    """A snapshot as plain data, written here rather than taken from src."""
    if isinstance(value, Node):
        return {name: thaw(getattr(value, name)) for name in value._names}
    if isinstance(value, immutables.Map):
        return {key: thaw(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return [thaw(item) for item in value]
    return value


def planted(tmp_path: Path, raw: bytes, name: str = "s") -> str:
    """The URL of a new SQLite database holding one full snapshot of `name`
    whose packed bytes (before zstd) are raw: a row as a tool or a hand
    could have written it."""
    url = f"sqlite:///{tmp_path / 'planted.db'}"
    with statekeep.open(url) as store:
        store.save(
            StateSnapshot(
                id=full_id(name),
                state=name,
                kind="full",
                seq=3,
                base=3,
                prev=3,
                level=3,
                data=zstandard.ZstdCompressor().compress(raw),
            )
        )
    return url
