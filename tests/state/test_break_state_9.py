"""Hostile-user probes of statekeep.state, ninth round (a final sweep):
state.model() of container shapes, stats() and memory() against their
documented meaning, flush() / undo() inside a batch, batch() / undo()
inside a callback, selectors on list methods, deep models that set()
takes, and at() while another thread compresses.

Each test asserts what docs/state.md promises, so it fails where the bug is.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from pydantic import BaseModel, ConfigDict

import statekeep
from statekeep.errors import StateError, ValidationError
from statekeep.flow import FakeClock
from statekeep.state import AppState, Node, Priority

CRITICAL, NORMAL, LOW = Priority.CRITICAL, Priority.NORMAL, Priority.LOW


# -- 1. model(): what the model declares comes back as it -----------------------------------------
class Tag(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str = ""


class Tagged(BaseModel):
    tags: frozenset[Tag] = frozenset()


def test_model_gives_models_inside_a_frozenset_field_back_as_models() -> None:
    """Docs: `state.model()` is a new pydantic instance of the current value,
    each model it holds an instance of its own class. A `frozenset[Tag]`
    field comes back holding the snapshot's Nodes (tuple subclasses named
    Tag), not Tag instances: `isinstance(t, Tag)` is False and
    `model_dump()` warns. (_rebuild._any: a frozenset is returned as it is
    when the annotation says frozenset; its items are never rebuilt, unlike
    a set's, which go through _key.)"""
    with AppState(Tagged(tags=frozenset({Tag(name="a")}))) as state:
        tags = state.model().tags
        assert isinstance(tags, frozenset)
        assert len(tags) == 1
        assert all(isinstance(tag, Tag) and not isinstance(tag, Node) for tag in tags), [
            type(tag).__mro__ for tag in tags
        ]


class Pair(NamedTuple):
    x: int
    y: int


class Either(BaseModel):
    pair: tuple[int, int] | str = (0, 0)


class Containers(BaseModel):
    point: Pair = Pair(0, 0)
    queue: collections.deque[int] = collections.deque()
    counts: collections.Counter[str] = collections.Counter()
    by_default: collections.defaultdict[str, int] = collections.defaultdict(int)
    ordered: collections.OrderedDict[str, int] = collections.OrderedDict()


def test_model_gives_a_tuple_in_a_union_field_back_as_a_tuple() -> None:
    """`pair: tuple[int, int] | str` set to (1, 2): the snapshot holds the
    tuple, but state.model().pair is the list [1, 2], a value the field does
    not allow (pydantic's serializer warns it is neither member).
    (_rebuild._origin gives None for a union of two members, and _any
    makes a list of every tuple whose annotation is not `tuple`.)"""
    with AppState(Either(pair=(1, 2))) as state:
        assert state.value.pair == (1, 2)
        pair = state.model().pair
        assert type(pair) is tuple and pair == (1, 2)


@pytest.mark.parametrize("field", ["point", "queue", "counts", "by_default", "ordered"])
def test_model_gives_a_container_field_back_as_its_declared_type(field: str) -> None:
    """Docs: `state.model()` is a new pydantic instance of the current value;
    `Containers.model_construct` is not validated, so it gets what _rebuild
    makes: a NamedTuple field comes back as a plain list (`.x` raises
    AttributeError), a deque as a list, Counter, defaultdict and
    OrderedDict as plain dicts (`counts["missing"]` raises KeyError). The
    user's own instance (and `Containers.model_validate`) holds the
    declared types. (_rebuild.rebuilt / _any: only list, tuple, set and
    dict are known; the annotation's own class is ignored.)"""
    given = Containers(
        point=Pair(1, 2),
        queue=collections.deque([1, 2]),
        counts=collections.Counter({"a": 2}),
        by_default=collections.defaultdict(int, {"a": 1}),
        ordered=collections.OrderedDict({"a": 1}),
    )
    with AppState(given) as state:
        back = getattr(state.model(), field)
        assert type(back) is type(getattr(given, field))
        assert back == getattr(given, field)


# -- 2. stats(): one get() is one read ------------------------------------------------------------
class Plain(BaseModel):
    n: int = 0
    t: str = ""
    a: int = 0
    d: dict[str, int] = {}


def test_one_get_counts_one_read() -> None:
    """Docs: `counters.reads` counts `value` and `get()` reads. One get()
    counts two: AppState.get (src/statekeep/state/_appstate.py) adds one
    and then reads `self.value`, which adds another."""
    with AppState(Plain) as state:
        before = state.stats().counters.reads
        state.get("n")
        assert state.stats().counters.reads - before == 1


# -- 3. memory(): shared with the version before it -----------------------------------------------
class Board(BaseModel):
    cells: dict[str, str] = {}


def test_memory_sharing_counts_what_kept_versions_already_hold() -> None:
    """Guard (the round reported sharing as "with the version before"; the
    docs now say what it measures: bytes shared with the versions kept
    before, which cost nothing more). A dict replaced whole shares almost
    nothing; undoing it makes a version that holds only what version 0
    held: the total does not grow, and sharing rises accordingly."""
    first = {f"k{n}": f"value {n}" for n in range(2_000)}
    with AppState(Board(cells=first)) as state:
        state.set("cells", {f"j{n}": f"other {n}" for n in range(2_000)}, priority=CRITICAL)
        replaced = state.memory()
        assert replaced.sharing < 0.2
        assert state.undo()
        report = state.memory()
        assert report.versions == 3
        assert report.total_bytes < replaced.total_bytes * 1.01
        assert 0.4 < report.sharing < 0.6


# -- 4. a deep model set() takes must be kept --------------------------------------------------
class Outline(BaseModel):
    title: str = ""
    child: Outline | None = None


class Book(BaseModel):
    outline: Outline = Outline()


Outline.model_rebuild()
Book.model_rebuild()


def _outline(depth: int) -> dict[str, Any]:
    deep: dict[str, Any] = {}
    for level in range(depth):
        deep = {"title": str(level), "child": deep}
    return deep


def test_an_outline_set_accepts_is_kept_by_compress() -> None:
    """set() takes an outline (a recursive model) 120 levels deep (it refuses
    only much deeper ones, "nested too deeply to keep"), then compress()
    returns False ("models nested more than 100 deep"). Docs: only a value
    of a type of one's own cannot be kept; a value set() accepts is kept,
    or set() refuses it up front. (_shape._too_deep's limit vs
    _pack._DEEPEST = 100.)"""
    with AppState(Book) as state:
        try:
            state.set("outline", _outline(120), priority=CRITICAL)
        except ValidationError:
            return  # refused up front: fine
        assert state.compress()
        assert state.value.outline.child.child.title == "117"


def test_an_outline_set_accepts_survives_a_restart(tmp_path: Path) -> None:
    """The same outline in a persisted state: set() takes it, then every
    snapshot fails (wait_durable() raises ValidationError, the persist thread
    logs it) and the next run restores the state without it: the change is
    lost, though set() said nothing. (_pack._DEEPEST vs the depth set()
    allows in _shape.)"""
    url = f"sqlite:///{tmp_path / 'book.db'}"
    with statekeep.open(url) as store:
        state = store.state("book", Book, persist_every=3600)
        try:
            state.set("outline", _outline(120), priority=CRITICAL)
        except ValidationError:
            return  # refused up front: fine
        version = state.wait_durable(timeout=10)
    with statekeep.open(url) as store:
        state = store.state("book", Book)
        assert state.version == version
        assert state.value.outline.title == "119"


# -- 5. selectors: a function of a snapshot -------------------------------------------------------
class Listed(BaseModel):
    items: list[int] = []


@pytest.mark.parametrize(
    "selector",
    [
        lambda s: s.items.count(3),
        lambda s: s.items.index(2),
        lambda s: s.items + (0,),  # noqa: RUF005 - concatenation is the point
        lambda s: s.items < (9,),
    ],
    ids=["count", "index", "concatenate", "compare"],
)
def test_a_selector_may_use_what_a_snapshots_list_offers(selector: Callable[[Any], Any]) -> None:
    """Docs: a selector is a function of a snapshot, run on a tracking view
    that records what it reads. A list in a snapshot is a tuple, and a
    selector using its `count`/`index`, `+` or `<` works on state.value but
    subscribe() raises a raw AttributeError/TypeError: ListView
    (src/statekeep/state/_track.py) has none of them. Expected: it runs,
    the list counting as read whole, and hears a change of the list."""
    with AppState(Listed(items=[1, 2, 3])) as state:
        calls: list[tuple[Any, Any]] = []
        state.subscribe(selector, lambda old, new: calls.append((old, new)))
        state.update(lambda d: d.items.insert(0, 3), priority=CRITICAL)
        old, new = selector(state.at(0)), selector(state.value)
        assert calls == ([] if old == new else [(old, new)])


# -- 6. inside a batch: flush() and undo() ------------------------------------------------------
def test_an_update_flush_applies_inside_a_batch_is_not_undone_by_the_batch() -> None:
    """flush() inside `with state.batch()` applies the waiting updates (a LOW
    set of `t`) as a version and returns; at the end of the block the batch's
    draft, made before, replaces the whole root: `t` is back to what it was
    and no subscriber of `t` hears it. (_updates.Finished.apply returns
    finish(draft) whatever the root is now; AppState.batch in
    _appstate.py.)"""
    with AppState(Plain, clock=FakeClock(auto=False)) as state:
        state.set("t", "low", priority=LOW)  # waits for idle time
        with state.batch() as draft:
            draft.n = 5
            with pytest.raises(StateError, match="inside batch"):  # refused (docs/state.md)
                state.flush()
        assert state.value.n == 5
        state.flush()
        assert state.value.t == "low"


def test_an_undo_inside_a_batch_is_not_undone_by_the_batch() -> None:
    """undo() inside a batch returns True and makes a version going back one
    change; the end of the block puts the draft's root (made before the
    undo) back: the undo silently has no effect. Expected: it stands (or
    undo() refuses inside a batch). (_undo.Undoable._step commits while a
    batch is open; _updates.Finished.apply ignores the root.)"""
    with AppState(Plain) as state:
        state.set("t", "typed", priority=CRITICAL)
        with state.batch() as draft:
            draft.n = 1
            with pytest.raises(StateError, match="inside batch"):  # refused (docs/state.md)
                state.undo()
        assert state.value.n == 1 and state.value.t == "typed"


# -- 7. inside a callback: batch() and undo() ---------------------------------------------------
def _batch_a(state: AppState[Any], old: Any, new: Any) -> None:
    with state.batch() as draft:
        draft.a = new


def _undo(state: AppState[Any], old: Any, new: Any) -> None:
    if new == 7:
        state.undo()


@pytest.mark.parametrize("react", [_batch_a, _undo], ids=["batch", "undo"])
def test_a_change_a_callback_makes_is_announced_after_its_version(
    react: Callable[[AppState[Any], Any, Any], None],
) -> None:
    """Docs: callbacks run in version order; a change a callback makes is
    applied once every callback of the current version has run, as the next
    version. set() and update() in a callback are; batch() and undo() are
    committed at once, inside the dispatch: the version they make is
    announced in the middle of the one before, so a later subscriber hears
    them in the wrong order (batch: its last call says a == 0 while the
    state holds 7) or not at all (undo: it never hears n go back to 0).
    (AppState.batch in _appstate.py and Undoable._step in _undo.py commit
    while _dispatching; AppState._apply then resets _dispatching.)"""
    with AppState(Plain) as state:
        state.subscribe("n", lambda old, new: react(state, old, new))
        heard: list[Any] = []
        state.subscribe(lambda s: (s.n, s.a), lambda old, new: heard.append(new))
        state.set("n", 7, priority=CRITICAL)
        assert heard, "the selector heard nothing"
        assert heard[-1] == (state.value.n, state.value.a), heard
        assert heard[0] == (7, 0), heard


# -- 8. at() while another thread compresses ------------------------------------------------------
def test_at_the_current_version_never_gives_an_empty_snapshot() -> None:
    """at(version) decompresses the state (_warm, under the lock), releases
    the lock, then reads the history (_appstate.AppState.at). If another
    thread (the memory guard, or a user's) compresses in between, the history
    holds only the COLD placeholder, and at() returns it: an empty Node with
    no fields, for a version that is kept. Seen in a 3 s loop of at() against
    compress(); made deterministic here by compressing from another thread
    right after at()'s _warm() returns (retried while the memory guard
    holds the lock: compress() never waits)."""
    with AppState(Plain(n=1)) as state:
        warm = state._warm

        def compress_soon() -> None:  # compress() gives up while the memory guard looks
            for _ in range(500):
                if state.compress():
                    return
                time.sleep(0.01)

        def warm_then_compressed_elsewhere() -> Any:
            root = warm()
            other = threading.Thread(target=compress_soon)
            other.start()
            other.join(5)
            return root

        state._warm = warm_then_compressed_elsewhere  # type: ignore[method-assign]
        snapshot = state.at(state.version)
        del state._warm
        assert snapshot.n == 1
