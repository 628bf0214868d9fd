"""A durable subscription while its outbox cannot be read: after a few
failures in a row it fails fast (no query, no error logged) behind a
statekeep.flow CircuitBreaker, tries once a second, and reads on once the
database answers again, delivering what was committed meanwhile."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest

import statekeep
from statekeep.errors import TransientBackendError
from statekeep.events._durable import OUTBOX_FAILURES

from ._support import Recorder, wait_for
from .models import Todo


def test_an_unreachable_outbox_fails_fast_then_is_read_again(
    outbox_store: statekeep.Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    backend = outbox_store.backend
    real = backend.read_events
    reads: list[float] = []
    down = threading.Event()
    down.set()

    def read_events(after: int, limit: int) -> Any:
        reads.append(time.monotonic())
        if down.is_set():
            raise TransientBackendError("the database is down")
        return real(after, limit)

    monkeypatch.setattr(backend, "read_events", read_events)
    caplog.set_level(logging.WARNING, logger="statekeep.events")
    handled = Recorder()
    subscription = outbox_store.subscribe("through an outage", handled)
    try:
        wait_for(lambda: subscription.stats.outbox == "open", timeout=15, what="failing fast")
        assert subscription.stats.failures >= OUTBOX_FAILURES
        before = len(reads)
        time.sleep(2.2)
        assert len(reads) - before <= 3  # a probe a second, no more
        saved = outbox_store.save(Todo(title="saved during the outage"))
        down.clear()
        wait_for(
            lambda: saved.id in {e.entity_id for e in handled.events},
            timeout=15,
            what="the event delivered",
        )
        wait_for(lambda: subscription.stats.outbox == "closed", timeout=5, what="closed again")
    finally:
        subscription.stop()
    assert "unreachable" in caplog.text and "reachable again" in caplog.text
