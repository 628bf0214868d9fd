"""The checkpoints of the durable subscriptions a database knows: listing
them, pruning the outbox behind them, retiring a name.

The outbox keeps every event some subscription has not passed, so one name
nobody consumes any more would keep it growing for ever. Pruning obeys it,
but says so: a subscription whose checkpoint has not moved for `stale_after`
seconds while events wait for it is reported (a warning on the
statekeep.events logger, and `stalled` in `subscriptions()`), with how to
drop it (`store.unsubscribe(name)`, `statekeep unsubscribe URL NAME`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime

from ..backends.base import Backend, CollectionSpec, Query, atomic
from ..errors import ConfigurationError, NotFoundError

log = logging.getLogger("statekeep.events")

CHECKPOINTS = CollectionSpec("statekeep_subscriptions")


@dataclass(frozen=True)
class SubscriptionInfo:
    """A durable subscription as its checkpoint says.

    advanced_at: when its checkpoint last moved (None if never since this
    was recorded); active: a consumer holds the name now, in any process;
    behind: events after its position wait for it; stalled: behind, and not
    advanced for longer than the store's outbox_stale_after."""

    name: str
    position: int
    advanced_at: datetime | None
    active: bool
    behind: bool
    stalled: bool


def _checkpoints(backend: Backend) -> list[tuple[str, int, float | None]]:
    backend.ensure_collection(CHECKPOINTS, create=False)
    found = []
    for body in backend.select(CHECKPOINTS, Query()):
        stored = json.loads(body)
        at = stored.get("advanced_at")
        moved = None if at is None else float(at)
        found.append((str(stored["id"]), int(stored["position"]), moved))
    return found


def positions(backend: Backend) -> dict[str, int]:
    """Each durable subscription's position, from the checkpoints alone (no
    claim is tried, no connection kept: cheap enough to read every few seconds)."""
    return {name: position for name, position, _ in _checkpoints(backend)}


def load(backend: Backend, name: str) -> tuple[int, int]:
    """(position, version) of a subscription's checkpoint; (0, 0) if none."""
    backend.ensure_collection(CHECKPOINTS, create=False)
    body = backend.get(CHECKPOINTS.name, name)
    if body is None:
        return 0, 0
    stored = json.loads(body)
    return int(stored["position"]), int(stored["version"])


def save(backend: Backend, name: str, version: int, position: int) -> int:
    """Moves a checkpoint from version to the next (ConflictError if it moved
    meanwhile); returns the new version."""
    body = json.dumps(
        {"id": name, "version": version + 1, "position": position, "advanced_at": time.time()}
    )
    backend.ensure_collection(CHECKPOINTS)
    with atomic(backend):
        backend.put(CHECKPOINTS, [(name, version + 1, body)])
    return version + 1


def _stalled(backend: Backend, position: int, at: float | None, stale_after: float) -> bool:
    if at is not None and time.time() - at <= stale_after:
        return False
    return bool(backend.read_events(position, 1))


def subscriptions(backend: Backend, stale_after: float) -> list[SubscriptionInfo]:
    infos = []
    for name, position, at in _checkpoints(backend):
        claim = backend.claim(name)
        if claim is not None:
            claim.release()
        infos.append(
            SubscriptionInfo(
                name=name,
                position=position,
                advanced_at=None if at is None else datetime.fromtimestamp(at, UTC),
                active=claim is None,
                behind=bool(backend.read_events(position, 1)),
                stalled=_stalled(backend, position, at, stale_after),
            )
        )
    return infos


def unsubscribe(backend: Backend, name: str) -> None:
    """Drops a subscription's checkpoint (the outbox no longer waits for it).
    NotFoundError for a name without one; ConfigurationError while a
    consumer holds the name (stop it first)."""
    claim = backend.claim(name)
    if claim is None:
        raise ConfigurationError(
            f"subscription {name!r} is running (here or in another process): stop it "
            "(subscription.stop(), or end that process) before unsubscribing it"
        )
    try:
        backend.ensure_collection(CHECKPOINTS)
        try:
            with atomic(backend):
                backend.delete(CHECKPOINTS.name, name, None)
        except NotFoundError:
            error = NotFoundError("subscription", name)
            error.args = (
                f"no durable subscription named {name!r}: store.subscriptions() lists them",
            )
            raise error from None
    finally:
        claim.release()


def prune(
    backend: Backend,
    retention_events: int = 0,
    stale_after: float | None = None,
    warned: MutableMapping[str, float] | None = None,
) -> int:
    """Deletes the events every durable subscription has passed (keeping the
    last retention_events of them); returns how many. With no subscription
    at all, nothing is deleted (a first subscriber starts at the beginning).

    A stalled subscription that holds pruning back is reported (once per
    stale_after per name in `warned`, when given)."""
    checkpoints = _checkpoints(backend)
    if not checkpoints:
        return 0
    lowest = min(position for _, position, _ in checkpoints)
    if stale_after is not None:
        for name, position, at in checkpoints:
            if position != lowest or not _stalled(backend, position, at, stale_after):
                continue
            if warned is not None:
                if time.monotonic() - warned.get(name, -stale_after) < stale_after:
                    continue
                warned[name] = time.monotonic()
            log.warning(
                "durable subscription %r has not advanced for over %g s and keeps the outbox "
                "from being pruned after position %d; if it is retired, drop it with "
                "store.unsubscribe(%r) or `statekeep unsubscribe URL %s`",
                name,
                stale_after,
                position,
                name,
                name,
                extra={
                    "statekeep": {
                        "event": "events.subscription_stalled",
                        "subscription": name,
                        "stale_after": stale_after,
                        "position": position,
                    }
                },
            )
    return backend.prune_events(lowest, retention_events) if lowest > 0 else 0
