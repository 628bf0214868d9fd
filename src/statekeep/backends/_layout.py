"""Which indexed columns a table maintains: the column registry and row stamps.

Models change between deploys, and during a rolling deploy an old and a new
version write the same table at once. An indexed column is only worth reading
if every row's value in it is right, whoever wrote the row. So the SQL
backends keep, beside the data,

- a registry (table `statekeep_columns`): for each collection, the indexed
  columns that are maintained, with their kind and default. It only grows on
  its own: a field that loses `Indexed()` stays maintained (a model that
  indexes it again finds the column right), a new field is added, a field
  whose kind or default changed is rebuilt;
- a stamp on every row (column `statekeep_layout`): the `stamp()` of the
  column set its writer maintained;
- a trigger that recomputes every registered column from the row's body when
  a row's stamp is not the registry's. A writer whose model indexes exactly
  the registered columns stamps its rows with the registry's stamp and the
  trigger does nothing; any other writer (an older version, a model that
  dropped an index, a SQL tool) still leaves every registered column right.

A column is read by queries only once it is registered and filled (`ready`):
rows stored before it existed are filled from their bodies in batches that do
not hold other writers up for long.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .base import Index, IndexKind

REGISTRY = "statekeep_columns"
STAMP = "statekeep_layout"
KINDS: tuple[IndexKind, ...] = ("text", "integer", "real", "time", "any")
# the format of statekeep's own tables (registry, stamps, outbox): Catalog.describe()["layout"]
LAYOUT_VERSION = 1
# prefixes of the names of tables (collections) that are statekeep's own (the
# outbox, the registry, subscription checkpoints, write-behind notes) or SQLite's;
# no entity class may name its collection so (_schema.py)
INTERNAL = ("statekeep_", "sqlite_")


def internal(name: str) -> bool:
    """Whether a table or collection is statekeep's own (or SQLite's): no
    collection of the application's, so Catalog.collections() leaves it out."""
    return name.lower().startswith(INTERNAL)


def stamp(indexes: Iterable[Index]) -> int:
    """The same number for the same set of columns (names, kinds and
    defaults), in every process; a positive 31-bit integer."""
    canonical = json.dumps(sorted(([i.name, i.kind, i.default] for i in indexes), key=str))
    return zlib.crc32(canonical.encode()) & 0x7FFFFFFF


def registered(rows: Iterable[tuple[str, str, str, object]]) -> dict[str, tuple[Index, bool]]:
    """The registry's rows (name, kind, default as JSON, ready) as Indexes by name."""
    found: dict[str, tuple[Index, bool]] = {}
    for name, kind, default, ready in rows:
        if kind in KINDS:
            found[name] = (Index(name, kind, json.loads(default)), bool(ready))
    return found


@dataclass(frozen=True, slots=True)
class Plan:
    """What ensure_collection must do so that a spec's columns can be read.

    build: columns to (re)make from the bodies (new, retyped, or present but
    never registered, so of unknown freshness); fill: registered columns that
    are not filled yet; columns: every registered column afterwards."""

    build: tuple[Index, ...]
    fill: tuple[Index, ...]
    columns: tuple[Index, ...]

    @property
    def needed(self) -> bool:
        return bool(self.build or self.fill)


def plan(
    indexes: Iterable[Index],
    registry: Mapping[str, tuple[Index, bool]],
    columns: set[str],
) -> Plan:
    """Compares a spec's indexes with the registry and the table's columns."""
    build, fill = [], []
    for index in indexes:
        known = registry.get(index.name)
        if known is None or known[0] != index or index.name not in columns:
            build.append(index)
        elif not known[1]:
            fill.append(index)
    rebuilt = {index.name for index in build}
    kept = [known for name, (known, _) in registry.items() if name not in rebuilt]
    return Plan(tuple(build), tuple(fill), tuple(sorted([*kept, *build], key=lambda i: i.name)))


def default_json(index: Index) -> str:
    return json.dumps(index.default)
