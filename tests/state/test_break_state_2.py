"""Hostile-user probes of statekeep.state, second round: the packed snapshot
format (compress(), persisted snapshots, reading rows back), models that
change between runs, constrained containers and the docs' examples.

Each test asserts what a demanding user expects, so it fails where the bug
is: a value set() accepts survives compress() and a restart (or set()
refuses it up front), errors are typed (statekeep.errors), a row from the
database is read back as a state of its model or refused with a
ValidationError, and reading it never changes anything in the process.
"""

from __future__ import annotations

import contextlib
import datetime
import enum
import fractions
import ipaddress
import os
import pickle
import re
import subprocess
import sys
import zoneinfo
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import msgpack  # type: ignore[import-untyped]
import pydantic
import pytest
from pydantic import BaseModel, Field, create_model

import statekeep
from statekeep.errors import (
    StatekeepError,
    StatePathError,
    ValidationError,
)
from statekeep.state import AppState, Priority, StateSnapshot
from statekeep.state._snapshot import full_id

from ._models import planted

CRITICAL = Priority.CRITICAL
ROOT = Path(__file__).resolve().parent.parent.parent


def _url(tmp_path: Path, name: str = "state.db") -> str:
    return f"sqlite:///{tmp_path / name}"


def _round_trips(state: AppState[Any]) -> None:
    """compress() keeps the state, and reading it back gives the same value."""
    before = state.value
    assert state.compress(), "compress() refused a value set() accepted"
    assert state.value == before


# -- 1. values a pydantic model holds that a snapshot cannot keep ----------------------------------
class When(BaseModel):
    at: datetime.datetime = datetime.datetime(2020, 1, 1)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("2024-01-01T10:00:00+01:00", id="iso-offset-pydantic-TzInfo"),
        pytest.param(
            datetime.datetime(2024, 1, 1, tzinfo=zoneinfo.ZoneInfo("Europe/Paris")),
            id="zoneinfo",
        ),
    ],
)
def test_aware_datetime_survives_persist_and_reopen(tmp_path: Path, value: Any) -> None:
    """A datetime with a tzinfo (the one pydantic makes of an ISO string with
    an offset, or a ZoneInfo) is refused by the packer: compress() returns
    False and every snapshot of a persisted state fails, so nothing is kept."""
    url = _url(tmp_path)
    with statekeep.open(url) as store:
        state = store.state("when", When, persist_every=3600)
        state.set("at", value, priority=CRITICAL)
        kept = state.value
        assert state.wait_durable(5) == state.version
    with statekeep.open(url) as store:
        assert store.state("when", When).value == kept


@pytest.mark.parametrize(
    ("annotation", "value"),
    [
        pytest.param(pydantic.HttpUrl, "https://example.org/a", id="HttpUrl"),
        pytest.param(pydantic.SecretStr, "hunter2", id="SecretStr"),
        pytest.param(pydantic.ByteSize, "1KB", id="ByteSize"),
        pytest.param(ipaddress.IPv4Interface, "10.0.0.1/24", id="IPv4Interface"),
        pytest.param(fractions.Fraction, "1/3", id="Fraction"),
        pytest.param(re.Pattern, "a+b", id="Pattern"),
    ],
)
def test_pydantic_field_types_round_trip_or_set_refuses(annotation: Any, value: Any) -> None:
    """Declared fields of types pydantic validates (not a class of the user's
    own in an Any field): set() takes the value, then compress() (and every
    persisted snapshot) refuses it, so the state is never kept."""
    model = create_model("Typed", v=(Optional[annotation], None))  # noqa: UP045
    state: AppState[Any] = AppState(model)
    try:
        state.set("v", value, priority=CRITICAL)
    except ValidationError:
        return  # refused up front: fine
    _round_trips(state)


def _local_enum_model() -> type[BaseModel]:
    class Mode(enum.Enum):
        A = "a"
        B = "b"

    class Local(BaseModel):
        mode: Mode = Mode.A
        n: int = 0

    return Local


