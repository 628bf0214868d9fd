"""`store.batcher(Todo)`: entities added one at a time, stored a batch at a time.

A statekeep.flow Batcher whose process is the store's `save_many` (one
transaction per batch): each entity's handle gives the entity, saved (its
version moved on), or the error that kept it out. When a batch fails for one
entity's sake (a stale version, data that does not fit), its entities are
saved one by one instead, so that only that one fails; a failure that may
pass (TransientBackendError: a lock, an outage) is tried again, as its Retry
says, for the entities it held back.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any, Protocol, TypeVar

from .entity import Entity
from .errors import (
    ConfigurationError,
    ConflictError,
    StatekeepError,
    TransientBackendError,
    ValidationError,
)
from .flow import AsyncBatcher, Batcher, Handle, Retry

E = TypeVar("E", bound=Entity)


class Store(Protocol):
    """What a batcher needs of a store (statekeep.Store, which makes it)."""

    def save(self, entity: Any) -> Any: ...

    def save_many(self, entities: Iterable[Any]) -> int: ...


def retry_transient() -> Retry:
    """The default retry of a store's batcher: five tries of what may pass."""
    return Retry(5, retry_on=TransientBackendError, name="store batcher")


def batch_saver(store: Store, cls: type[Entity]) -> Any:
    """The process function: save_many, or each on its own when one fails."""
    if not (isinstance(cls, type) and issubclass(cls, Entity)):
        raise ConfigurationError(f"a store's batcher takes an Entity subclass, not {cls!r}")

    def save(entities: list[Entity]) -> list[Any]:
        try:
            store.save_many(entities)
            return list(entities)
        except (ConflictError, ValidationError):
            pass  # one entity's fault: find which
        outcomes: list[Any] = []
        for n, entity in enumerate(entities):
            try:
                outcomes.append(store.save(entity))
            except TransientBackendError as exc:
                # this one and the rest go again later (its retry says when);
                # those saved already stay saved, never saved twice
                return outcomes + [exc] * (len(entities) - n)
            except StatekeepError as exc:
                outcomes.append(exc)
        return outcomes

    return save


def check_entity(cls: type[Entity], entity: Any) -> None:
    if not isinstance(entity, cls):
        raise ValidationError(f"this batcher stores {cls.__name__} entities, not {entity!r}")


def _setup(
    store: Store, cls: type[Entity], options: dict[str, Any], batcher: type[Any]
) -> tuple[Any, dict[str, Any]]:
    if "process" in options:
        raise ConfigurationError("a store's batcher saves its entities: no process=")
    known = set(inspect.signature(batcher.__init__).parameters) - {"self", "process"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigurationError(
            f"unknown batcher option {', '.join(unknown)}; "
            f"the options are {', '.join(sorted(known))}"
        )
    options.setdefault("retry", retry_transient())
    options.setdefault("name", f"{cls.__name__} batcher" if isinstance(cls, type) else None)
    return batch_saver(store, cls), options


class EntityBatcher(Batcher[E, E]):
    """`batcher = store.batcher(Todo, max_size=500, max_delay=0.1)`;
    `handle = batcher.add(todo)`; `handle.result()` is the saved entity."""

    def __init__(self, store: Store, cls: type[E], **options: Any) -> None:
        process, options = _setup(store, cls, options, Batcher)
        super().__init__(process, **options)
        self.cls = cls

    def add(self, item: E, timeout: float | None = None) -> Handle[E]:
        if not isinstance(item, self.cls):  # inline: an add is a hot path
            check_entity(self.cls, item)
        return Batcher.add(self, item, timeout)


class AsyncEntityBatcher(AsyncBatcher[E, E]):
    """The batcher of an AsyncStore: `handle = await batcher.add(todo)`; the
    batches are saved on the batcher's thread, off the event loop."""

    def __init__(self, store: Store, cls: type[E], **options: Any) -> None:
        process, options = _setup(store, cls, options, AsyncBatcher)
        super().__init__(process, **options)
        self.cls = cls

    async def add(self, item: E, timeout: float | None = None) -> Handle[E]:
        check_entity(self.cls, item)
        return await super().add(item, timeout)
