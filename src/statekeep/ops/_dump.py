"""The dump format of `statekeep export` / `import`: JSON Lines.

    line 1      {"statekeep_dump": 1, "statekeep": version, "created": time,
                 "source": {"backend": ..., ...},
                 "collections": [{"name", "indexes": [[name, kind, default]], "rows"}]}
    each row    ["collection", "id", version, {the entity's stored body}]
    last line   {"statekeep_dump_end": 1,
                 "collections": {"name": {"rows": n, "checksum": hex}}}

A row line holds the body exactly as the database gave it, so a dump costs
no re-encoding, and an import stores that text back. The header's row counts
were read before the rows (a guide for progress bars); the trailer's are what
the dump holds. A dump without its trailer was cut short: an import stores
the rows it has and says so (run it again with --resume once it is whole).

A checksum sums a hash of every row's (id, version, body as canonical JSON:
keys sorted, integral numbers as integers), so it does not depend on row
order, nor on how a database spells the same JSON (PostgreSQL's jsonb
reorders keys and writes 1e5 as 100000): an export from SQLite and the
same rows read back from PostgreSQL have one checksum.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..backends.base import CollectionSpec, Index
from ..errors import DumpError

FORMAT = 1
HEADER_KEY = "statekeep_dump"
END_KEY = "statekeep_dump_end"
_KINDS = ("text", "integer", "real", "time", "any")
_MODULUS = 2**128


def _number(text: str) -> float | int:
    """A JSON number as one value however it is spelled: 1.0, 1e0 and 1 are 1;
    1e20 and 100000000000000000000 are 1e20 (beyond 2**53 whole numbers are
    compared as doubles, as SQLite and JavaScript do)."""
    value = float(text)
    if value.is_integer() and abs(value) < 2**53:
        return int(value)
    if math.isinf(value):  # beyond any double: an integer stays itself
        try:
            return int(text)
        except ValueError:
            return value
    return value


def canonical(body: str) -> str:
    """The body as one text for equal JSON, however a database spelled it."""
    return json.dumps(
        json.loads(body, parse_float=_number, parse_int=_number),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )


class Checksum:
    """The order-free checksum of a collection's rows (see the module docstring)."""

    __slots__ = ("_sum", "rows")

    def __init__(self) -> None:
        self.rows = 0
        self._sum = 0

    def add(self, id: str, version: int, body: str) -> None:
        text = f"{id}\x00{version}\x00{canonical(body)}".encode("utf-8", "surrogatepass")
        digest = hashlib.blake2b(text, digest_size=16).digest()
        self._sum = (self._sum + int.from_bytes(digest, "big")) % _MODULUS
        self.rows += 1

    @property
    def hex(self) -> str:
        return f"{self._sum:032x}"


@dataclass(frozen=True, slots=True)
class Header:
    collections: dict[str, CollectionSpec]
    rows: dict[str, int]
    source: dict[str, Any]
    created: str


def spec_json(spec: CollectionSpec) -> list[list[Any]]:
    return [[index.name, index.kind, index.default] for index in spec.indexes]


def header_line(specs: list[tuple[CollectionSpec, int]], source: dict[str, Any]) -> str:
    from .. import __version__

    return json.dumps(
        {
            HEADER_KEY: FORMAT,
            "statekeep": __version__,
            "created": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "source": source,
            "collections": [
                {"name": spec.name, "indexes": spec_json(spec), "rows": rows}
                for spec, rows in specs
            ],
        },
        ensure_ascii=False,
    )


def row_line(collection: str, id: str, version: int, body: str) -> str:
    prefix = json.dumps([collection, id, version], ensure_ascii=False)[:-1]
    return f"{prefix}, {body}]"


def end_line(sums: dict[str, Checksum]) -> str:
    return json.dumps(
        {
            END_KEY: FORMAT,
            "collections": {
                name: {"rows": total.rows, "checksum": total.hex} for name, total in sums.items()
            },
        },
        ensure_ascii=False,
    )


def read_header(line: str) -> Header:
    """The header (line 1); DumpError if line is not one."""
    try:
        data = json.loads(line)
    except ValueError:
        data = None
    if not isinstance(data, dict) or HEADER_KEY not in data:
        raise DumpError("not a statekeep dump: the first line is not its header", 1)
    if data[HEADER_KEY] != FORMAT:
        raise DumpError(
            f"dump format {data[HEADER_KEY]!r}; this statekeep reads format {FORMAT}", 1
        )
    specs: dict[str, CollectionSpec] = {}
    rows: dict[str, int] = {}
    try:
        for entry in data["collections"]:
            name = entry["name"]
            indexes = tuple(_index(item) for item in entry["indexes"])
            if not isinstance(name, str) or not name or name in specs:
                raise DumpError(f"a bad or repeated collection name {name!r}", 1)
            specs[name] = CollectionSpec(name, indexes)
            rows[name] = int(entry.get("rows", 0))
        source = dict(data.get("source") or {})
        created = str(data.get("created", ""))
    except (KeyError, TypeError, ValueError) as exc:
        raise DumpError(f"a malformed header ({type(exc).__name__}: {exc})", 1) from exc
    return Header(specs, rows, source, created)


def _index(item: Any) -> Index:
    name, kind, default = item
    if not isinstance(name, str) or kind not in _KINDS:
        raise ValueError(f"a bad index {item!r}")
    if default is not None and not isinstance(default, bool | int | float | str):
        raise ValueError(f"a bad index default {item!r}")
    return Index(name, kind, default)


def read_end(data: dict[str, Any], number: int) -> dict[str, tuple[int, str]]:
    """The trailer's {collection: (rows, checksum)}."""
    try:
        return {
            str(name): (int(entry["rows"]), str(entry["checksum"]))
            for name, entry in data["collections"].items()
        }
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DumpError(f"a malformed end line ({type(exc).__name__}: {exc})", number) from exc


def read_row(line: str, number: int) -> tuple[str, str, int, str] | dict[str, Any]:
    """A row line as (collection, id, version, body text), or the trailer as
    its parsed dict; DumpError for anything else."""
    try:
        data = json.loads(line)
    except ValueError as exc:
        raise DumpError(f"not JSON ({exc}); the dump is corrupted here", number) from exc
    if isinstance(data, dict):
        if END_KEY in data:
            return data
        raise DumpError("an object where a row was expected", number)
    if not (
        isinstance(data, list)
        and len(data) == 4
        and isinstance(data[0], str)
        and isinstance(data[1], str)
        and data[1]
        and type(data[2]) is int
        and data[2] >= 1
        and isinstance(data[3], dict)
    ):
        raise DumpError("a row is [collection, id, version >= 1, {body}]", number)
    collection, id, version, body = data
    if body.get("id") != id or body.get("version") != version:
        raise DumpError(f"the body of {collection}/{id} names another id or version", number)
    stripped = line.rstrip("\r\n")
    prefix = json.dumps([collection, id, version], ensure_ascii=False)[:-1] + ", "
    if stripped.startswith(prefix) and stripped.endswith("]"):
        text = stripped[len(prefix) : -1]
    else:  # written by another tool: the same JSON, spelled anew
        text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    return collection, id, version, text
