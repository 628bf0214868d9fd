"""A state kept in a Store: restored on open, persisted through write-behind.

`store.state("editor", Editor)` restores the last durable version (a full
snapshot and the unbroken chain of deltas after it) and then persists the
state from its own thread: every `every` seconds (0.1 by default), if the
state changed, one snapshot of its newest version (the versions in between
coalesce: the last one wins). A snapshot is a delta (the values at the
paths changed since the snapshot before) while deltas stay small; a full
snapshot once they add up to half a full one, after `full_every` deltas, or
when the whole state was replaced. Once a full snapshot is stored, the
deltas before it are deleted.

Each snapshot is enqueued like any entity (`priority=`, NORMAL by default),
so it is durable once the write-behind journal has it, and survives a
SIGKILL; `durable_version` says which version a crash now would restore at
least, and `wait_durable()` waits for the newest.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Protocol

from ..backends import Claim, FileClaims
from ..errors import (
    ConfigurationError,
    NotFoundError,
    StateError,
    StatekeepError,
    ValidationError,
)
from ..writebehind import Priority, Receipt
from ._appstate import AppState
from ._codec import Codec
from ._options import check_options
from ._pack import loose
from ._paths import remove, write
from ._snapshot import StateSnapshot, delta_id, full_id
from ._watch import ABSENT, select_absent

log = logging.getLogger("statekeep.state")


class StoreLike(Protocol):
    """What a persisted state needs of its Store."""

    def enqueue(self, entity: Any, priority: Priority = ...) -> Receipt: ...
    def enqueue_delete(
        self, target: Any, id: str | None = ..., *, priority: Priority = ...
    ) -> Receipt: ...
    def get(self, cls: Any, id: str) -> Any: ...
    def find(self, cls: Any, *conditions: Any, **equals: Any) -> Any: ...
    def flush(self, timeout: float | None = None) -> bool: ...
    @property
    def bus(self) -> Any: ...
    @property
    def writebehind(self) -> Any: ...
    @property
    def backend(self) -> Any: ...


class Restored:
    """What restore() found: the full snapshot's version, and every delta row
    of the state (those of older full snapshots are garbage)."""

    def __init__(self, base: int, deltas: list[StateSnapshot], exact: bool) -> None:
        self.base = base
        self.deltas = deltas
        self.exact = exact  # stored by this schema (else read leniently: the schema changed)


def restore(store: StoreLike, state: AppState[Any]) -> Restored | None:
    """Brings state to its last stored version (None: nothing stored).

    Stored by the same schema, the full snapshot and its deltas are frozen
    trees, applied as they are, and the result's types are checked against
    the shape (not validated again: a check per value). Stored by a schema that has changed since,
    they are plain data: the deltas are applied to the full snapshot's data
    (a field since removed or renamed is still a key there), and the result
    is validated once, as a stored record is."""
    name = state.options.name
    try:
        full = store.get(StateSnapshot, full_id(name))
    except NotFoundError:
        return None
    if full.kind != "full" or full.state != name:
        raise ValidationError(f"the stored snapshot {full.id!r} is not the state {name!r}'s")
    model = state.model_class.__name__
    try:
        value, exact = state.decoded(full.data)
    except ValidationError as exc:
        raise ValidationError(f"the stored state {name!r}: {exc}") from exc
    if exact and type(value) is not state._shape.cls:
        raise ValidationError(f"the stored state {name!r} is not a {model}: {value!r:.100}")
    root = value if exact else loose(value)
    found = [d for d in store.find(StateSnapshot, state=name) if d.kind == "delta"]
    seq = full.seq
    for delta in sorted((d for d in found if d.base == full.seq), key=lambda d: d.seq):
        if delta.seq <= seq:
            continue
        if delta.prev != seq:
            break  # a gap: the versions after it cannot be rebuilt
        try:
            ops, same = state.decoded(delta.data)
            root = _replayed(root, ops, state) if exact and same else _loosely(root, ops)
        except (StatekeepError, ValueError, TypeError, IndexError, KeyError) as exc:
            raise ValidationError(
                f"the stored state {name!r} (delta {delta.id}) does not fit {model}: {exc}"
            ) from exc
        seq = delta.seq
    try:
        if exact:  # its types are checked, not trusted: a row may have been edited
            state._shape.verify(root, "")
        else:
            root = state._shape.restore(root, "")
    except ValidationError as exc:
        raise ValidationError(f"the stored state {name!r} does not fit {model}: {exc}") from exc
    state._restart(root, seq)
    return Restored(full.seq, found, exact)


def _replayed(root: Any, ops: Any, state: AppState[Any]) -> Any:
    for op in ops:
        path = state._resolve(tuple(op[0]))
        if len(op) == 1:  # removed (a key added and removed since the snapshot before: absent)
            if select_absent(root, path.names) is not ABSENT:
                root = remove(root, path)
        else:
            root = write(root, path, op[1])
    return root


def _loosely(root: Any, ops: Any) -> Any:
    """A delta applied to plain data (dicts, lists) by its paths' names."""
    for op in ops:
        names = tuple(op[0])
        if not names:
            root = loose(op[1])
            continue
        parent = root
        for name in names[:-1]:
            parent = parent[name]
        if len(op) == 1:
            if isinstance(parent, dict):
                parent.pop(names[-1], None)
            elif -len(parent) <= names[-1] < len(parent):
                del parent[names[-1]]
        elif isinstance(parent, list) and names[-1] == len(parent):
            parent.append(loose(op[1]))
        else:
            parent[names[-1]] = loose(op[1])
    return root


