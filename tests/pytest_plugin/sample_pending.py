"""The sample project's test that leaves a write pending (run as
test_pending.py): statekeep_store's teardown stores it before it ends."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from todo_app import Todo

import statekeep


@pytest.fixture
def statekeep_store_options() -> dict[str, Any]:
    return {"writebehind": {"window": 60.0}}  # a NORMAL write waits up to a minute


@pytest.fixture
def stored_after_teardown(statekeep_url: str) -> Iterator[list[statekeep.Receipt]]:
    """Set up before statekeep_store and torn down after it (but before
    statekeep_url: a PostgreSQL schema is still there)."""
    receipts: list[statekeep.Receipt] = []
    yield receipts
    assert receipts and all(receipt.stored for receipt in receipts)
    if not statekeep_url.startswith(("memory://", "sqlite://:memory:")):
        with statekeep.open(statekeep_url) as again:
            assert [t.title for t in again.find(Todo)] == ["left pending"]


def test_leaves_a_write_pending(
    stored_after_teardown: list[statekeep.Receipt], statekeep_store: statekeep.Store
) -> None:
    receipt = statekeep_store.enqueue(Todo(title="left pending"))
    stored_after_teardown.append(receipt)
    assert not receipt.stored
