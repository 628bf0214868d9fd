"""The notes batches write in the database name journal records by their own
run: a batch of one run also stores the records it recovered from another,
and a note that named them under its own run made recovery skip an unrelated
record of that run with the same sequence number (an acknowledged write
lost: found by test_ordering)."""

from __future__ import annotations

import pytest

import statekeep

from .models import Doc

pytestmark = pytest.mark.requires("persistent")

HOLD = statekeep.WriteBehindOptions(window=3600, low_max_age=3600)


def test_a_record_is_not_skipped_for_a_note_of_a_recovered_one(store_url: str) -> None:
    stored: dict[str, str] = {}
    for attempt in range(20):  # close(timeout=0) may store a write before it stops: try again
        first = statekeep.open(store_url, writebehind=HOLD)
        recovered = first.enqueue(Doc(id=f"c{attempt}", title="left by the first run"))
        first.close(timeout=0)  # left in the journal: the first run's record 1

        second = statekeep.open(store_url, writebehind=HOLD)  # recovers it
        assert second.flush(timeout=30)  # stored: a note names that record
        left = second.enqueue(Doc(id=f"a{attempt}", title="left by the second run"))
        second.close(timeout=0)  # its own record 1
        stored[f"c{attempt}"] = "left by the first run"
        stored[f"a{attempt}"] = "left by the second run"
        if recovered.left_pending and left.left_pending:
            break
    else:
        pytest.fail("close(timeout=0) stored the writes every time: the case was never made")
    assert left.durable

    with statekeep.open(store_url, writebehind=HOLD) as third:
        assert third.flush(timeout=30)
        assert {d.id: d.title for d in third.find(Doc)} == stored