_CLOSE_WAIT = 5.0  # seconds close() waits for its snapshots to be stored (they are durable)


class Persister:
    def __init__(
        self,
        store: StoreLike,
        state: AppState[Any],
        *,
        every: float,
        full_every: int,
        priority: Priority,
        level: int | None,
        restored: Restored | None,
        claim: Any = None,
    ) -> None:
        self._claim = claim  # this process's claim to write the state's rows
        self.store = store
        self.state = state
        self.name = state.options.name
        self.every = every
        self.full_every = full_every
        self.priority = priority
        self.codec = Codec(level=level or 3, fixed=level is not None)
        self._changed: dict[tuple[Any, ...], None] = {}
        self._whole = False  # the root was replaced since the last snapshot
        # Locks, taken in this order only: the state's, then _taking (one
        # snapshot at a time), then _lock (the bookkeeping below). No one
        # waits for the state's lock holding either, so a callback (which
        # runs holding the state's lock) may read durable_version, call
        # wait_durable() or close the state.
        self._taking = threading.Lock()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._resend = False  # a snapshot was lost (not enqueued, or shed): the next is full
        self.version = state.version  # the version of the last snapshot taken
        self.base = state.version if restored is None else restored.base  # of the last full one
        self._deltas = 0  # deltas since the last full snapshot
        self._delta_bytes = 0
        self._full_bytes = 0
        self._written: list[
            tuple[int, str, Receipt]
        ] = []  # (version, kind, receipt) not yet durable
        self._durable = -1 if restored is None else state.version
        # (base, id) of deltas, deleted once a newer full snapshot is stored
        self._old_deltas = [] if restored is None else [(d.base, d.id) for d in restored.deltas]
        self._unstored: list[tuple[int, Receipt]] = []  # full snapshots durable, not yet stored
        self._broken = False  # a snapshot failed: no delta counts as durable until a full one
        self._last_snapshot = time.monotonic()
        self.fulls = 0
        self.deltas = 0
        if restored is None or restored.deltas or not restored.exact:
            # nothing stored yet, or deltas: the first snapshot is a full one (deltas after
            # a gap, or of older full snapshots, must never chain to the new ones; nor
            # deltas of this schema to a full one of another)
            self._whole = True
        if restored is not None:
            self._drop_deltas_before(restored.base)  # those of older full snapshots
        state.on_version.append(self._note)
        state.reports["persisted"] = self.report
        self._thread: threading.Thread | None = threading.Thread(
            target=self._run, name=f"statekeep-state-persist-{self.name}", daemon=True
        )
        self._thread.start()

    def _note(self, version: int, root: Any, changes: tuple[tuple[Any, ...], ...]) -> None:
        """A new version (the state's lock held): remember what changed."""
        if () in changes:
            self._whole = True
        else:
            self._changed.update(dict.fromkeys(changes))

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.snapshot(self._stop)
                with self._lock:
                    self._settle()
            except StatekeepError as exc:  # a full queue, a closed store: tried again next time
                log.warning(
                    "state %s: a snapshot was not taken: %s",
                    self.name,
                    exc,
                    extra={
                        "statekeep": {
                            "event": "state.snapshot_not_taken",
                            "state": self.name,
                            "error_type": type(exc).__name__,
                            "error": str(exc),
                        }
                    },
                )
            except Exception as exc:  # the persist thread must live on: logged with its traceback
                log.exception(
                    "state %s: a snapshot failed",
                    self.name,
                    extra={
                        "statekeep": {
                            "event": "state.snapshot_failed",
                            "state": self.name,
                            "error_type": type(exc).__name__,
                            "error": str(exc),
                        }
                    },
                )

    def snapshot(self, stop: threading.Event | None = None) -> Receipt | None:
        """Enqueues a snapshot of the newest version, if it changed (None if
        not, or if stop was set while waiting for the state)."""
        state = self.state
        lock = state._lock
        if stop is None:
            lock.acquire()
        else:  # the persist thread: gives way to a close() that holds the state
            while not lock.acquire(timeout=0.05):
                if stop.is_set():
                    return None
        try:
            if state._version == self.version and not (self._whole or self._resend):
                return None  # nothing new (and a compressed state stays compressed)
            self._taking.acquire()
            root, version = state._warm(), state._version
            changed, self._changed = self._changed, {}
            whole, self._whole = self._whole, False
        finally:
            lock.release()
        try:
            return self._take(root, version, changed, whole)
        except BaseException:
            self._resend = True  # what changed is not in any snapshot: the next is full
            raise
        finally:
            self._taking.release()

    def _take(
        self, root: Any, version: int, changed: dict[tuple[Any, ...], None], whole: bool
    ) -> Receipt | None:
        """A snapshot of root (_taking held)."""
        with self._lock:
            whole = whole or self._resend
            self._resend = False
        if version == self.version and not whole:
            return None
        now = time.monotonic()
        interval, self._last_snapshot = now - self._last_snapshot, now
        full = whole or self._deltas >= self.full_every or self._delta_bytes * 2 > self._full_bytes
        data = self.codec.encode(root if full else _ops(root, changed), interval, self.state.schema)
        entity = StateSnapshot(
            id=full_id(self.name) if full else delta_id(self.name, version),
            state=self.name,
            kind="full" if full else "delta",
            seq=version,
            base=version if full else self.base,
            prev=version if full else self.version,
            level=self.codec.level,
            data=data,
        )
        receipt = self.store.enqueue(entity, self.priority)
        with self._lock:
            if full:
                self.fulls += 1
                self.base, self._deltas, self._delta_bytes = version, 0, 0
                self._full_bytes = len(data)
            else:
                self.deltas += 1
                self._deltas += 1
                self._delta_bytes += len(data)
                self._old_deltas.append((self.base, entity.id))
            self.version = version
            self._written.append((version, entity.kind, receipt))
        return receipt

    def _settle(self) -> None:
        """Moves durable_version on (lock held); deletes the deltas a stored
        full snapshot made useless."""
        written = self._written
        while written:
            version, kind, receipt = written[0]
            if receipt.error is not None:  # shed or dead-lettered: the next snapshot is full
                self._resend = self._broken = True
                written.pop(0)
                continue
            if not receipt.durable:
                break
            written.pop(0)
            if kind == "full":
                self._broken = False
                self._unstored.append((version, receipt))
            if not self._broken:
                self._durable = version
        still = []
        for version, receipt in self._unstored:
            if receipt.stored:
                self._drop_deltas_before(version)
            elif receipt.error is None:
                still.append((version, receipt))
        self._unstored = still

    def _drop_deltas_before(self, base: int) -> None:
        keep = []
        for delta_base, key in self._old_deltas:
            if delta_base < base:
                self.store.enqueue_delete(StateSnapshot, key, priority=Priority.LOW)
            else:
                keep.append((delta_base, key))
        self._old_deltas = keep

    @property
    def durable_version(self) -> int:
        """The newest version a crash now would restore (or a newer one); -1: none yet."""
        with self._lock:
            self._settle()
            return self._durable

    def wait_durable(self, timeout: float | None = None) -> int:
        """Applies the updates waiting, snapshots the newest version and waits
        until it is durable; returns the version now durable."""
        self.state.flush()
        self.snapshot()
        with self._lock:
            pending = [r for _, _, r in self._written]
        deadline = None if timeout is None else time.monotonic() + timeout
        for receipt in pending:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            receipt.wait_durable(left)
        return self.durable_version

    def hardest(self) -> None:
        """Snapshots at the hardest compression from now on (memory pressure)."""
        self.codec.hardest()

    def report(self) -> str:
        codec = self.codec
        return (
            f"{self.fulls} full + {self.deltas} delta snapshots, zstd level {codec.level}, "
            f"{codec.stored_bytes:,} of {codec.raw_bytes:,} bytes ({codec.ratio:.1%}), "
            f"{codec.mb_per_second:,.0f} MB/s; durable up to version {self._durable}"
        )

    def close(self) -> None:
        """A last snapshot of the newest version, then the thread stops."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()  # it gives way within 50 ms if this thread holds the state
        try:
            self.snapshot()
            with self._lock:
                receipts = [r for _, _, r in self._written]
                receipts += [r for _, r in self._unstored]
            # stored before the name is let go: the next to open it (another Store on this
            # database) reads the newest version, and the deltas before a full one go
            deadline = time.monotonic() + _CLOSE_WAIT
            for receipt in receipts:
                receipt.wait_stored(max(0.0, deadline - time.monotonic()))
            with self._lock:
                self._settle()
        except StatekeepError as exc:
            log.warning(
                "state %s: the last snapshot was not taken or stored: %s",
                self.name,
                exc,
                extra={
                    "statekeep": {
                        "event": "state.last_snapshot_failed",
                        "state": self.name,
                        "error_type": type(exc).__name__,
                        "error": str(exc),
                    }
                },
            )
        finally:
            self._release()

    def _release(self) -> None:
        claim, self._claim = self._claim, None
        if claim is not None:
            claim.release()

    def after_fork(self) -> None:
        """In a forked child: the parent goes on persisting the state; this
        copy of it persists nothing (its state is closed)."""
        self._taking = threading.Lock()
        self._lock = threading.Lock()
        self._stop.set()
        self._thread = None
        self._claim = None  # the parent's (the claims module lets go of the child's copy)


def _ops(root: Any, changed: dict[tuple[Any, ...], None]) -> list[tuple[Any, ...]]:
    """The changes of a delta: [path, value] per path (none under another), [path] if gone."""
    ops = []
    paths = sorted(changed, key=len)
    taken: set[tuple[Any, ...]] = set()
    for path in paths:
        if any(path[:i] in taken for i in range(len(path))):
            continue
        taken.add(path)
        value = select_absent(root, path)
        ops.append((path,) if value is ABSENT else (path, value))
    return ops


PERSIST_OPTIONS = ("persist_every", "full_every", "priority", "level")


def check_open_options(options: dict[str, Any]) -> None:
    """Checks store.state()'s options as open_state would (for a name already open)."""
    if "name" in options:
        raise ConfigurationError("store.state(name, Model) takes the name once, not name=")
    check_persist_options(
        options.get("persist_every", 0.1), options.get("full_every", 100), options.get("level")
    )
    priority = options.get("priority", Priority.NORMAL)
    if not isinstance(priority, Priority):
        raise ConfigurationError(f"priority must be a statekeep.Priority, not {priority!r}")
    check_options({k: v for k, v in options.items() if k not in PERSIST_OPTIONS})


