"""The default store behind Active Record calls (`todo.save()`, `Todo.get(id)`).

statekeep.entity imports this module (its Active Record methods call
`current_store()`), and statekeep.store imports statekeep.entity, so this
module names neither, not even for type checkers: the default store is a
`DefaultStore`, the part of statekeep.Store that Active Record calls.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar, cast

from .conditions import Condition, OrderBy
from .errors import ConfigurationError

M = TypeVar("M")


class DefaultStore(Protocol):
    """What Active Record calls on the default store (a statekeep.Store).

    A Store's methods take entities only: their type variable is bound to
    statekeep.Entity, which this module cannot name, so a Store is not a
    DefaultStore to a type checker and `use` takes any object with a
    `transaction` method (as it checks at run time). Active Record passes its
    own entities and classes, so what `current_store()` returns is used as the
    Store it is."""

    def save(self, entity: M) -> M: ...

    def delete(self, target: object) -> None: ...

    def get(self, cls: type[M], id: str) -> M: ...

    def find(
        self,
        cls: type[M],
        *conditions: Condition,
        order_by: OrderBy = None,
        limit: int | None = None,
        offset: int = 0,
        **equals: Any,
    ) -> Iterator[M]: ...

    def count(self, cls: type[object], *conditions: Condition, **equals: Any) -> int: ...


class _HasTransactions(Protocol):
    def transaction(self) -> object: ...


S = TypeVar("S", bound=_HasTransactions)

_default: DefaultStore | None = None
_scoped: ContextVar[DefaultStore | None] = ContextVar("statekeep_store", default=None)


class use(Generic[S]):  # noqa: N801 - reads as a function: statekeep.use(store)
    """Make `store` the default store.

        statekeep.use(store)          # from now on, for every thread
        with statekeep.use(store):    # inside the block only, for this thread or task
            ...

    As a context manager it leaves the process-wide default as it was: the
    store is the default only for code running in the block's context.
    """

    def __init__(self, store: S) -> None:
        global _default
        if not callable(getattr(store, "transaction", None)):  # the Store, without importing it
            raise ConfigurationError(f"use() takes a store (statekeep.open(url)), not {store!r}")
        self._previous = _default
        self._token: Token[DefaultStore | None] | None = None
        self.store = store
        _default = _as_default(store)

    def __enter__(self) -> S:
        global _default
        _default = self._previous  # the block's store is not for other threads
        self._token = _scoped.set(_as_default(self.store))
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


def _as_default(store: object) -> DefaultStore:
    return cast(DefaultStore, store)  # see DefaultStore: a Store, for Active Record's calls


def current_store() -> DefaultStore:
    store = _scoped.get() or _default
    if store is None:
        raise ConfigurationError(
            "no default store: call statekeep.use(store) first, e.g. "
            "statekeep.use(statekeep.open('sqlite:///app.db')), "
            "or call the store's methods directly (store.save(entity))"
        )
    if getattr(store, "is_async", False):
        raise ConfigurationError(
            "the default store is a statekeep.aio.AsyncStore: use the async methods "
            "(`await todo.asave()`, `await Todo.aget(id)`, `Todo.afind(...)`)"
        )
    return store


def current_async_store() -> Any:
    """The default store for `asave()` and the other async Active Record
    methods: a statekeep.aio.AsyncStore (this module names it not, see above)."""
    store = _scoped.get() or _default
    if store is None or not getattr(store, "is_async", False):
        raise ConfigurationError(
            "the async Active Record methods (asave, aget, afind, acount, adelete) use "
            "a default statekeep.aio.AsyncStore: statekeep.use(await statekeep.aio.open(url))"
            + ("" if store is None else f"; the default store is {store!r}")
        )
    return store
