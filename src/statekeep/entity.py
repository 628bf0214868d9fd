"""Entities: pydantic models with an id and a store-managed version.

    class Todo(statekeep.Entity):
        title: Annotated[str, statekeep.Indexed()]
        done: bool = False

Each class gets a collection (snake_case of the class name, or the
`collection=` class keyword), `Todo.f` for conditions, and Active Record
methods over the default store (`statekeep.use`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar, Self

import pydantic
from pydantic import ConfigDict, Field

from . import active
from ._ids import new_id
from ._schema import EntityInfo, as_validation_error
from .conditions import Condition, Fields
from .errors import ConfigurationError

if TYPE_CHECKING:
    from .store import OrderBy


def snake_case(name: str) -> str:
    """RecordingSession -> recording_session, HTTPLog -> http_log."""
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


class Entity(pydantic.BaseModel):
    """A typed, versioned document kept by a Store."""

    # JSON has no infinity or NaN, and no database compares them alike: refused.
    model_config = ConfigDict(validate_assignment=True, extra="forbid", allow_inf_nan=False)

    __statekeep__: ClassVar[EntityInfo]
    f: ClassVar[Fields]

    id: str = Field(default_factory=new_id, min_length=1)
    version: int = Field(default=0, ge=0)

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except pydantic.ValidationError as exc:
            raise as_validation_error(exc) from exc

    # Tells pydantic this __init__ only translates errors, so validating stored
    # JSON (model_validate_json) need not go through it.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    def __setattr__(self, name: str, value: Any) -> None:
        try:
            super().__setattr__(name, value)
        except pydantic.ValidationError as exc:
            raise as_validation_error(exc) from exc

    def __init_subclass__(cls, collection: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)

    @classmethod
    def __pydantic_init_subclass__(cls, collection: str | None = None, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if collection is not None and not isinstance(collection, str):
            raise ConfigurationError(f"collection must be a string, not {collection!r}")
        name = snake_case(cls.__name__) if collection is None else collection
        cls.__statekeep__ = EntityInfo(cls, name)
        cls.f = Fields(cls, cls.model_fields)

    # -- Active Record, over the default store -------------------------------
    def save(self) -> Self:
        return active.current_store().save(self)

    def delete(self) -> None:
        active.current_store().delete(self)

    @classmethod
    def get(cls, id: str) -> Self:
        return active.current_store().get(cls, id)

    @classmethod
    def all(cls, *, order_by: OrderBy = None) -> Iterator[Self]:
        return active.current_store().find(cls, order_by=order_by)

    @classmethod
    def find(
        cls,
        *conditions: Condition,
        order_by: OrderBy = None,
        limit: int | None = None,
        offset: int = 0,
        **equals: Any,
    ) -> Iterator[Self]:
        return active.current_store().find(
            cls, *conditions, order_by=order_by, limit=limit, offset=offset, **equals
        )

    @classmethod
    def count(cls, *conditions: Condition, **equals: Any) -> int:
        return active.current_store().count(cls, *conditions, **equals)
