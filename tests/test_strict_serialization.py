"""Values pydantic-core warns about when serialising are refused, whatever
the warnings filters say and whoever changes them meanwhile.

statekeep serialises with warnings=True and raises the warning by a filter
of its own (statekeep._strict); these tests hold it to what
warnings="error" gave: the same ValidationError, nothing stored.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pydantic
import pytest

import statekeep
from statekeep import Entity, ValidationError


class Strict(Entity, collection="strict_serialization"):
    title: str = ""
    amount: int = 0
    tags: list[str] = []
    either: int | str = 0


def _constructed_title() -> Strict:
    return Strict.model_construct(id="bad", version=0, title=5)  # type: ignore[arg-type]


def _constructed_count() -> Strict:
    return Strict.model_construct(id="bad", version=0, amount="many")  # type: ignore[arg-type]


def _appended_tag() -> Strict:
    bad = Strict(id="bad")
    bad.tags.append(5)  # type: ignore[arg-type]
    return bad


def _dict_written() -> Strict:
    bad = Strict(id="bad")
    bad.__dict__["either"] = 1.5
    return bad


BAD: dict[str, Callable[[], Strict]] = {
    "model_construct str": _constructed_title,
    "model_construct int": _constructed_count,
    "list mutated in place": _appended_tag,
    "__dict__ written past validation": _dict_written,
}
HOW = ["save", "save_many", "enqueue"]


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[statekeep.Store]:
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'strict.db'}"
    with statekeep.open(url) as opened:
        yield opened


def _store(store: statekeep.Store, entity: Strict, how: str) -> None:
    if how == "save":
        store.save(entity)
    elif how == "save_many":
        store.save_many([Strict(id="fine"), entity])
    else:
        store.enqueue(entity).wait_stored(timeout=10)


def _nothing_stored(store: statekeep.Store) -> None:
    assert store.get_many(Strict, ["bad", "fine"]) == {}


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("case", list(BAD))
def test_a_value_pydantic_warns_about_is_refused(
    store: statekeep.Store, case: str, how: str
) -> None:
    entity = BAD[case]()
    with pytest.raises(ValidationError, match="cannot be stored: Pydantic serializer warnings"):
        _store(store, entity, how)
    assert entity.version == 0
    _nothing_stored(store)
    store.save(Strict(id="after"))  # a good one goes on being stored
    assert store.get(Strict, "after").version == 1


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("action", ["ignore", "always", "default", "once", "module"])
def test_refused_under_any_filter(store: statekeep.Store, how: str, action: str) -> None:
    """A filter ahead of ours that lets the warning pass: "error" is passed instead."""
    with warnings.catch_warnings(record=True):
        warnings.simplefilter(action)  # type: ignore[arg-type]
        for _ in range(3):  # "once" and "module" remember what they saw
            with pytest.raises(ValidationError):
                _store(store, _constructed_title(), how)
    _nothing_stored(store)


def test_users_filters_are_left_as_they_were_apart_from_ours(store: statekeep.Store) -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "something of the user's", UserWarning)
        before = list(warnings.filters)
        with pytest.raises(ValidationError):
            store.save(_constructed_title())
        store.save(Strict(id="fine"))
        after = list(warnings.filters)
        ours = [f for f in after if f not in before]
        assert len(ours) == 1 and [f for f in after if f in before] == before
        action, message, category, module, lineno = ours[0]
        assert (action, category, lineno) == ("error", UserWarning, 0)
        assert message is not None and message.pattern == "Pydantic serializer warnings"
        assert module is not None and module.match("statekeep._schema")
        store.save(Strict(id="fine again"))
        assert list(warnings.filters) == after  # put in once


@pytest.mark.parametrize("action", ["ignore", "always"])
def test_a_thread_toggling_filters_never_lets_a_bad_value_through(
    store: statekeep.Store, action: str
) -> None:
    stop = threading.Event()

    def toggle() -> None:
        while not stop.is_set():
            with warnings.catch_warnings(record=True):
                warnings.simplefilter(action)  # type: ignore[arg-type]

    toggler = threading.Thread(target=toggle)
    toggler.start()
    try:
        for attempt in range(600):
            how = HOW[attempt % 3]
            with pytest.raises(ValidationError):
                _store(store, BAD[list(BAD)[attempt % len(BAD)]](), how)
            if attempt % 50 == 0:
                store.save(Strict(id=f"good-{attempt}"))
    finally:
        stop.set()
        toggler.join()
    _nothing_stored(store)
    assert store.count(Strict) == 12


CHILD = """
import statekeep
from statekeep import Entity, ValidationError

class Strict(Entity):
    title: str = ""

refused = 0
with statekeep.open("memory://") as store:
    for how in ("save", "save_many", "enqueue"):
        bad = Strict.model_construct(id="bad", version=0, title=5)  # type: ignore[arg-type]
        try:
            if how == "save":
                store.save(bad)
            elif how == "save_many":
                store.save_many([bad])
            else:
                store.enqueue(bad).wait_stored(timeout=10)
        except ValidationError:
            refused += 1
    assert store.get_many(Strict, ["bad"]) == {}
print("refused", refused)
"""


@pytest.mark.parametrize(
    ("options", "environment"),
    [(["-W", "ignore"], {}), ([], {"PYTHONWARNINGS": "ignore"}), (["-W", "always"], {})],
    ids=["-W ignore", "PYTHONWARNINGS=ignore", "-W always"],
)
def test_refused_when_python_is_told_to_ignore_warnings(
    options: list[str], environment: dict[str, str]
) -> None:
    import os

    run = subprocess.run(
        [sys.executable, *options, "-c", CHILD],
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["refused", "3"]
    assert "Pydantic serializer warnings" not in run.stderr  # raised, never shown


_MEDDLE = threading.Event()


class Meddling(Entity, collection="strict_meddling"):
    """Its first field's serializer turns warnings off (once _MEDDLE is set):
    the filters change during the call."""

    first: str = ""
    title: str = ""

    @pydantic.field_serializer("first")
    def _ignore_warnings_from_now_on(self, value: str) -> str:
        if _MEDDLE.is_set():
            warnings.simplefilter("ignore")
        return value


@pytest.mark.parametrize("how", HOW)
def test_filters_changed_during_the_call_are_caught_after_it(
    store: statekeep.Store, how: str
) -> None:
    """The warning goes by unraised; the registry's token shows it did."""
    store.save(Meddling(id="armed"))  # our filter in place, a token set
    bad = Meddling.model_construct(id="bad", version=0, first="", title=5)  # type: ignore[arg-type]
    _MEDDLE.set()
    try:
        with warnings.catch_warnings(), pytest.raises(ValidationError):
            if how == "save":
                store.save(bad)
            elif how == "save_many":
                store.save_many([Meddling(id="fine"), bad])
            else:
                store.enqueue(bad).wait_stored(timeout=10)
    finally:
        _MEDDLE.clear()
    assert store.get_many(Meddling, ["bad", "fine"]) == {}
