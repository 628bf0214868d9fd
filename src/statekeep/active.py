"""The default store behind Active Record calls (`todo.save()`, `Todo.get(id)`)."""

from __future__ import annotations

from contextvars import ContextVar, Token
from types import TracebackType
from typing import TYPE_CHECKING

from .errors import ConfigurationError

if TYPE_CHECKING:
    from .store import Store

_default: Store | None = None
_scoped: ContextVar[Store | None] = ContextVar("statekeep_store", default=None)


class use:  # noqa: N801 - reads as a function: statekeep.use(store)
    """Make `store` the default store.

        statekeep.use(store)          # from now on, for every thread
        with statekeep.use(store):    # inside the block only, for this thread or task
            ...

    As a context manager it leaves the process-wide default as it was: the
    store is the default only for code running in the block's context.
    """

    def __init__(self, store: Store) -> None:
        global _default
        if not callable(getattr(store, "transaction", None)):  # the Store, without importing it
            raise ConfigurationError(f"use() takes a store (statekeep.open(url)), not {store!r}")
        self._previous = _default
        self._token: Token[Store | None] | None = None
        self.store = store
        _default = store

    def __enter__(self) -> Store:
        global _default
        _default = self._previous  # the block's store is not for other threads
        self._token = _scoped.set(self.store)
        return self.store

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            _scoped.reset(self._token)
            self._token = None


def current_store() -> Store:
    store = _scoped.get() or _default
    if store is None:
        raise ConfigurationError(
            "no default store: call statekeep.use(store) first, e.g. "
            "statekeep.use(statekeep.open('sqlite:///app.db')), "
            "or call the store's methods directly (store.save(entity))"
        )
    return store
