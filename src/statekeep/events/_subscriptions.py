"""The durable subscriptions of one store: the options they share, the ones
running, and the accessors the Store hands on (subscribe, prune,
subscriptions, unsubscribe)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

from ..backends.base import Backend
from ..errors import ConfigurationError
from ._bus import Handler, matcher_for
from ._checkpoints import SubscriptionInfo, positions, prune, subscriptions, unsubscribe
from ._durable import Decode, DurableSubscription


class Subscriptions:
    def __init__(
        self, backend: Backend, decode: Decode, *, outbox: bool, retention: Any, stale_after: Any
    ) -> None:
        if retention is not None and (
            not isinstance(retention, int) or isinstance(retention, bool) or retention < 0
        ):
            raise ConfigurationError(
                f"outbox_retention is a number of events >= 0, or None, not {retention!r}"
            )
        if (
            not isinstance(stale_after, (int, float))
            or isinstance(stale_after, bool)
            or not stale_after > 0
        ):
            raise ConfigurationError(
                f"outbox_stale_after is a number of seconds > 0, not {stale_after!r}"
            )
        self._backend = backend
        self._decode = decode
        self._outbox = outbox
        self._retention: int | None = retention
        self._stale_after = float(stale_after)
        self._running: dict[str, DurableSubscription] = {}

    def subscribe(
        self,
        name: str,
        handler: Handler,
        events: Sequence[Any] | None,
        loop: asyncio.AbstractEventLoop | None,
    ) -> DurableSubscription:
        if not self._outbox:
            raise ConfigurationError(
                "durable subscriptions read the outbox: open the store (and every store "
                "that writes to this database) with outbox=True"
            )
        _check_name(name)
        if not callable(handler):
            raise ConfigurationError(f"an event handler must be callable, not {handler!r}")
        running = self._running.get(name)
        if running is not None and running.running:
            raise ConfigurationError(f"subscription {name!r} is already running in this store")
        if isinstance(events, (str, type)):
            events = [events]
        elif events is not None and not isinstance(events, Iterable):
            raise ConfigurationError(f"events takes a list of event targets, not {events!r}")
        matchers = [matcher_for(target)[0] for target in (events or ["*"])]
        subscription = DurableSubscription(
            self._backend,
            name,
            handler,
            lambda collection, kind: any(m(collection, kind) for m in matchers),
            self._decode,
            loop=loop,
            on_stop=self._forget,
            retention=self._retention,
            stale_after=self._stale_after,
        )
        self._running[name] = subscription
        return subscription

    def prune(self, keep: Any) -> int:
        if not isinstance(keep, int) or isinstance(keep, bool) or keep < 0:
            raise ConfigurationError(f"keep is a number of events >= 0, not {keep!r}")
        return prune(self._backend, keep, self._stale_after)

    def infos(self) -> list[SubscriptionInfo]:
        return subscriptions(self._backend, self._stale_after)

    def positions(self) -> dict[str, int]:
        """{name: position} of this database's durable subscriptions (no claims tried)."""
        return positions(self._backend)

    def unsubscribe(self, name: Any) -> None:
        _check_name(name)
        running = self._running.get(name)
        if running is not None and running.running:
            raise ConfigurationError(
                f"subscription {name!r} is running in this store: call its stop() first"
            )
        unsubscribe(self._backend, name)

    def after_fork(self) -> None:
        """In a forked child: the running subscriptions, their threads and their
        claims are the parent's; the child neither stops nor releases them."""
        self._running.clear()

    def stop_all(self) -> None:
        for subscription in list(self._running.values()):
            subscription.stop()

    def _forget(self, subscription: DurableSubscription) -> None:
        if self._running.get(subscription.name) is subscription:
            del self._running[subscription.name]


def _check_name(name: Any) -> None:
    """1-200 characters, no spaces around them, storable everywhere (no NUL,
    which PostgreSQL text cannot hold; no lone surrogate, which is not UTF-8)."""
    if (
        not isinstance(name, str)
        or not 0 < len(name) <= 200
        or name != name.strip()
        or "\x00" in name
        or not _utf8(name)
    ):
        raise ConfigurationError(
            f"a subscription name is 1-200 characters of UTF-8 text without NUL "
            f"or spaces around them, not {name!r}"
        )


def _utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


__all__ = ["Subscriptions", "SubscriptionInfo"]