def test_model_with_a_local_enum_never_raises_a_raw_error(tmp_path: Path) -> None:
    """An enum defined in a function (beside its model): pack() lets pickle's
    AttributeError ("Can't pickle local object") out of compress(),
    wait_durable() and even store.close()."""
    model = _local_enum_model()
    state: AppState[Any] = AppState(model)
    try:
        kept = state.compress()  # True (and it round-trips) or False: never a raw error
    except StatekeepError:
        kept = False
    if kept:
        assert state.value.mode.value == "a"
    store = statekeep.open(_url(tmp_path))
    try:
        persisted = store.state("local", model, persist_every=3600)
        persisted.set("mode", "b", priority=CRITICAL)
        with contextlib.suppress(ValidationError):  # typed: documented for such a value
            persisted.wait_durable(5)
    finally:
        store.close()  # must not raise AttributeError


def _local_model() -> type[BaseModel]:
    class Pin(BaseModel):
        z: int = 0

    return Pin


class Loose(BaseModel):
    anything: Any = None


def test_local_model_in_any_field_comes_back_as_the_model() -> None:
    """Docs: models inside Any fields come back as they were set. A model
    class defined in a function cannot be found by name, so reading the
    snapshot falls back to plain data: the whole state is read inexactly and
    the model becomes an immutables.Map."""
    pin = _local_model()(z=4)
    state = AppState(Loose)
    state.set("anything", pin, priority=CRITICAL)
    _round_trips(state)
    assert type(state.value.anything)._model is type(pin)


def _item_model(kind: type) -> type[BaseModel]:
    class Item(BaseModel):
        v: kind | None = None  # type: ignore[valid-type]

    return Item


IntItem, StrItem = _item_model(int), _item_model(str)


class TwoItems(BaseModel):
    a: IntItem = IntItem(v=1)  # type: ignore[valid-type]
    b: StrItem = StrItem(v="x")  # type: ignore[valid-type]


def test_two_local_models_with_one_qualname_keep_their_classes() -> None:
    """Two models made by one factory share module:qualname; the packed tree
    names a model by it, so after compress() field b's Node is IntItem's:
    the snapshot no longer equals the one compressed."""
    state = AppState(TwoItems)
    state.set("b", {"v": "y"}, priority=CRITICAL)
    _round_trips(state)
    assert type(state.value.b)._model is StrItem


# -- 2. the model changed between runs -------------------------------------------------------------
V1 = create_model("Record", n=(int, 0), old=(str, ""), pad=(list[str], []))
REMOVED = create_model("Record", n=(int, 0), pad=(list[str], []))
RENAMED = create_model("Record", n=(int, 0), new=(str, Field("", alias="old")), pad=(list[str], []))


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        pytest.param(REMOVED, {"n": 0, "pad": []}, id="field-removed"),
        pytest.param(RENAMED, {"n": 0, "new": "changed", "pad": []}, id="renamed-with-alias"),
    ],
)
def test_delta_of_a_field_removed_or_renamed_since_restores(
    tmp_path: Path, model: type[BaseModel], expected: dict[str, Any]
) -> None:
    """A full snapshot of a field since removed (or renamed with an alias)
    restores, but a delta that changed that field stops the whole restore:
    its path is resolved against the new model (StatePathError ->
    ValidationError "Record has no field 'old'")."""
    url = _url(tmp_path)
    with statekeep.open(url) as store:
        state = store.state("record", V1, persist_every=3600)
        state.set("pad", ["x" * 40] * 200, priority=CRITICAL)
        state.wait_durable(5)  # a full snapshot
        state.set("old", "changed", priority=CRITICAL)
        state.wait_durable(5)  # a delta of "old"
        assert state.stats().extra["persisted"].startswith("1 full + 1 delta")
    expected["pad"] = ["x" * 40] * 200
    with statekeep.open(url) as store:
        restored = store.state("record", model)
        assert restored.model().model_dump() == expected