def check_persist_options(every: Any, full_every: Any, level: Any) -> None:
    if not isinstance(every, int | float) or isinstance(every, bool) or not 0 < every <= 3600:
        raise ConfigurationError(f"persist_every must be seconds in (0, 3600], not {every!r}")
    if not isinstance(full_every, int) or isinstance(full_every, bool) or full_every < 0:
        raise ConfigurationError(f"full_every must be a whole number >= 0, not {full_every!r}")
    if level is not None and (
        not isinstance(level, int) or isinstance(level, bool) or not 1 <= level <= 22
    ):
        raise ConfigurationError(f"level must be None or a zstd level 1..22, not {level!r}")


# how long store.state() waits for its name: a holder that just died (SIGKILL) lets go
# when the database notices (PostgreSQL: its session ends) or, forked, when the child's
# after-fork hooks run (measured: up to 70 ms)
_CLAIM_WAIT = 1.0


def _claimed(store: StoreLike, name: str) -> Any:
    """The claim of name, waited for up to _CLAIM_WAIT; None if held.

    Two claims: the backend's (a PostgreSQL session's advisory lock) and,
    for a backend whose claims are not already this host's own (an flock
    beside a SQLite file is), an flock on this host. A PostgreSQL session lost in an
    outage loses its lock while its process lives on, acknowledging
    versions from its journal: the host's flock still keeps a second
    writer on this host out."""
    backend = store.backend
    on_host = backend.location is None or getattr(backend, "claims_on_host", False)
    local = None if on_host else FileClaims(f"{backend.location}.states")
    end = time.monotonic() + _CLAIM_WAIT
    while True:
        mine = local.claim(name) if local is not None else None
        if mine is not None or local is None:
            claim = backend.claim(name)
            if claim is not None:
                return claim if mine is None else _Claims(mine, claim)
            if mine is not None:
                mine.release()
        if time.monotonic() >= end:
            return None
        time.sleep(0.02)


