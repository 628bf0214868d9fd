"""Property: whatever entities a store holds (any ids, versions from repeated
saves, unicode, numbers, nested lists and dicts, optional and indexed
fields), export then import into a fresh store gives the same entities at
the same versions, and the same answers to `find` on the indexed fields.
The ops functions, in-process, on memory and SQLite."""

from __future__ import annotations

import io
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import Field

import statekeep
from statekeep import Entity, Indexed, ops


class Prop(Entity, collection="cli_prop"):
    label: Annotated[str, Indexed()] = ""
    rank: Annotated[int, Indexed()] = 0
    note: str | None = None
    amount: float = 0.0
    data: dict[str, Any] = Field(default_factory=dict)
    items: list[Any] = Field(default_factory=list)


texts = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=8)
ids = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=12)
floats = st.floats(allow_nan=False, allow_infinity=False)
scalars = (
    st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80) | floats | texts
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)
labels = st.sampled_from(["", "a", "B", "ä", "日本", "a b", "x'y", 'q"'])
payloads = st.fixed_dictionaries(
    {
        "label": labels,
        "rank": st.integers(min_value=-(2**62), max_value=2**62) | st.integers(-2, 2),
        "note": st.none() | texts,
        "amount": floats,
        "data": st.dictionaries(texts, json_values, max_size=3),
        "items": st.lists(json_values, max_size=3),
    }
)
# each entity: its id and the payloads of its saves (1 to 3: versions 1 to 3)
histories = st.dictionaries(ids, st.lists(payloads, min_size=1, max_size=3), max_size=8)

KINDS = {"memory": "memory://", "sqlite": "sqlite:///{folder}/{name}.db"}
PAIRS = [("memory", "memory"), ("sqlite", "memory"), ("memory", "sqlite"), ("sqlite", "sqlite")]


@contextmanager
def opened(kind: str, folder: str, name: str) -> Iterator[statekeep.Store]:
    with statekeep.open(KINDS[kind].format(folder=folder, name=name)) as store:
        yield store


def save_histories(store: statekeep.Store, saved: dict[str, list[dict[str, Any]]]) -> None:
    for id, history in saved.items():
        store.save(Prop(id=id, **history[0]))
        for payload in history[1:]:
            entity = store.get(Prop, id)
            for field, value in payload.items():
                setattr(entity, field, value)
            store.save(entity)


@pytest.mark.parametrize(("source_kind", "target_kind"), PAIRS, ids=["-to-".join(p) for p in PAIRS])
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(saved=histories)
def test_export_then_import_gives_the_same_entities(
    source_kind: str, target_kind: str, saved: dict[str, list[dict[str, Any]]]
) -> None:
    with (
        tempfile.TemporaryDirectory() as folder,
        opened(source_kind, folder, "source") as source,
    ):
        save_histories(source, saved)
        dump = io.StringIO()
        written = ops.export(source, dump)
        with opened(target_kind, folder, "target") as target:
            done = ops.import_dump(target, io.StringIO(dump.getvalue()))
            assert done.complete
            assert done.rows == len(saved)
            assert {k: (v.rows, v.hex) for k, v in done.sums.items()} == {
                k: (v.rows, v.hex) for k, v in written.sums.items()
            }
            for id, history in saved.items():
                mine, theirs = source.get(Prop, id), target.get(Prop, id)
                assert theirs == mine
                assert theirs.version == mine.version == len(history)
            for label in {h[-1]["label"] for h in saved.values()} | {"never"}:
                assert sorted(e.id for e in target.find(Prop, label=label)) == sorted(
                    e.id for e in source.find(Prop, label=label)
                )
            for rank in {h[-1]["rank"] for h in saved.values()}:
                assert sorted(e.id for e in target.find(Prop, rank=rank)) == sorted(
                    e.id for e in source.find(Prop, rank=rank)
                )
            again = ops.export(target, io.StringIO())
            assert {k: v.hex for k, v in again.sums.items()} == {
                k: v.hex for k, v in written.sums.items()
            }
