"""statekeep keeps an application's state: typed entities in one Store."""

import logging as _logging

from . import errors
from ._schema import Indexed
from .active import use
from .conditions import Condition, FieldRef, Ordering
from .entity import Entity
from .errors import (
    BackendError,
    CircuitOpenError,
    ConfigurationError,
    ConflictError,
    DeadlockError,
    DumpError,
    FlowClosedError,
    FrozenStateError,
    NotFoundError,
    QueryError,
    QueueFullError,
    StateError,
    StatekeepError,
    StatePathError,
    StoreClosedError,
    ThrottledError,
    TransactionError,
    TransientBackendError,
    TransitionError,
    UnknownFieldError,
    ValidationError,
)
from .events import (
    AlertRaised,
    AlertResolved,
    Created,
    Deleted,
    DurableSubscription,
    Event,
    HandlerFailed,
    Lifecycle,
    Subscription,
    SubscriptionInfo,
    Updated,
)
from .machines import Machine, State, Transitioned, TransitionRecord, TransitionReport
from .store import Store, open
from .writebehind import DeadLetter, Policy, Priority, Receipt, Stats, WriteBehindOptions

__version__ = "0.1.0"

# a library's records go where the application sends them: without a handler of its
# own, Python would print warnings (an alert raised) to stderr
_logging.getLogger("statekeep").addHandler(_logging.NullHandler())

__all__ = [
    "AlertRaised",
    "AlertResolved",
    "BackendError",
    "CircuitOpenError",
    "Condition",
    "ConfigurationError",
    "ConflictError",
    "Created",
    "DeadLetter",
    "DeadlockError",
    "Deleted",
    "DumpError",
    "DurableSubscription",
    "Entity",
    "Event",
    "FieldRef",
    "FlowClosedError",
    "FrozenStateError",
    "HandlerFailed",
    "Indexed",
    "Lifecycle",
    "Machine",
    "NotFoundError",
    "Ordering",
    "Policy",
    "Priority",
    "QueryError",
    "QueueFullError",
    "Receipt",
    "State",
    "StateError",
    "StatePathError",
    "StatekeepError",
    "Stats",
    "Store",
    "StoreClosedError",
    "Subscription",
    "SubscriptionInfo",
    "ThrottledError",
    "TransactionError",
    "TransientBackendError",
    "TransitionError",
    "TransitionRecord",
    "TransitionReport",
    "Transitioned",
    "UnknownFieldError",
    "Updated",
    "ValidationError",
    "WriteBehindOptions",
    "errors",
    "open",
    "use",
]