class _Claims:
    """Claims held together, released together."""

    def __init__(self, *claims: Claim) -> None:
        self._claims = claims

    def held(self) -> bool:
        return all(claim.held() for claim in self._claims)

    def release(self) -> None:
        for claim in reversed(self._claims):
            claim.release()


def open_state(
    store: StoreLike,
    name: str,
    model: Any,
    *,
    persist_every: float = 0.1,
    full_every: int = 100,
    priority: Priority = Priority.NORMAL,
    level: int | None = None,
    **options: Any,
) -> AppState[Any]:
    """An AppState named name, restored from store and persisted there."""
    check_open_options(
        {
            "persist_every": persist_every,
            "full_every": full_every,
            "priority": priority,
            "level": level,
            **options,
        }
    )
    check_options({"name": name})  # before it is claimed by that name
    # NUL: no durable subscription's name (the claims' other users) holds one
    claim = _claimed(store, f"statekeep.state\0{name}")
    if claim is None:
        raise StateError(
            f"the state {name!r} is open in another process or Store on this database: "
            "a named state has one writer at a time (close it there first)"
        )
    try:
        state: AppState[Any] = AppState(model, name=name, **options)
        # what an earlier run left in the write-behind journal (snapshots acknowledged
        # durable, not yet stored) is taken over when the engine starts, and stored
        # by the flush, before the state is read
        _ = store.writebehind
        store.flush()
        restored = restore(store, state)
        persister = Persister(
            store,
            state,
            every=persist_every,
            full_every=full_every,
            priority=priority,
            level=level,
            restored=restored,
            claim=claim,
        )
    except BaseException:
        claim.release()
        raise
    state._persister = persister
    state._bus = store.bus
    return state
