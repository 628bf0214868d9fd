"""What the dashboard's stream and live()'s share: the store behind an app, and
the SSE response a page reads (sse-starlette: heartbeats, disconnects, shutdown)."""

from __future__ import annotations

from collections.abc import AsyncIterable

from sse_starlette import EventSourceResponse

from ..aio import AsyncStore
from ..errors import ConfigurationError, StoreClosedError
from ..store import Store

HEARTBEAT = 15.0  # seconds between keep-alive comments on an idle stream
SEND_TIMEOUT = 30.0  # seconds a frame may take to go out before the page is dropped


def store_of(store: object) -> Store:
    """The Store behind store (an AsyncStore's); a typed error for anything else."""
    if isinstance(store, AsyncStore):
        store = store.sync
    if not isinstance(store, Store):
        raise ConfigurationError(
            f"statekeep.web needs a statekeep.Store or AsyncStore, not {store!r}"
        )
    if store.closed:
        raise StoreClosedError("statekeep.web: the store is closed")
    return store


def response(frames: AsyncIterable[bytes]) -> EventSourceResponse:
    """A page's stream: frames as they come, a heartbeat when none does."""
    return EventSourceResponse(
        frames,
        ping=HEARTBEAT,
        send_timeout=SEND_TIMEOUT,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
