"""The dump format of `statekeep export` / `import`: JSON Lines.

    line 1      {"statekeep_dump": 1, "statekeep": version, "created": time,
                 "source": {"backend": ..., ...},
                 "collections": [{"name", "indexes": [[name, kind, default]], "rows"}]}
    each row    ["collection","id",version,{the entity's stored body}]
    last line   {"statekeep_dump_end": 1,
                 "collections": {"name": {"rows": n, "checksum": hex}}}

A row line holds the body exactly as the database gave it, so a dump costs
no re-encoding, and an import stores that text back. The header's row counts
were read before the rows (a guide for progress bars); the trailer's are what
the dump holds. A dump without its trailer was cut short: an import stores
the rows it has and says so (run it again with --resume once it is whole).

The end line's checksum of a collection is a digest of its row lines as
written (the sum of a blake2b hash of each, so their order does not count):
an import computes it over the lines it reads, so it tells whether the dump
is the one written, byte for byte, at about a microsecond a line. It is not
a checksum of the data apart from its spelling: an export of the same rows
from PostgreSQL, whose jsonb orders keys its own way, has other lines and
another digest.

Comparing two databases (statekeep copy) needs that other kind: Checksum
sums a hash of every row's (id, version, body as canonical JSON: keys
sorted, each number as its value), so it depends neither on row order nor
on spelling.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from .._schema import collection_name_problem, column_name_problem
from ..backends.base import CollectionSpec, Index
from ..errors import DumpError

FORMAT = 1
HEADER_KEY = "statekeep_dump"
END_KEY = "statekeep_dump_end"
_KINDS = ("text", "integer", "real", "time", "any")
_MODULUS = 2**128


# A body whose numbers may be spelled two ways (with an exponent, or a whole
# number of 16 digits or more: at or beyond 2**53) takes the slow, careful way.
# Decimals are spelled alike everywhere (jsonb keeps their digits).
# Negative zero too: PostgreSQL's numeric has none (-0.0 comes back 0.0).
_SPELLED = re.compile(
    r"[:\[,]\s*(?:-?(?:\d{16,}(?![\d.eE])|\d+(?:\.\d+)?[eE])|-0(?:\.0*)?(?![\d.eE]))"
)
_SORTED = orjson.OPT_SORT_KEYS


def _int(text: str) -> int | float:
    """A whole number beyond 2**53 as the double it rounds to (1e20 and
    100000000000000000000 are one number; SQLite and JavaScript agree)."""
    value = int(text)
    if abs(value) < 2**53:
        return value
    try:
        return float(value)
    except OverflowError:  # beyond any double: itself
        return value


def _float(text: str) -> float:
    return float(text) + 0.0  # -0.0 + 0.0 is 0.0


def canonical(body: str) -> bytes:
    """The body as one text for equal JSON, however a database spelled it:
    keys sorted, no spaces, each number as its value."""
    if not _SPELLED.search(body):
        try:
            return orjson.dumps(orjson.loads(body), option=_SORTED)
        except (orjson.JSONDecodeError, orjson.JSONEncodeError):
            pass  # NaN, or a number orjson does not take: the careful way
    value = json.loads(body, parse_int=_int, parse_float=_float)
    try:
        return orjson.dumps(value, option=_SORTED)
    except orjson.JSONEncodeError:  # an integer beyond 64 bits
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return text.encode("utf-8", "surrogatepass")


class Checksum:
    """The order-free checksum of a collection's rows (see the module docstring)."""

    __slots__ = ("_sum", "rows")

    def __init__(self) -> None:
        self.rows = 0
        self._sum = 0

    def add(self, id: str, version: int, body: str) -> None:
        key = f"{id}\x00{version}\x00".encode("utf-8", "surrogatepass")
        digest = hashlib.blake2b(key + canonical(body), digest_size=16).digest()
        self._sum = (self._sum + int.from_bytes(digest, "big")) % _MODULUS
        self.rows += 1

    @property
    def hex(self) -> str:
        return f"{self._sum:032x}"


class Digest:
    """The digest of a collection's row lines (see above): a sum of a hash of
    each line, so that it does not depend on their order."""

    __slots__ = ("_sum", "rows")

    def __init__(self) -> None:
        self.rows = 0
        self._sum = 0

    def add_lines(self, lines: list[str]) -> None:
        """Lines without their line ends."""
        total = self._sum
        for line in lines:
            digest = hashlib.blake2b(line.encode("utf-8", "surrogatepass"), digest_size=16)
            total += int.from_bytes(digest.digest(), "big")
        self._sum = total % _MODULUS
        self.rows += len(lines)

    @property
    def hex(self) -> str:
        return f"{self._sum:032x}"


Counted = Checksum | Digest


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


@functools.lru_cache(maxsize=256)
def _opening(collection: str) -> str:
    return f"[{orjson.dumps(collection).decode()},"


def _prefix(collection: str, id: str, version: int) -> str:
    """A row line up to its body: the writer and the reader spell it alike."""
    return f"{_opening(collection)}{orjson.dumps(id).decode()},{version},"


def row_line(collection: str, id: str, version: int, body: str) -> str:
    return f"{_prefix(collection, id, version)}{body}]"


def end_line(sums: Mapping[str, Counted]) -> str:
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
            if not isinstance(name, str) or name in specs:
                raise DumpError(f"a bad or repeated collection name {name!r}", 1)
            problem = collection_name_problem(name)
            if problem:
                raise DumpError(f"collection {name!r}: {problem}", 1)
            names = [index.name.lower() for index in indexes]
            if len(set(names)) != len(names):
                raise DumpError(f"collection {name!r}: an indexed column named twice", 1)
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
    problem = column_name_problem(name)
    if problem:
        raise ValueError(f"index {name!r}: {problem}")
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
        data = orjson.loads(line)
    except orjson.JSONDecodeError:
        try:  # what orjson refuses and JSON allows (NaN, integers beyond 64 bits)
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
    stripped = line.rstrip("\r\n")  # the caller's lines may keep their ends
    prefix = _prefix(collection, id, version)
    if stripped.startswith(prefix) and stripped.endswith("]"):
        text = stripped[len(prefix) : -1].strip()
    else:  # written by another tool: the same JSON, spelled anew
        text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    return collection, id, version, text
