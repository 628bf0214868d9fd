"""Break-today attacks on enqueue's serialisation (EntityInfo.next_row and
_may_write_non_finite, commits cf6b6e5..e23cc17) and on what enqueue()
accepts: every way a NaN, an infinity or a body pydantic warns about gets
into JSON must be refused alike by save(), save_many() and enqueue(), or
stored and read back. Each test here fails on e23cc17; see the docstrings
for the defect each shows (the pre-existing ones say so)."""

from __future__ import annotations

import dataclasses
import decimal
import math
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import pydantic
import pytest
from pydantic import WrapSerializer, computed_field

import statekeep
from statekeep import Entity
from statekeep.errors import ConfigurationError, StatekeepError, ValidationError


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "break.db"


@pytest.fixture
def store(db: Path) -> Iterator[statekeep.Store]:
    with statekeep.open(f"sqlite:///{db}") as store:
        yield store


def _bodies(db: Path, collection: str) -> list[str]:
    """What the SQLite file holds for the collection (read past the store)."""
    conn = sqlite3.connect(db)
    try:
        return [row[0] for row in conn.execute(f"SELECT body FROM {collection}")]
    except sqlite3.OperationalError:  # no such table: nothing was stored
        return []
    finally:
        conn.close()


def _writes(store: statekeep.Store, make: Callable[[], Entity]) -> dict[str, Callable[[], Any]]:
    return {
        "save": lambda: store.save(make()),
        "save_many": lambda: store.save_many([make()]),
        "enqueue": lambda: store.enqueue(make()).wait_stored(10),
    }


# -- 1. a nested model's computed field (today's regression) ------------------


class Gauge(pydantic.BaseModel):
    """A nested model that writes NaN as a bare token, through a computed field."""

    model_config = pydantic.ConfigDict(ser_json_inf_nan="constants")
    label: str = ""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ratio(self) -> float:
        return math.nan


class Panel(Entity, collection="brk_panel"):
    """No float field of its own: _may_write_non_finite said False, since it
    skipped every "computed_fields" key of the core schema, though only the
    entity's own computed fields are left out of its body."""

    gauge: Gauge = Gauge()


@pydantic.dataclasses.dataclass(config=pydantic.ConfigDict(ser_json_inf_nan="constants"))
class Dial:
    label: str = ""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ratio(self) -> float:
        return math.inf


class Board(Entity, collection="brk_board"):
    dial: Dial = dataclasses.field(default_factory=Dial)


@pytest.mark.parametrize(
    ("cls", "make"),
    [(Panel, lambda: Panel(id="p")), (Board, lambda: Board(id="p"))],
    ids=["nested-model", "nested-dataclass"],
)
@pytest.mark.parametrize("how", ["save", "save_many", "enqueue"])
def test_nan_from_a_nested_computed_field_is_refused_on_every_path(
    store: statekeep.Store, db: Path, cls: type[Entity], make: Callable[[], Entity], how: str
) -> None:
    """save() refuses the body {"gauge":{"label":"","ratio":NaN}}; on e23cc17
    save_many() and enqueue() store it (the bare NaN lands in the SQLite
    file; on PostgreSQL the enqueued write is dead-lettered at flush time
    instead of refused by enqueue). Cause: src/statekeep/_schema.py,
    _may_write_non_finite skips key "computed_fields" at every depth, so
    _writes_non_finite is False and next_row()/advance() never look."""
    body = make().model_dump_json()
    assert "NaN" in body or "Infinity" in body  # pydantic does write it
    with pytest.raises(ValidationError, match="infinite or NaN"):
        _writes(store, make)[how]()
    store.flush(10)
    assert _bodies(db, cls.__statekeep__.spec.name) == []


# -- 2. enqueue of a class that is no entity class (today's regression) -------


@pytest.mark.parametrize("engine_first", [False, True], ids=["fresh", "engine-running"])
def test_enqueue_of_the_bare_entity_class_raises_a_statekeep_error(
    store: statekeep.Store, engine_first: bool
) -> None:
    """save(Entity()) raises ConfigurationError ("expected an Entity
    subclass"); on e23cc17 enqueue(Entity()) raises a bare
    AttributeError: __statekeep__. Cause: src/statekeep/_enqueue.py,
    enqueue_entity's hot path `type(entity).__statekeep__` (replacing
    core.entity_info(), which used getattr(..., None) and raised
    ConfigurationError)."""
    if engine_first:
        store.enqueue(Price(id="warm")).wait_stored(10)
    with pytest.raises(ConfigurationError):
        store.save(Entity(id="x"))
    with pytest.raises(StatekeepError):
        store.enqueue(Entity(id="x"))


# -- 3. Decimal NaN / infinity (pre-existing, not today's) ---------------------