# -- 3. rows from the database that are not what a snapshot packs ----------------------------------
class Plain(BaseModel):
    n: int = 0
    label: str = ""


def _plant(tmp_path: Path, model: type[BaseModel], raw: bytes, name: str = "s") -> str:
    """A new database holding one full snapshot of `name` whose packed bytes
    (before zstd) are raw."""
    return planted(tmp_path, raw, name)


def _headed(model: type[BaseModel], body: bytes, table: list[Any] | None = None) -> bytes:
    """body (msgpack) headed as pack() heads it, with the model's fingerprint."""
    fingerprint = AppState(model).schema.fingerprint
    return bytes(msgpack.packb([fingerprint, table or [], body], use_bin_type=True))


def _ext(code: int, value: Any) -> msgpack.ExtType:
    return msgpack.ExtType(code, msgpack.packb(value, use_bin_type=True))


def _body(value: Any) -> bytes:
    return bytes(msgpack.packb(value, use_bin_type=True))


PLAIN_ROW = [0, f"{__name__}:Plain", ["n", "label"]]
CORRUPT = [
    pytest.param(b"\xc1\xff garbage", id="not-msgpack"),
    pytest.param(_headed(Plain, b"\xdb\xff\xff\xff\xff"), id="claims-a-huge-str"),
    pytest.param(_headed(Plain, _body(_ext(6, "abc"))), id="Decimal-garbage"),
    pytest.param(_headed(Plain, _body(_ext(5, [10**9, 0, 0]))), id="timedelta-overflow"),
    pytest.param(_headed(Plain, _body(_ext(99, 1))), id="unknown-extension"),
    pytest.param(_headed(Plain, _body(_ext(10, ["os.system", "true"]))), id="unknown-text-type"),
    pytest.param(pickle.dumps(("fingerprint", [], b"")), id="a-pickle"),
]


@pytest.mark.parametrize("raw", CORRUPT)
def test_corrupt_row_is_a_validation_error(tmp_path: Path, raw: bytes) -> None:
    url = _plant(tmp_path, Plain, raw)
    with statekeep.open(url) as store, pytest.raises(ValidationError):
        store.state("s", Plain)


def test_a_row_that_is_zstd_claiming_terabytes_is_a_validation_error(tmp_path: Path) -> None:
    url = _plant(tmp_path, Plain, b"")
    with statekeep.open(url) as store:
        row = store.get(StateSnapshot, full_id("s"))
        frame = bytearray(row.data)
        store.save(row.model_copy(update={"data": bytes(frame[:4]) + b"\xe4" + b"\xff" * 8}))
    with statekeep.open(url) as store, pytest.raises(ValidationError):
        store.state("s", Plain)


class Hue(enum.Enum):
    RED = 1
    GREEN = 2


class Painted(BaseModel):
    hue: Hue = Hue.RED


def test_a_pickle_in_a_row_runs_nothing(tmp_path: Path) -> None:
    """A row holding a pickle that would call os.system: refused, not run."""
    marker = tmp_path / "ran"
    hostile = pickle.dumps(_System(f"touch {marker}"))
    url = _plant(tmp_path, Painted, hostile)
    with statekeep.open(url) as store, pytest.raises(ValidationError):
        store.state("s", Painted)
    assert not marker.exists() and Hue.RED.value == 1


class _System:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (self.command,))


