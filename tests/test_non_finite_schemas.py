"""A body is looked at for NaN and infinities only when its model can write
them (statekeep._bodies.may_write_non_finite): every model that can, by
any way pydantic writes a float, still has them refused on every write path,
and a model that cannot still stores the words in its text."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest

import statekeep
from statekeep import Entity, ValidationError


class Inner(pydantic.BaseModel):
    x: float = 0.0


class Bare(Entity, collection="nf_bare"):
    value: float = 0.0


class Optional(Entity, collection="nf_optional"):
    value: float | None = None


class Listed(Entity, collection="nf_listed"):
    value: list[float] = []


class Mapped(Entity, collection="nf_mapped"):
    value: dict[str, float] = {}


class Paired(Entity, collection="nf_paired"):
    value: tuple[int, float] = (0, 0.0)


class Either(Entity, collection="nf_either"):
    value: int | float = 0


class Nested(Entity, collection="nf_nested"):
    value: Inner = Inner()


class Anything(Entity, collection="nf_anything"):
    value: Any = None


class Extra(Entity, collection="nf_extra"):
    model_config = pydantic.ConfigDict(extra="allow")
    name: str = ""


class Serialised(Entity, collection="nf_serialised"):
    """A text field whose serializer writes a number."""

    value: str = ""

    @pydantic.field_serializer("value")
    def _as_number(self, value: str) -> float:
        return float(value) if value else 0.0


def _holding(entity: Entity, value: Any) -> Entity:
    """The entity with its value field set past validation (entities refuse
    NaN when built; a value can still get in: model_construct, a list
    mutated in place, a float field written through __dict__)."""
    entity.__dict__["value"] = value
    return entity


BAD: dict[str, Callable[[], Entity]] = {
    "float": lambda: _holding(Bare(id="bad"), math.nan),
    "optional": lambda: _holding(Optional(id="bad"), math.inf),
    "list": lambda: _holding(Listed(id="bad"), [1.0, -math.inf]),
    "dict": lambda: _holding(Mapped(id="bad"), {"a": math.nan}),
    "tuple": lambda: _holding(Paired(id="bad"), (1, math.nan)),
    "union": lambda: _holding(Either(id="bad"), math.inf),
    "nested": lambda: Nested(id="bad", value=Inner(x=math.nan)),
    "any": lambda: Anything(id="bad", value={"deep": [math.nan]}),
    "extra": lambda: Extra(id="bad", name="x", loose=math.inf),
    "serializer": lambda: Serialised(id="bad", value="nan"),
}


class Words(Entity, collection="nf_words"):
    """No field can hold a float: its body is not looked at for the words."""

    title: str = ""
    tags: list[str] = []
    amount: int = 0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[statekeep.Store]:
    with statekeep.open(f"sqlite:///{tmp_path}/nf.db") as store:
        yield store


@pytest.mark.parametrize("make", BAD.values(), ids=BAD.keys())
def test_a_non_finite_number_is_refused_whatever_field_holds_it(
    store: statekeep.Store, make: Callable[[], Entity]
) -> None:
    cls = type(make())
    writes: dict[str, Callable[[], object]] = {
        "save": lambda: store.save(make()),
        "save_many": lambda: store.save_many([make()]),
        "enqueue": lambda: store.enqueue(make()),
    }
    for name, write in writes.items():
        with pytest.raises(ValidationError, match="infinite or NaN"):
            write()
        assert store.get_many(cls, ["bad"]) == {}, name
    assert store.flush(10)
    assert store.get_many(cls, ["bad"]) == {}


def test_the_words_are_stored_where_no_number_can_be(store: statekeep.Store) -> None:
    words = Words(id="w", title="NaN and -Infinity", tags=["Infinity", "NaN"], amount=3)
    store.enqueue(words).wait_stored(10)
    store.save_many([Words(id="v", title="NaN")])
    assert store.get(Words, "w").title == "NaN and -Infinity"
    assert store.get(Words, "w").tags == ["Infinity", "NaN"]
    assert store.get(Words, "v").title == "NaN"
