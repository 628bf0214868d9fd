"""Events: lifecycle and domain events, the in-process bus, durable subscriptions."""

from ._bus import Bus, Handler, Subscription, matcher_for
from ._calling import running_loop
from ._checkpoints import SubscriptionInfo
from ._durable import DurableSubscription
from ._event import (
    LIFECYCLE,
    AlertRaised,
    AlertResolved,
    Carrying,
    Created,
    Deleted,
    Event,
    HandlerFailed,
    Lifecycle,
    UnknownEvent,
    Updated,
    domain_class,
    lifecycle_entry,
    outbox_entry,
)
from ._subscriptions import Subscriptions

__all__ = [
    "LIFECYCLE",
    "AlertRaised",
    "AlertResolved",
    "Bus",
    "Carrying",
    "Created",
    "Deleted",
    "DurableSubscription",
    "Event",
    "Handler",
    "HandlerFailed",
    "Lifecycle",
    "Subscription",
    "SubscriptionInfo",
    "Subscriptions",
    "UnknownEvent",
    "Updated",
    "domain_class",
    "lifecycle_entry",
    "matcher_for",
    "outbox_entry",
    "running_loop",
]