def test_an_enum_member_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    painted_row = [0, f"{__name__}:Painted", ["hue"]]
    body = _body(_ext(1, [0, _ext(2, [0, 99])]))
    url = _plant(tmp_path, Painted, _headed(Painted, body, [painted_row]))
    with statekeep.open(url) as store, pytest.raises(ValidationError):
        store.state("s", Painted)
    assert [m.value for m in Hue] == [1, 2]


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(_headed(Plain, _body(5)), id="root-is-an-int"),
        pytest.param(
            _headed(Plain, _body(_ext(1, [0, 5])), [PLAIN_ROW]), id="node-missing-a-value"
        ),
        pytest.param(_headed(Plain, _body(_ext(1, [7, 5, "x"])), [PLAIN_ROW]), id="no-such-row"),
    ],
)
def test_row_with_the_fingerprint_but_not_the_shape_is_refused(tmp_path: Path, raw: bytes) -> None:
    """A row headed by the right fingerprint whose tree is not the model's:
    refused on open (not a state that fails on every read)."""
    url = _plant(tmp_path, Plain, raw)
    with statekeep.open(url) as store, pytest.raises(ValidationError):
        store.state("s", Plain)


# -- 4. models and values AppState cannot take -----------------------------------------------------
class NoneDefaults(BaseModel):
    mapping: dict[str, int] = None  # type: ignore[assignment]  # pydantic does not check defaults
    items: list[int] = None  # type: ignore[assignment]


def test_container_field_with_a_none_default_is_not_a_raw_type_error() -> None:
    """`dict[str, int] = None` (pydantic takes it: defaults are not validated):
    AppState(Model) died with TypeError: 'NoneType' object is not iterable.
    Now a ValidationError that names the field and the fix."""
    with pytest.raises(
        ValidationError, match=r"NoneDefaults\.mapping: None where a dict\[str, int\]"
    ):
        AppState(NoneDefaults)
    state = AppState(NoneDefaults(mapping={"a": 1}, items=[]))  # given: fine
    assert dict(state.value.mapping) == {"a": 1} and state.value.items == ()


def test_deeply_nested_value_in_any_field_is_a_validation_error() -> None:
    """A 1,000-deep list in an Any field: freeze_any recurses and set()
    raises a raw RecursionError (a typed model field refuses the same depth
    with a ValidationError)."""
    deep: Any = 0
    for _ in range(1000):
        deep = [deep]
    state = AppState(Loose)
    with pytest.raises(ValidationError):
        state.set("anything", deep, priority=CRITICAL)
    assert state.value.anything is None and state.version == 0


# -- 5. constrained containers ---------------------------------------------------------------------
class Capped(BaseModel):
    maybe: Optional[list[int]] = Field(None, max_length=2)  # noqa: UP045


def test_constrained_optional_list_declared_with_field_has_parts() -> None:
    """Docs: a constrained list's parts are reached by paths like any other's.
    `Optional[list[int]] = Field(None, max_length=2)` (pydantic's usual
    spelling) compiles to a leaf: "maybe.0 is a Annotated: it has no parts"."""
    state = AppState(Capped)
    state.set("maybe", [1, 2], priority=CRITICAL)
    state.set("maybe.0", 7, priority=CRITICAL)
    assert state.value.maybe == (7, 2)
    state.delete("maybe.1", priority=CRITICAL)
    assert state.value.maybe == (7,)
    with pytest.raises(StatePathError):
        state.set("maybe.5", 1, priority=CRITICAL)


# -- 6. the docs' examples -------------------------------------------------------------------------
def _readme_state_block() -> str:
    blocks = re.findall(
        r"^```python\n(.*?)^```", (ROOT / "README.md").read_text(), re.MULTILINE | re.DOTALL
    )
    found = [block for block in blocks if "store.state(" in block]
    assert found, "README has an example of store.state()"
    return "import statekeep\n" + str(found[0])


def test_readme_state_example_runs_again_after_a_restart(tmp_path: Path) -> None:
    """The README's store.state() example says the state is "restored from
    the store": run a second time (a restart), it restores transport
    "recording", so setting it again announces nothing and its own
    `assert heard == ["recording"]` fails."""
    script = tmp_path / "example.py"
    script.write_text(_readme_state_block())
    run: Callable[[], subprocess.CompletedProcess[str]] = lambda: subprocess.run(  # noqa: E731
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    first = run()
    assert first.returncode == 0, first.stderr[-2000:]
    again = run()
    assert again.returncode == 0, again.stderr[-2000:]
