"""AppState: one live, typed, immutable application state.

    state = AppState(Editor())            # or store.state("editor", Editor)
    state.set("doc.title", "Draft")       # validated at that path only
    state.update(lambda d: d.cursor.__setattr__("line", 3))
    with state.batch() as draft:          # one version, however many changes
        draft.doc.title = "Final"
        draft.meters["left"] = -12.0
    state.value.doc.title                 # a frozen snapshot: read it anywhere
    state.subscribe("doc.title", lambda old, new: ...)
    state.undo()

Every change makes a new version; versions share all they did not change.
Updates are applied by priority (see _coordinator); subscriptions are found
by the paths a version changed (see _watch); the last versions are kept for
at(), undo() and redo() (see _history).

Callbacks run in version order in the thread that made the version, with
the state's lock held: an update a callback makes is applied once the
callbacks of the current version have run.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import pydantic

from .._numbers import is_seconds
from ..errors import (
    ConfigurationError,
    StateError,
    StatePathError,
    StoreClosedError,
)
from ..flow import Clock
from ..writebehind import Priority
from ._compression import COLD, Compressible
from ._coordinator import Coordinator
from ._dispatching import Dispatching
from ._draft import Changes, draft_of
from ._durability import Persistable, Persister
from ._history import History, copied_bytes
from ._node import Map
from ._options import StateOptions, check_options
from ._pack import Schema
from ._paths import PathLike, Resolver, read, write
from ._pressure import memory_guard
from ._rebuild import rebuilt
from ._replay import draft_remove, draft_set, run_in
from ._reports import Reported
from ._shape import MapShape
from ._start import initial_value, model_shape
from ._stats import Counters
from ._subscription import Subscription, make_watch
from ._undo import Undoable
from ._updates import Finished, Remove, Run, SetKey, SetMany, SetValue, grouped
from ._watch import Index, Watch

if TYPE_CHECKING:
    from ..events import Bus


log = logging.getLogger("statekeep.state")
M = TypeVar("M", bound=pydantic.BaseModel)

_tuple = tuple.__new__
_CRITICAL = Priority.CRITICAL
_NORMAL = Priority.NORMAL
_LIVE: weakref.WeakSet[AppState[Any]] = weakref.WeakSet()


class AppState(Compressible, Persistable, Undoable, Reported, Dispatching, Generic[M]):
    """A typed application state: frozen snapshots, prioritised updates,
    selector subscriptions, undo and redo. See docs/state.md."""

    def __init__(self, initial: M | type[M], **options: Any) -> None:
        model, value = initial_value(initial)
        self.options: StateOptions = check_options(options)
        self._model: type[M] = model  # type: ignore[assignment]  # the model of initial
        self._shape = model_shape(model)
        self._resolve = Resolver(self._shape)
        self._paths = self._resolve.cache
        # field name -> (index, key type, value type) of the dict fields of scalars
        self._dict_fields: dict[str, tuple[int, type, type]] = {
            name: (index, shape.key.fast, shape.value.fast)
            for name, (index, shape) in self._shape.fields.items()
            if isinstance(shape, MapShape)
            and shape.key.fast
            and shape.value.fast
            and not shape.checked
        }
        self._root: Any = self._shape.adopt(value)
        self._version = 0
        self._lock = threading.RLock()
        self._condition = threading.Condition(self._lock)
        self._clock: Clock = self.options.clock
        self._history = History(self.options.history, self.options.history_bytes)
        self._history.entries.append((0, self._root, (), 0, self._root))
        self._index = Index()
        self._watches: dict[Watch, None] = {}
        self._dispatching = False  # callbacks or update functions run: their updates wait
        self._draining = False  # _run_later is applying what they made
        self._direct = 0  # CRITICAL sets on the hot path (counted as writes and updates)
        self._first_version = 0  # versions made since: version - this
        self._later: list[Any] = []  # updates made by callbacks, applied after them
        self._batch: tuple[threading.Thread, Any] | None = None  # (owner, draft)
        self._closed = False
        self._persister: Persister | None = None  # set by store.state()
        self._bus: Bus | None = None  # the store's, for MemoryPressure events
        self._cold: tuple[bytes, int] | None = None  # (zstd bytes, level) while compressed
        self._schema: Schema | None = None  # for packing and unpacking (made once)
        self.counters = Counters()
        # name -> a function giving a line of stats() (the persister, memory pressure)
        self.reports: dict[str, Callable[[], Any]] = {}
        # told of each version (the lock held) before its subscription callbacks run
        self.on_version: list[Callable[[int, Any, tuple[tuple[Any, ...], ...]], None]] = []
        self._coordinator = Coordinator(
            self._condition,
            self._clock,
            self._apply,
            frame=self.options.frame,
            max_frame=self.options.max_frame,
            idle=self.options.idle,
            low_max_age=self.options.low_max_age,
            name=self.options.name,
        )
        self._coordinator.direct = _direct_sets(weakref.ref(self))
        _LIVE.add(self)
        memory_guard().watch(self)

    # -- reading -------------------------------------------------------------------
    @property
    def value(self) -> Any:
        """The current snapshot: frozen, shared, free to keep."""
        self.counters.reads += 1
        root = self._root
        return self._warm() if root is COLD else root

    @property
    def version(self) -> int:
        return self._version

    @property
    def model_class(self) -> type[M]:
        return self._model

    def get(self, path: PathLike) -> Any:
        """The value at path in the current snapshot (StatePathError if none)."""
        resolved = self._resolve(path)
        return read(self.value, resolved)  # (value counts the read)

    def model(self) -> M:
        """The current value as a new instance of the state's model: each
        model it holds an instance of its own class, built from the values
        as they are (validated when they were set; validators do not run
        again)."""
        model: M = rebuilt(self.value, self._shape)
        return model

    def at(self, version: int) -> Any:
        """The snapshot of a version still kept (see `versions()`)."""
        if not isinstance(version, int) or isinstance(version, bool):
            raise StateError(f"a version is a whole number, not {version!r}")
        with self._lock:  # (compress() in another thread would empty the history)
            self._warm()
            entry = self._history.at(version)
            if entry is None:
                kept = self._history.versions()
                raise StateError(
                    f"version {version} is not kept: versions {kept[0]}..{kept[-1]} are"
                )
            return entry[1]

    def versions(self) -> list[int]:
        return self._history.versions()

    # -- changing --------------------------------------------------------------------
    def set(
        self,
        path: PathLike,
        value: Any,
        *,
        priority: Priority = Priority.NORMAL,
        deadline: float | None = None,
    ) -> None:
        """Sets the value at path (validated against the shape there)."""
        if type(path) is tuple and len(path) == 2:
            spec = self._dict_fields.get(path[0])  # a key of a dict field: the hottest case
            if spec is not None and type(path[1]) is spec[1] and type(value) is spec[2]:
                if priority is _CRITICAL:
                    if deadline is None and self._set_key_now(spec[0], path, value):
                        return
                elif priority is _NORMAL:  # waits for its frame: no path to resolve
                    self._submit(SetKey(spec[0], path[0], path[1], value), _NORMAL, deadline)
                    return
        try:
            resolved = self._paths.get(path)
        except TypeError:  # a list, or a tuple holding one: the resolver says what is wrong
            resolved = None
        if resolved is None:
            resolved = self._resolve(path)
        shape = resolved.shape
        if type(value) is not shape.fast:
            value = shape.freeze(value, resolved.text)
        if priority is _CRITICAL and deadline is None and not resolved.negative:
            lock = self._lock  # the hot path, spelt out
            lock.acquire()  # (a `with` costs twice as much)
            try:
                if not (
                    self._batch
                    or self._dispatching
                    or self._coordinator.normal
                    or self._closed
                    or self._cold
                ):  # nothing waits, nothing to merge with
                    old = self._root
                    self._publish(old, write(old, resolved, value), resolved.changes)
                    return
            finally:
                lock.release()
        self._submit(SetValue(resolved, value), priority, deadline)

    def _set_key_now(self, index: int, path: tuple[Any, Any], value: Any) -> bool:
        """A CRITICAL set of a key of a dict field (key and value of its exact
        types): one version now, if nothing waits; False if it must go the
        long way."""
        lock = self._lock
        lock.acquire()  # (a `with` costs twice as much)
        try:
            coordinator = self._coordinator
            if (
                self._batch
                or self._dispatching
                or coordinator.normal
                or self._closed
                or self._cold is not None
            ):
                return False
            old = self._root
            mapping = old[index]
            if type(mapping) is not Map:
                return False
            root = _tuple(type(old), (*old[:index], mapping.set(path[1], value), *old[index + 1 :]))
            history = self._history
            if (
                not (self._direct + 1) & 63  # (one in 64 is timed)
                or history.limit_bytes is not None
                or self.on_version
                or coordinator.low
                or self._later
            ):
                self._publish(old, root, (path,))
                return True
            # _publish's common case, spelt out once more: the hottest path of all
            self._direct += 1
            version = self._version + 1
            self._root, self._version = root, version
            entry = (version, root, (path,), 0, old)
            history.entries.append(entry)
            history.undo.append(entry)
            if history.redo:
                history.redo.clear()
            if self._watches:
                found = self._index.memo.get(path)
                if found is None or found:
                    self._dispatch(old, root, entry[2])
                    if self._later:
                        self._run_later()
            return True
        finally:
            lock.release()

    def _publish(self, old: Any, root: Any, changes: tuple[tuple[Any, ...], ...]) -> None:
        """A CRITICAL set's version (lock held): _commit's common case, spelt
        out, since a set is the hottest path; one in 64 is timed for stats()."""
        self._direct += 1
        started = time.perf_counter() if not self._direct & 63 else 0.0
        history = self._history
        if history.limit_bytes is not None or self.on_version:
            self._commit(root, changes, True)
        else:
            version = self._version + 1
            self._root, self._version = root, version
            entry = (version, root, changes, 0, old)
            history.entries.append(entry)
            history.undo.append(entry)
            if history.redo:
                history.redo.clear()
            if self._watches:
                found = self._index.memo.get(changes[0])
                if found is None or found:
                    self._dispatch(old, root, changes)
        coordinator = self._coordinator
        if coordinator.low:  # activity LOW updates wait to end
            coordinator.last_active = self._clock.now()
        if started:
            coordinator.timed(time.perf_counter() - started)
        if self._later:
            self._run_later()

    def delete(
        self, path: PathLike, *, priority: Priority = Priority.NORMAL, deadline: float | None = None
    ) -> None:
        """Removes a dict key or a list item."""
        resolved = self._resolve(path)
        if not resolved.names:
            raise StatePathError("the state itself cannot be deleted", "")
        self._submit(Remove(resolved), priority, deadline)

    def update(
        self,
        fn: Callable[[Any], Any],
        *,
        priority: Priority = Priority.NORMAL,
        deadline: float | None = None,
    ) -> None:
        """fn(draft) changes a draft of the state like a normal object (or
        returns a whole new value); all its changes become one version."""
        if not callable(fn):
            raise ConfigurationError(f"update() takes a function of a draft, not {fn!r}")
        self._submit(Run(fn, self._shape), priority, deadline)

    @contextmanager
    def batch(self) -> Iterator[Any]:
        """`with state.batch() as draft:` changes become one version at the
        end of the block, or none if it raises. Other threads' updates wait
        for the block; this thread's set() and update() go into the draft."""
        with self._lock:
            self._check_open()
            self._warm()
            if self._batch is not None:  # a batch inside a batch: the same draft
                yield self._batch[1]
                return
            self._not_in_callback("batch()")
            self._coordinator.apply_normal()  # what waits comes first, in its own version
            self._run_later()
            changes = Changes()
            draft = draft_of(self._root, self._shape, (), changes)
            self._batch = (threading.current_thread(), draft)
            try:
                yield draft
            except BaseException:
                self._batch = None
                changes.close()
                raise
            self._batch = None
            self.counters.writes += 1
            self._coordinator.critical(Finished(draft, changes))
            self._run_later()

    def flush(self) -> int:
        """Applies every update still waiting; returns the version. In a
        callback, what waits is applied after this version's callbacks."""
        with self._lock:
            self._not_in_batch("flush()")
            if not self._dispatching:
                self._coordinator.flush()
                self._run_later()
            return self._version

    def _not_in_batch(self, what: str) -> None:
        """Raises inside this thread's batch(): a version made now would be
        overwritten by the batch's own at the end of its block."""
        batch = self._batch
        if batch is not None and batch[0] is threading.current_thread():
            raise StateError(
                f"{what} inside batch(): the batch makes one version at the end of its "
                "block; call it after the block"
            )

    def _not_in_callback(self, what: str) -> None:
        """Raises in a subscription callback: a version made now would come
        between this version's callbacks."""
        self._not_in_batch(what)
        if self._dispatching:
            raise StateError(
                f"{what} in a subscription callback or an update function: use set() or "
                "update(), applied after this version's callbacks"
            )

    # -- subscriptions -----------------------------------------------------------------
    def subscribe(
        self, target: PathLike | Callable[[Any], Any], callback: Callable[[Any, Any], Any]
    ) -> Subscription:
        """callback(old, new) once per version in which the selected value
        changed: target is a path (`"doc.title"`; `"meters.*"` gives dicts of
        the entries that changed) or a function of a snapshot."""
        watch = make_watch(target, callback, self._resolve, self.counters)
        with self._lock:
            self._check_open()
            watch.start(self._warm(), self._index)
            self._watches[watch] = None
        return Subscription(self, watch)

    def unsubscribe(self, subscription: Subscription) -> bool:
        if not isinstance(subscription, Subscription):
            raise ConfigurationError(
                f"unsubscribe() takes what subscribe() returned, not {subscription!r}"
            )
        with self._lock:
            watch = subscription.watch
            if self._watches.pop(watch, 0) == 0:
                return False
            watch.stop(self._index)
            return True

    # -- the machinery -------------------------------------------------------------------
    def _submit(self, update: Any, priority: Priority, deadline: float | None) -> None:
        if type(priority) is not Priority:
            priority = _a_priority(priority)
        if deadline is not None and not is_seconds(deadline):
            raise ConfigurationError(f"deadline must be seconds >= 0, not {deadline!r}")
        lock = self._lock
        lock.acquire()  # (a `with` costs twice as much)
        try:
            if self._closed:
                self._check_open()
            if self._cold is not None:
                self._warm()
            self.counters.writes += 1
            batch = self._batch
            if batch is not None and batch[0] is threading.current_thread():
                _into_draft(update, batch[1])
                return
            if self._dispatching:  # made by a callback: after the callbacks of this version
                self._later.append(update)
                return
            if priority is _NORMAL:
                self._coordinator.normal_update(update, deadline)
            elif priority is _CRITICAL:
                self._coordinator.critical(update)
            else:
                self._coordinator.low_update(update, deadline)
            if self._later:
                self._run_later()
        finally:
            lock.release()

    def _apply(self, updates: list[Any], caller: bool = False) -> None:
        """Applies updates in order as one version (with the lock held).
        caller: the last update is the caller's own, so its error is raised
        (after the others are applied); an error of an update that waited is
        logged and that update dropped."""
        started = time.perf_counter()
        root = self._root
        changed: dict[tuple[Any, ...], None] = {}
        if len(updates) > 1:
            updates = grouped(updates)
        last = len(updates) - 1
        applied = 0  # updates applied (a SetMany is its sets), failed ones not counted
        self._dispatching = True  # an update function's own set()s wait for its version
        try:
            for i, update in enumerate(updates):
                made = len(self._later)
                try:
                    root = update.apply(root, changed)
                except Exception as exc:
                    del self._later[made:]  # what a failed update function made fails with it
                    self.counters.updates_failed += 1
                    if caller and i == last:
                        self._dispatching = False
                        self.counters.updates_applied += applied
                        if root is not self._root:
                            self._commit(root, tuple(changed), True)
                        raise
                    log.error(
                        "state %s: an update failed and was dropped: %r",
                        self.options.name,
                        exc,
                        extra={
                            "statekeep": {
                                "event": "state.update_failed",
                                "state": self.options.name,
                                "update": type(update).__name__,
                                "error_type": type(exc).__name__,
                                "error": str(exc),
                            }
                        },
                    )
                    continue
                applied += len(update.sets) if type(update) is SetMany else 1
        finally:
            self._dispatching = False
        self.counters.updates_applied += applied
        if root is not self._root:
            self._commit(root, tuple(changed), True)
        self._coordinator.applied(time.perf_counter() - started)
        if self._later and not self._dispatching:  # made by this version's callbacks
            self._run_later()

    def _commit(self, root: Any, changes: tuple[tuple[Any, ...], ...], undoable: bool) -> None:
        old, version = self._root, self._version + 1
        self._root, self._version = root, version
        history = self._history
        if history.limit_bytes is None:
            entry = (version, root, changes, 0, old)
            history.entries.append(entry)
        else:
            entry = (version, root, changes, copied_bytes(root, changes), old)
            history.add_bounded(entry)
        if undoable:
            history.undo.append(entry)
            if history.redo:
                history.redo.clear()
            if history.limit_bytes is not None:  # never back past the oldest version kept
                while len(history.undo) >= len(history.entries):
                    history.undo.popleft()
        # the listeners (the persister's) before the callbacks: a callback may snapshot
        # this version (close(), wait_durable()), which must then hold what it changed
        if self.on_version:
            for listener in self.on_version:
                listener(version, root, changes)
        if self._watches:
            found = self._index.memo.get(changes[0]) if len(changes) == 1 else None
            if found is None or found:
                self._dispatch(old, root, changes)

    def _run_later(self) -> None:
        """Applies the updates callbacks made, each lot as one version; in a
        loop, not by recursion: a chain of callbacks, each making the next
        update, may run for thousands of versions."""
        if self._draining:
            return  # an outer _run_later's loop takes them
        self._draining = True
        try:
            while self._later and not self._dispatching:
                updates, self._later = self._later, []
                self._apply(updates)
        finally:
            self._draining = False

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"the state {self.options.name!r} is closed")

    # -- reports and life cycle -----------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Applies what waits, stops the timer; updates are then refused."""
        with self._lock:
            if self._closed:
                return
            self._coordinator.flush()
            self._run_later()
            self._closed = True
            thread = self._coordinator.close()
        if thread is not None and not self._lock._is_owned():
            thread.join(5.0)  # (not from a callback, which holds the lock the timer waits for)
        if self._persister is not None:
            self._persister.close()

    def __enter__(self) -> AppState[M]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"<AppState {self.options.name!r} of {self._model.__name__}, version {self._version}>"
        )

    def _after_fork(self) -> None:
        """In a forked child: fresh locks (another thread may have held them)
        and a timer of its own. A persisted state stays the parent's to
        write: the child's copy is closed (store.state() in the child opens
        it again, once no other process has it open)."""
        self._lock = threading.RLock()
        self._condition = threading.Condition(self._lock)
        self._dispatching = self._draining = False
        self._batch = None
        self._coordinator.after_fork(self._condition)
        if self._persister is not None:
            self._persister.after_fork()
            self._closed = True
            with self._lock:
                self._coordinator.close()


def _a_priority(priority: Any) -> Priority:
    if isinstance(priority, int) and not isinstance(priority, bool):
        try:
            return Priority(priority)
        except ValueError:
            pass
    raise ConfigurationError(
        f"priority must be a statekeep.Priority (CRITICAL, NORMAL, LOW), not {priority!r}"
    )


def _into_draft(update: Any, draft: Any) -> None:
    """An update made inside this thread's batch() goes into its draft."""
    if isinstance(update, Run):
        run_in(draft, update.fn, update.shape)
    elif isinstance(update, Remove):
        draft_remove(draft, update.path.names)
    else:
        draft_set(draft, update.path.names, update.value)


def _direct_sets(state: weakref.ref[AppState[Any]]) -> Callable[[], int]:
    """How many CRITICAL sets the state applied on its hot path (by a weak
    reference: the state's coordinator must not keep it alive)."""

    def direct() -> int:
        found = state()
        return found._direct if found is not None else 0

    return direct


def _after_fork_in_child() -> None:
    for state in list(_LIVE):
        state._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
