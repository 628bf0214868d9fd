"""Events: lifecycle and domain events, the in-process bus, durable subscriptions."""

from ._bus import Bus, Subscription
from ._event import (
    LIFECYCLE,
    Created,
    Deleted,
    Event,
    HandlerFailed,
    Lifecycle,
    Updated,
    domain_class,
)

__all__ = [
    "LIFECYCLE",
    "Bus",
    "Created",
    "Deleted",
    "Event",
    "HandlerFailed",
    "Lifecycle",
    "Subscription",
    "Updated",
    "domain_class",
]
