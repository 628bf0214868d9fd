"""statekeep.web.live(store, Todo, ...): a selection of entities, live in a page.

The response is a stream of server-sent events in Datastar's protocol: first
the selection as signals, `{"todos": {"0": {...}, "1": {...}}, "todos_count": 2}`
(a row's fields under its place in the order: `$todos.3.done`), then, for
every committed change that alters the selection, the patch from the rows
the page has to the rows it should have (`{"todos": {"3": {"done": true}}}`),
and the paths of rows that left it. With render, the rows' HTML too, sent
whenever the selection's membership or order changes.

One reader per selection, however many pages follow it (see _feed). When
this process commits a change to the collection (at once: no coalescing
unless `coalesce` seconds are given) it applies the change to the rows it
has where the outcome is certain, and reads the selection again where it is
not (see _rows); it reads it again every `poll` seconds all the same, for
changes other processes commit.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sse_starlette import EventSourceResponse

from ..conditions import Condition
from ..entity import Entity
from ..errors import ConfigurationError, StoreClosedError
from ..events import Lifecycle, Subscription
from ..store import Store
from . import _protocol
from ._feed import Extra, Feed
from ._rows import Rows
from ._signals import Tree, indexed, path_key
from ._stream import response, store_of

Render = Callable[[list[dict[str, Any]]], str]

_feeds: weakref.WeakKeyDictionary[Store, dict[tuple[Any, ...], Feed]] = weakref.WeakKeyDictionary()
_feeds_lock = threading.Lock()
PENDING_MOST = 10_000  # changes held for a reader that fell behind; beyond, it reads again
QUICK_MOST = 500  # changes applied on the event loop at most (a few microseconds each)


def live(
    store: Any,
    cls: type[Entity],
    *,
    where: Condition | Sequence[Condition] | Mapping[str, Any] | None = None,
    order_by: Any = None,
    limit: int | None = None,
    signal: str | None = None,
    render: Render | None = None,
    poll: float = 1.0,
    coalesce: float = 0.0,
) -> EventSourceResponse:
    """An SSE response keeping a page's `signal` (default: the collection's
    name) equal to store.find(cls, where, order_by=, limit=).

    where: a condition (`Todo.f.done == False`), a list of them (ANDed), or
    {field: value} equalities. render(rows) -> HTML, optional: the rows as the
    signals hold them, to draw them (elements with ids are morphed in place).
    Bad arguments raise statekeep's typed errors here, before any response."""
    sync = store_of(store)
    conditions, equals = _where(where)
    sync.find(cls, *conditions, order_by=order_by, limit=limit, **equals)  # checks, no I/O
    name = signal if signal is not None else cls.__statekeep__.spec.name
    if not path_key(name):
        raise ConfigurationError(
            f"statekeep.web.live: signal {name!r} must be letters, digits, '_' or '-' "
            "(no '__'): it names the page's signal"
        )
    for value, what in ((poll, "poll"), (coalesce, "coalesce")):
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not 0 <= value <= 3600
            or (what == "poll" and value < 0.05)
        ):
            raise ConfigurationError(f"statekeep.web.live: {what} must be seconds, not {value!r}")
    if render is not None and not callable(render):
        raise ConfigurationError(f"statekeep.web.live: render must be callable, not {render!r}")
    key = (
        cls,
        repr(conditions),
        repr(sorted(equals.items())),
        repr(order_by),
        limit,
        name,
        poll,
        coalesce,
    )

    def make() -> Feed:
        return _Selection(
            sync, key, cls, conditions, equals, order_by, limit, name, poll, coalesce
        ).feed

    return response(_Frames(lambda: _feed(sync, key, make), name, render))


def _where(where: Any) -> tuple[tuple[Condition, ...], dict[str, Any]]:
    if where is None:
        return (), {}
    if isinstance(where, Condition):
        return (where,), {}
    if isinstance(where, Mapping):
        return (), dict(where)
    if (
        isinstance(where, Sequence)
        and not isinstance(where, str | bytes)
        and all(isinstance(c, Condition) for c in where)
    ):
        return tuple(where), {}
    raise ConfigurationError(
        "statekeep.web.live: where must be a condition (Todo.f.done == False), a list of "
        f"conditions or a dict of field values, not {where!r}"
    )


def _feed(store: Store, key: tuple[Any, ...], make: Callable[[], Feed]) -> Feed:
    """The feed of a selection, shared while pages follow it (see _Selection.stop)."""
    with _feeds_lock:
        feeds = _feeds.setdefault(store, {})
        feed = feeds.get(key)
        if feed is None:
            feed = feeds[key] = make()
        return feed


