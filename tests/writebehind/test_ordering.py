"""Ordering, property-based: random sequences of enqueue, enqueue_delete,
flush, observation and restart (close, drained or not, and open again, on
persistent backends) against a model where each entity's final content is the
last one enqueued. Every content is a fresh counter, so an observation can
tell which write it shows; observations of one entity must never go back to
an older write. STATEKEEP_STRESS=1 runs ten times as many examples."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from itertools import count
from pathlib import Path
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import statekeep
from statekeep import Priority

from .conftest import Backend
from .models import Doc

STRESS = os.environ.get("STATEKEEP_STRESS", "") not in ("", "0")
IDS = ("a", "b", "c")
DELETED = None
OPTIONS: dict[str, Any] = {"window": 0.002, "low_max_age": 0.02, "retry_base": 0.01}


class Ordering(RuleBasedStateMachine):
    backend: Backend

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="wb-ordering-"))
        self.url = self.backend.url(self.directory)
        self.options: dict[str, Any] = dict(OPTIONS)
        self.store = self._open()
        self.contents = count(1)
        self.history: dict[str, list[int | None]] = {id: [] for id in IDS}
        self.seen: dict[str, int] = dict.fromkeys(IDS, -1)  # index into history; -1: never written
        self.receipts: list[statekeep.Receipt] = []

    def _open(self) -> statekeep.Store:
        options = statekeep.WriteBehindOptions(**self.options)
        return statekeep.open(self.url, writebehind=options)

    @initialize(window=st.sampled_from([0.002, 0.05, 1.0]))
    def windows(self, window: float) -> None:
        """Short windows let writes go out between steps; a long one keeps
        NORMAL and LOW writes waiting while CRITICAL ones are stored."""
        self.store.close()
        self.options = {**OPTIONS, "window": window, "low_max_age": 10 * window}
        self.store = self._open()

    def teardown(self) -> None:
        self.store.close(timeout=10)
        shutil.rmtree(self.directory, ignore_errors=True)

    @rule(
        id=st.sampled_from(IDS),
        priority=st.sampled_from(Priority),
        deadline=st.none() | st.sampled_from([0.0, 0.01]),
    )
    def enqueue(self, id: str, priority: Priority, deadline: float | None) -> None:
        content = next(self.contents)
        doc = Doc(id=id, title=f"content {content}", n=content)
        self.receipts.append(self.store.enqueue(doc, priority, deadline=deadline))
        self.history[id].append(content)

    @rule(id=st.sampled_from(IDS), priority=st.sampled_from(Priority))
    def enqueue_delete(self, id: str, priority: Priority) -> None:
        self.receipts.append(self.store.enqueue_delete(Doc, id, priority=priority))
        self.history[id].append(DELETED)

    @rule()
    def flush(self) -> None:
        assert self.store.flush(timeout=30)
        stored = self.observe()
        expected = {id: h[-1] for id, h in self.history.items() if h and h[-1] is not DELETED}
        assert stored == expected
        assert [r.error for r in self.receipts if r.error is not None] == []
        assert all(r.stored for r in self.receipts)
        for id, h in self.history.items():
            self.seen[id] = len(h) - 1

    @rule(seconds=st.sampled_from([0.001, 0.005]))
    def pause(self, seconds: float) -> None:
        """Lets the background threads get on (a window passes, a batch goes out)."""
        time.sleep(seconds)

    @precondition(lambda self: "persistent" in self.backend.capabilities)
    @rule(drain=st.booleans())
    def restart(self, drain: bool) -> None:
        """close() drains; close(timeout=0) leaves what is pending in the journal."""
        self.store.close(timeout=None if drain else 0)
        self.store = self._open()
        self.receipts = []  # those of the closed store may stay pending for good

    @invariant()
    def never_older_than_seen(self) -> None:
        self.observe()

    def observe(self) -> dict[str, int]:
        """What is stored now, checked against the history: a write of each
        entity, no older than the one seen before."""
        stored = {d.id: d.n for d in self.store.find(Doc)}
        for d in self.store.find(Doc):
            assert d.title == f"content {d.n}"
        for id, h in self.history.items():
            value = stored.get(id, DELETED)
            if value is DELETED:
                at = [i for i in [-1, *range(len(h))] if (i < 0 or h[i] is DELETED)]
            else:
                assert value in h, f"{id}: {value} was never enqueued ({h})"
                at = [h.index(value)]
            later = [i for i in at if i >= self.seen[id]]
            assert later, (
                f"{id}: shows {value!r} though write #{self.seen[id]} of {h} was seen (#0 first)"
            )
            self.seen[id] = min(later)
        return stored


def test_the_last_enqueued_content_wins(backend: Backend) -> None:
    machine = type(f"Ordering_{backend.name.replace('-', '_')}", (Ordering,), {"backend": backend})
    run = settings(
        max_examples=400 if STRESS else 40,
        stateful_step_count=25,
        deadline=None,
        report_multiple_bugs=False,
    )
    run_state_machine_as_test(machine, settings=run)
