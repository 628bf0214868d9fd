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
    StatekeepError,
    StoreClosedError,
    TransientBackendError,
    UnknownFieldError,
    ValidationError,
)
from .store import Store, open

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "Condition",
    "ConfigurationError",
    "ConflictError",
    "Entity",
    "FieldRef",
    "Indexed",
    "NotFoundError",
    "Ordering",
    "QueryError",
    "StatekeepError",
    "Store",
    "StoreClosedError",
    "TransientBackendError",
    "UnknownFieldError",
    "ValidationError",
    "errors",
    "open",
    "use",
]