class _Selection:
    """Reads the selection; pokes its feed when this process commits to the collection."""

    def __init__(
        self,
        store: Store,
        key: tuple[Any, ...],
        cls: type[Entity],
        conditions: tuple[Condition, ...],
        equals: dict[str, Any],
        order_by: Any,
        limit: int | None,
        name: str,
        poll: float,
        coalesce: float,
    ) -> None:
        self._store = weakref.ref(store)  # the cache of feeds must not keep a store alive
        self.key, self.cls, self.name, self.poll = key, cls, name, poll
        self.query = (conditions, equals, order_by, limit)
        self.subscription: Subscription | None = None
        info = cls.__statekeep__
        self.rows = Rows(cls, info.filters(conditions, equals), info.orders(order_by), limit)
        self.applied = 0  # reads answered from the changes alone (tests, benchmarks)
        self._read_at = -float("inf")
        self._pending: list[Lifecycle] = []  # committed changes not applied yet
        self._overflow = False
        self._lock = threading.Lock()
        self.feed = Feed(
            f"live-{name}",
            self.read,
            every=poll,
            gap=coalesce,
            start=self.subscribe,
            stop=self.unsubscribe,
            alive=self.alive,
            quick=self.quick,
        )

    def quick(self) -> Tree | None:
        """The selection from the rows it had and the changes since (on the
        loop: no I/O), or None: read() it (rows unknown, too many changes to
        apply on the loop, a poll due)."""
        with self._lock:
            changes = self._pending
            if (
                self._overflow
                or len(changes) > QUICK_MOST
                or self.rows.rows is None
                or time.monotonic() - self._read_at >= self.poll
            ):
                return None
            if not changes:  # poked for changes an earlier turn took: the rows as they are
                return self._tree()
            self._pending = []
        if not self.rows.apply(changes):
            return None  # the rows are unknown: read() reads them (the changes are in it)
        self.applied += 1
        return self._tree()

    def read(self) -> Tree:
        """The selection, read (the changes pending are in it: each was
        committed before it was dispatched)."""
        with self._lock:
            self._pending, self._overflow = [], False
        self._read_at, since = time.monotonic(), datetime.now(UTC)
        conditions, equals, order_by, limit = self.query
        try:
            found = self.store.find(self.cls, *conditions, order_by=order_by, limit=limit, **equals)
            self.rows.reset([entity.model_dump(mode="json") for entity in found], since)
        except BaseException:
            self.rows.reset(None)  # the changes taken are in no rows: read again next time
            raise
        return self._tree()

    def _tree(self) -> Tree:
        rows = self.rows.rows or []  # signal trees already (Rows keeps them so)
        return {self.name: indexed(rows), f"{self.name}_count": len(rows)}

    @property
    def store(self) -> Store:
        store = self._store()
        if store is None:
            raise StoreClosedError("statekeep.web.live: the store is gone")
        return store

    def alive(self) -> bool:
        store = self._store()
        return store is not None and not store.closed

    def subscribe(self) -> None:
        """The first page came: this process's commits to the collection poke the feed."""
        if self.subscription is None:
            with self._lock:
                self._pending, self._overflow = [], False
            self.rows.reset(None)  # the changes before the subscription were not seen
            self.subscription = self.store.on(self.cls, self._changed)

    def unsubscribe(self) -> None:
        """The last page went (or the store closed): forget the feed, so that a
        selection made per request does not pile up."""
        subscription, self.subscription = self.subscription, None
        store = self._store()
        if subscription is not None and store is not None:
            store.off(subscription)
        with _feeds_lock:
            feeds = _feeds.get(store, {}) if store is not None else {}
            if feeds.get(self.key) is self.feed and (self.feed.ended or not self.feed.followers):
                del feeds[self.key]

    def _changed(self, event: Any) -> None:
        if not isinstance(event, Lifecycle):
            return  # a domain event: its entity's change comes as a Lifecycle event of its own
        with self._lock:
            if len(self._pending) < PENDING_MOST:
                self._pending.append(event)
            else:
                self._overflow = True
        self.feed.poke()


class _Frames:
    """What live()'s response iterates: the selection's feed, found (or made)
    when the page starts reading, so a response never sent keeps nothing."""

    def __init__(self, feed_of: Callable[[], Feed], name: str, render: Render | None) -> None:
        self.feed_of, self.name, self.render = feed_of, name, render

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.feed_of().follow(None if self.render is None else self._drawn())

    def _drawn(self) -> Extra:
        name, render = self.name, self.render
        assert render is not None

        def drawn(sent: Tree | None, state: Tree) -> bytes:
            """The rows' HTML when the selection's membership or order changed."""
            if sent is not None and _ids(sent, name) == _ids(state, name):
                return b""
            rows = state[name]
            return _protocol.fragments(
                render(list(rows.values()) if isinstance(rows, dict) else [])
            )

        return drawn


def _ids(state: Tree, name: str) -> tuple[str, ...]:
    rows = state.get(name)
    return tuple(str(row.get("id")) for row in rows.values()) if isinstance(rows, dict) else ()
