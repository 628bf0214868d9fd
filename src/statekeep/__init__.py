"""statekeep keeps an application's state: typed entities in one Store."""

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
    UnknownFieldError,
    ValidationError,
)
from .events import (
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
from .store import Store, open
from .writebehind import DeadLetter, Policy, Priority, Receipt, Stats, WriteBehindOptions

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "CircuitOpenError",
    "Condition",
    "ConfigurationError",
    "ConflictError",
    "Created",
    "DeadLetter",
    "DeadlockError",
    "Deleted",
    "DurableSubscription",
    "Entity",
    "Event",
    "FieldRef",
    "FlowClosedError",
    "FrozenStateError",
    "HandlerFailed",
    "Indexed",
    "Lifecycle",
    "NotFoundError",
    "Ordering",
    "Policy",
    "Priority",
    "QueryError",
    "QueueFullError",
    "Receipt",
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
    "UnknownFieldError",
    "Updated",
    "ValidationError",
    "WriteBehindOptions",
    "errors",
    "open",
    "use",
]
