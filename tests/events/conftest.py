"""Every event test runs once per backend of the registry every suite has
(tests/_backends.py: BACKENDS); `@pytest.mark.requires(...)` keeps a test to
the backends with those capabilities, as in the conformance suite.

Tests that need the outbox (durable subscriptions, cross-process delivery)
use `outbox_store`, which skips a backend that has no outbox methods yet."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import statekeep
from _backends import Backend as Backend  # for the tests that name it

from ._support import close_store, has_outbox, reap_children

OpenStore = Callable[..., statekeep.Store]


@pytest.fixture
def open_store(store_url: str) -> Iterator[OpenStore]:
    """open_store(**options) opens store_url (again); all closed at the end.

    memory:// and sqlite://:memory: give a new, empty database each time."""
    opened: list[statekeep.Store] = []

    def open_(**options: Any) -> statekeep.Store:
        store = statekeep.open(store_url, **options)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        close_store(store)


@pytest.fixture
def store(open_store: OpenStore) -> statekeep.Store:
    """A store without an outbox: events go to in-process handlers only."""
    return open_store()


@pytest.fixture
def outbox_store(open_store: OpenStore, backend: Backend) -> statekeep.Store:
    """A store opened with outbox=True (skips a backend without an outbox).

    Its subscriptions never prune the outbox (outbox_retention=None), so that
    a test can read the outbox afterwards as the record of what was committed;
    test_durable.py tests pruning with stores of its own."""
    opened = open_store(outbox=True, outbox_retention=None)
    if not has_outbox(opened):
        pytest.skip(
            f"the {backend.name} backend has no outbox yet "
            "(append_events/read_events/wait_events/prune_events)"
        )
    return opened


@pytest.fixture(autouse=True)
def no_child_left() -> Iterator[None]:
    """Kills what a failing test left running (and reaps every child)."""
    yield
    reap_children()