class Price(Entity, collection="brk_price"):
    amount: decimal.Decimal = decimal.Decimal(0)


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "sNaN"])
@pytest.mark.parametrize("how", ["save", "save_many", "enqueue"])
def test_a_non_finite_decimal_is_refused_or_read_back(
    store: statekeep.Store, value: str, how: str
) -> None:
    """A Decimal field set past validation (entities refuse NaN when built)
    to Decimal('NaN') is written as the JSON string "NaN": every path stores
    it, and get() then fails ("does not fit Price": allow_inf_nan=False on
    read). Pre-existing (7e4e23f does the same): the NaN check
    (_row / _has_non_finite) looks only for bare tokens, and
    _holds_non_finite only at floats."""

    def make() -> Entity:
        price = Price(id="d")
        price.__dict__["amount"] = decimal.Decimal(value)
        return price

    try:
        _writes(store, make)[how]()
    except ValidationError:
        assert store.get_many(Price, ["d"]) == {}
        return
    store.get(Price, "d")  # stored: it must read back


# -- 4. serializer warnings inside a user's serializer (pre-existing) ---------


def _through(value: Any, handler: pydantic.SerializerFunctionWrapHandler) -> Any:
    return handler(value)


class Counted(Entity, collection="brk_counted"):
    amount: Annotated[int, WrapSerializer(_through)] = 0


class Inner(pydantic.BaseModel):
    count: int = 0


class Wrapped(Entity, collection="brk_wrapped"):
    inner: Inner = Inner()

    @pydantic.model_serializer(mode="wrap")
    def _whole(self, handler: pydantic.SerializerFunctionWrapHandler) -> Any:
        return handler(self)


def _counted() -> Entity:
    entity = Counted(id="w")
    entity.__dict__["amount"] = "not a number"
    return entity


def _wrapped() -> Entity:
    inner = Inner.model_construct(count="not a number")  # type: ignore[arg-type]
    return Wrapped(id="w", inner=inner)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(
    ("cls", "make"), [(Counted, _counted), (Wrapped, _wrapped)], ids=["wrap-field", "wrap-model"]
)
@pytest.mark.parametrize("how", ["save", "save_many", "enqueue"])
def test_a_body_pydantic_warns_about_inside_a_wrap_serializer_is_refused(
    store: statekeep.Store, cls: type[Entity], make: Callable[[], Entity], how: str
) -> None:
    """An int field holding a str (set past validation) is refused by every
    path when serialised directly, but behind a WrapSerializer /
    model_serializer(mode="wrap") the handler issues pydantic's warning from
    the user's frame, not statekeep._schema's: the strict-warnings filter
    (module pattern statekeep._schema) does not match and the registry token
    stays intact, so save(), save_many() and enqueue() all store
    {"amount":"not a number"}, which get() cannot read back. Pre-existing
    (7e4e23f does the same): src/statekeep/_strict.py keys its filter and its
    registry token on the calling module only."""
    try:
        _writes(store, make)[how]()
    except ValidationError:
        assert store.get_many(cls, ["w"]) == {}
        return
    store.get(cls, "w")  # stored: it must read back


# -- guard: warnings filters changed from another thread ----------------------


class Plain(Entity, collection="brk_plain"):
    amount: int = 0


def test_filters_changed_from_another_thread_never_let_a_warned_body_in(
    store: statekeep.Store, db: Path
) -> None:
    """Threads enqueue and save bodies pydantic warns about (an int field
    holding text, or a NaN) while another thread flips warnings filters
    (simplefilter("ignore"), catch_warnings(), resetwarnings-like rewrites):
    every one is refused with ValidationError, none is stored."""
    import threading
    import warnings

    stop = threading.Event()
    leaked: list[str] = []

    def flip() -> None:
        while not stop.is_set():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
            with warnings.catch_warnings(record=True):
                warnings.simplefilter("always")
            saved = warnings.filters[:]
            warnings.filters[:] = [("ignore", None, Warning, None, 0)]  # type: ignore[index]
            warnings.filters[:] = saved  # type: ignore[index]

    def write(k: int) -> None:
        for i in range(3000):
            plain = Plain(id=f"{k}-{i}")
            plain.__dict__["amount"] = "text" if i % 2 else math.nan
            try:
                if i % 3 == 0:
                    store.save(plain)
                else:
                    store.enqueue(plain)
                leaked.append(plain.id)
            except ValidationError:
                pass

    flipper = threading.Thread(target=flip)
    writers = [threading.Thread(target=write, args=(k,)) for k in range(4)]
    flipper.start()
    try:
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join(30)
    finally:
        stop.set()
        flipper.join()
    store.flush(10)
    assert leaked == []
    assert _bodies(db, "brk_plain") == []
