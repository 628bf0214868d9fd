"""Models and helpers the state tests share."""

from __future__ import annotations

from typing import Any

import immutables
from pydantic import BaseModel

from statekeep.state._node import Node


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
