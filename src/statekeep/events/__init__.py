"""Events: lifecycle and domain events, the in-process bus, durable subscriptions."""

from ._bus import Bus, Subscription
from ._event import (
    LIFECYCLE,
    Created,
    Deleted,
    Event,
    HandlerFailed,
    Lifecycle,
    UnknownEvent,
    Updated,
    domain_class,
    outbox_entry,
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
    "UnknownEvent",
    "Updated",
    "domain_class",
    "outbox_entry",
]
