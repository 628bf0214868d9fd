"""The default store behind Active Record calls (`todo.save()`, `Todo.get(id)`)."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

from .errors import ConfigurationError

if TYPE_CHECKING:
    from .store import Store

_default: Store | None = None


class use:  # noqa: N801 - reads as a function: statekeep.use(store)
    """Make `store` the default store; as a context manager, only inside the block.

    statekeep.use(store)          # from now on
    with statekeep.use(store):    # until the block ends, then the previous one
        ...
    """

    def __init__(self, store: Store) -> None:
        global _default
        self._previous = _default
        self.store = store
        _default = store

    def __enter__(self) -> Store:
        return self.store

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        global _default
        _default = self._previous


def current_store() -> Store:
    if _default is None:
        raise ConfigurationError(
            "no default store: call statekeep.use(store) first, e.g. "
            "statekeep.use(statekeep.open('sqlite:///app.db')), "
            "or call the store's methods directly (store.save(entity))"
        )
    return _default
