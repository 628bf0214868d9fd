"""The errors statekeep raises, all under one root.

StatekeepError
├── ConfigurationError       a bad URL, option, argument or entity class, no default store,
│                            a transaction block used without `with`
├── StoreClosedError         the store was used after close()
├── TransactionError         a write met a transaction of another thread, task or process
├── DeadlockError            a wait on the write-behind engine from its own thread
├── NotFoundError            no entity with that id (also a LookupError)
├── ConflictError            a stale version: someone else saved first
├── ValidationError          bad data for an entity (a ValueError); .errors() has the details
├── QueueFullError           a write-behind queue or a flow Batcher is full (policy block or raise)
├── ThrottledError           a flow Throttle could not admit a call within its timeout
├── CircuitOpenError         a flow CircuitBreaker is open: the call failed fast
├── FlowClosedError          a flow part (debounce, batcher, pipeline) used after close()
├── StateError               a statekeep.state AppState misused
│   ├── StatePathError       a path naming nothing in the state (also a LookupError)
│   └── FrozenStateError     a snapshot changed in place (also a TypeError)
├── TransitionError          a state machine event not allowed now: unknown, not from this
│                            state, or refused by a guard (statekeep.machines)
├── DumpError                a dump that cannot be imported: no header, a corrupted or
│                            unknown line, counts or checksums that disagree (statekeep.ops)
├── QueryError               a condition or ordering that cannot be run (also a ValueError)
│   └── UnknownFieldError    a field the entity does not have (also an AttributeError)
└── BackendError             the database driver failed; the driver's error is chained
    └── TransientBackendError  a failure worth retrying (locked, busy, unavailable,
                               also from open(): a server that is down or has no free slot)
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BackendError",
    "CircuitOpenError",
    "ConfigurationError",
    "ConflictError",
    "DeadlockError",
    "DumpError",
    "FlowClosedError",
    "FrozenStateError",
    "NotFoundError",
    "QueryError",
    "QueueFullError",
    "StateError",
    "StatePathError",
    "StatekeepError",
    "StoreClosedError",
    "ThrottledError",
    "TransactionError",
    "TransientBackendError",
    "TransitionError",
    "UnknownFieldError",
    "ValidationError",
]


class StatekeepError(Exception):
    """The root of every error statekeep raises on purpose."""


class ConfigurationError(StatekeepError):
    pass


class StoreClosedError(StatekeepError):
    pass


class TransactionError(StatekeepError):
    """A write in a thread, asyncio task or process that does not own the
    transaction in its way: it may neither join that transaction nor wait for
    it (the wait would block the event loop the owner needs). Nothing was written."""


class DeadlockError(StatekeepError):
    """A wait that could never end: waiting, on the write-behind engine's own
    thread (an event handler of a write-behind write, an on_event callback),
    for that engine to store something. Nothing was changed."""


class NotFoundError(StatekeepError, LookupError):
    def __init__(self, collection: str, id: str) -> None:
        super().__init__(f"no {collection} with id {id!r}")
        self.collection = collection
        self.id = id


class ConflictError(StatekeepError):
    def __init__(self, collection: str, id: str, detail: str) -> None:
        super().__init__(f"{collection} {id!r}: {detail}")
        self.collection = collection
        self.id = id


class ValidationError(StatekeepError, ValueError):
    """Data that does not fit an entity; wraps pydantic's error when there is one."""

    def __init__(self, message: str, details: list[Any] | None = None) -> None:
        super().__init__(message)
        self._details = details or []

    def errors(self) -> list[Any]:
        """pydantic's list of error details (location, message, type, input)."""
        return list(self._details)


class QueueFullError(StatekeepError):
    """The write-behind queue (or a flow Batcher) holds max_pending items and
    the policy says no; also a Batcher item shed to make room (shed_oldest)."""


class ThrottledError(StatekeepError, TimeoutError):
    """A Throttle (statekeep.flow) could not admit a call within its timeout;
    nothing was taken from it. `retry_after` says when a slot frees (seconds,
    None if that depends on another caller)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class CircuitOpenError(StatekeepError):
    """A CircuitBreaker (statekeep.flow) is open: the call was not made.
    `retry_after` says in how many seconds it lets a probe through."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class FlowClosedError(StatekeepError):
    """A flow part (a Debounce, a Batcher, a Pipeline) was used after close()."""


class StateError(StatekeepError):
    """A statekeep.state AppState was misused: see the subclasses."""


class StatePathError(StateError, LookupError):
    """A path (`"doc.paragraphs.3.text"`) names nothing in the state's shape
    or value: an unknown field, a missing key, an index out of range."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.path = path


class FrozenStateError(StateError, TypeError):
    """A snapshot of an AppState was changed in place: snapshots never change;
    change the state with set(), update() or batch()."""


class TransitionError(StatekeepError):
    """An event a state machine does not allow now; nothing was changed.

    machine: the machine's name; state: the state the entity was in; event:
    the event sent; reason: why it was refused; entity_id: the entity's id
    (empty for a model without one)."""

    def __init__(
        self, machine: str, state: str, event: str, reason: str, entity_id: str = ""
    ) -> None:
        self.machine, self.state, self.event = machine, state, event
        self.reason, self.entity_id = reason, entity_id
        about = f" {entity_id!r}" if entity_id else ""
        super().__init__(f"{machine}{about}: {event!r} from {state!r} refused: {reason}")

    def __reduce__(self) -> tuple[Any, ...]:  # pickles (across processes) with its fields
        return (type(self), (self.machine, self.state, self.event, self.reason, self.entity_id))


class DumpError(StatekeepError, ValueError):
    """A dump that cannot be imported. line: the line it is about (1 is the
    header), or None for the dump as a whole."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message if line is None else f"line {line}: {message}")
        self.line = line


class QueryError(StatekeepError, ValueError):
    pass


class UnknownFieldError(QueryError, AttributeError):
    def __init__(self, entity: str, field: str, known: list[str]) -> None:
        super().__init__(f"{entity} has no field {field!r}; its fields are: {', '.join(known)}")
        self.entity = entity
        self.field = field


class BackendError(StatekeepError):
    """The database driver failed. The driver's own exception is the __cause__."""


class TransientBackendError(BackendError):
    """A failure that may pass if the same work is tried again later."""
