"""statekeep keeps an application's state: typed entities in one Store."""

from . import errors
from ._schema import Indexed
from .active import use
from .conditions import Condition, FieldRef, Ordering
from .entity import Entity
from .errors import (
    BackendError,
    ConfigurationError,
    ConflictError,
    NotFoundError,
    QueryError,
    QueueFullError,
    StatekeepError,
    StoreClosedError,
    TransientBackendError,
    UnknownFieldError,
    ValidationError,
)
from .store import Store, open
from .writebehind import DeadLetter, Policy, Priority, Receipt, Stats, WriteBehindOptions

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "Condition",
    "ConfigurationError",
    "ConflictError",
    "DeadLetter",
    "Entity",
    "FieldRef",
    "Indexed",
    "NotFoundError",
    "Ordering",
    "Policy",
    "Priority",
    "QueryError",
    "QueueFullError",
    "Receipt",
    "StatekeepError",
    "Stats",
    "Store",
    "StoreClosedError",
    "TransientBackendError",
    "UnknownFieldError",
    "ValidationError",
    "WriteBehindOptions",
    "errors",
    "open",
    "use",
]
