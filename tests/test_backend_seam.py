"""A store runs on a backend object given to it (`backend=`), closes it with
itself, and shows it (`store.backend`) with its bus and lifecycle."""

from __future__ import annotations

from typing import Any

import pytest

import statekeep
from statekeep.backends import open_backend
from statekeep.errors import ConfigurationError


class Closes:
    """A backend wrapper that notes its close()."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.closed = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def close(self) -> None:
        self.closed += 1
        self.inner.close()


class Note(statekeep.Entity, collection="seam_notes"):
    text: str = ""


def test_a_given_backend_is_used_shown_and_closed_with_the_store() -> None:
    backend = Closes(open_backend("memory://", {}))
    store = statekeep.open("memory://", backend=backend)
    assert store.backend is backend
    assert not store.closed and not store.closing
    store.save(Note(id="a", text="x"))
    assert backend.inner.get("seam_notes", "a") is not None
    store.close()
    assert store.closed and not store.closing
    assert backend.closed == 1
    assert repr(store).endswith(" closed>")


def test_options_go_to_the_backend_not_beside_it() -> None:
    backend = Closes(open_backend("memory://", {}))
    with pytest.raises(ConfigurationError, match="options go to the backend you made"):
        statekeep.open("memory://", backend=backend, timeout=5)
    assert backend.closed == 0  # a store that was not made leaves it to its maker
    backend.close()


def test_bad_store_options_leave_a_given_backend_open() -> None:
    backend = Closes(open_backend("memory://", {}))
    with pytest.raises(ConfigurationError):
        statekeep.Store("memory://", backend=backend, outbox_retention=-1)
    assert backend.closed == 0
    backend.close()


def test_the_bus_counts_what_it_delivered() -> None:
    with statekeep.open("memory://") as store:
        seen: list[str] = []
        store.on(Note, lambda event: seen.append(event.entity_id))
        store.save(Note(id="b"))
        assert seen == ["b"] and store.bus.stats.delivered == 1


class _NoCommit:
    """Most of a backend, but not commit."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        if name == "commit":
            raise AttributeError(name)
        return getattr(self.inner, name)


@pytest.mark.parametrize(
    "given",
    [object(), "sqlite://:memory:", False, 5, type(open_backend("memory://", {}))],
    ids=["object", "url", "false", "int", "a-class"],
)
def test_backend_must_be_a_backend_object(given: Any) -> None:
    with pytest.raises(ConfigurationError, match="backend= takes a backend object"):
        statekeep.open("memory://", backend=given)


def test_a_backend_lacking_a_method_is_refused_by_name() -> None:
    inner = open_backend("memory://", {})
    with pytest.raises(ConfigurationError, match="it has no commit"):
        statekeep.Store("memory://", backend=_NoCommit(inner))
    inner.close()


def test_a_backend_given_to_an_open_store_is_refused_to_a_second_one() -> None:
    """The first store closes it with itself: a second would lose it under its feet."""
    backend = Closes(open_backend("memory://", {}))
    first = statekeep.open("memory://", backend=backend)
    with pytest.raises(ConfigurationError, match="already the backend of"):
        statekeep.open("memory://", backend=backend)
    first.save(Note(id="a"))  # the first store is unaffected
    assert first.get(Note, "a").id == "a"
    first.close()
    assert backend.closed == 1
