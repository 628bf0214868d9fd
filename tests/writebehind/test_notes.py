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
    first = statekeep.open(store_url, writebehind=HOLD)
    first.enqueue(Doc(id="c", title="left by the first run"))
    first.close(timeout=0)  # left in the journal: the first run's record 1

    second = statekeep.open(store_url, writebehind=HOLD)  # recovers it
    assert second.flush(timeout=30)  # stored: a note names that record
    left = second.enqueue(Doc(id="a", title="left by the second run"))  # its record 1
    second.close(timeout=0)
    assert left.left_pending and left.durable

    with statekeep.open(store_url, writebehind=HOLD) as third:
        assert third.flush(timeout=30)
        assert {d.id: d.title for d in third.find(Doc)} == {
            "c": "left by the first run",
            "a": "left by the second run",
        }
