"""The SQL the PostgreSQL backend runs, written from specs and queries.

PostgreSQL is typed and SQLite is not, yet a query must give the same answer
on both. The rules SQLite applies (and _matching mirrors) are: None < numbers
(booleans count as 0 and 1) < text, text compared byte by byte, EQ and NE
null-safe, the other comparisons never true for None. Here:

- a typed column (text, time, integer, real) holds one kind, so a comparison
  with a value of another kind has a fixed answer, worked out in Python;
- a JSON value (a field read from the body, or an indexed field of mixed
  kinds, a jsonb column) is compared through three expressions: its rank
  (0 null, 1 number or boolean, 2 text), its number and its text;
- text is compared with the "C" collation: byte order, as SQLite's BINARY.

Names are quoted; values travel as parameters, never in the text.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from ..errors import ConfigurationError
from . import _postgres_prefix as keys
from ._layout import REGISTRY, STAMP, stamp
from .base import CollectionSpec, Field, Filter, Index, IndexKind, Op, Order, prefix_range
from .base import Query as Search

COLUMN_TYPES: dict[IndexKind, str] = {
    "text": 'text COLLATE "C"',
    "time": 'text COLLATE "C"',
    "integer": "bigint",
    "real": "double precision",
    "any": "jsonb",
}
ARRAY_TYPES: dict[IndexKind, str] = {
    "text": "text[]",
    "time": "text[]",
    "integer": "bigint[]",
    "real": "float8[]",
    "any": "jsonb[]",
}
COPY_TYPES: dict[IndexKind, str] = {
    "text": "text",
    "time": "text",
    "integer": "int8",
    "real": "float8",
    "any": "jsonb",
}
_RANKED: dict[str, int] = {"text": 2, "time": 2, "integer": 1, "real": 1}
_COMPARISONS = {Op.LT: "<", Op.LE: "<=", Op.GT: ">", Op.GE: ">="}
_MAX_NAME = 63  # bytes: PostgreSQL cuts longer names short, silently

TIME_FUNCTION = r"""
CREATE OR REPLACE FUNCTION {schema}.statekeep_time(value text) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $function$
BEGIN
    -- the time key of ISO 8601 text (statekeep.backends.base.time_key):
    -- aware times in UTC with a Z, naive ones as they are, anything else unchanged
    IF value IS NULL OR value !~ ('^\d{{4}}-?\d\d-?\d\d([T ]\d\d(:?\d\d(:?\d\d([.,]\d+)?)?)?)?'
                                  '([Zz]|[+-]\d\d(:?\d\d(:?\d\d([.,]\d+)?)?)?)?$') THEN
        RETURN value;
    END IF;
    IF value ~ '[T ].*([Zz]|[+-]\d\d(:?\d\d)?(:?\d\d([.,]\d+)?)?)$' THEN
        RETURN to_char(value::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') || 'Z';
    END IF;
    RETURN to_char(value::timestamp, 'YYYY-MM-DD"T"HH24:MI:SS.US');
EXCEPTION WHEN others THEN
    RETURN value;
END
$function$
"""


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """A string constant in a statement run with parameters (standard_conforming_strings:
    only quotes are special to PostgreSQL; psycopg reads % as the start of a placeholder)."""
    return "'" + text.replace("'", "''").replace("%", "%%") + "'"


def checked_name(name: str, what: str) -> str:
    if len(name.encode()) > _MAX_NAME:
        raise ConfigurationError(
            f"{what} {name!r} is longer than PostgreSQL's {_MAX_NAME}-byte limit for names"
        )
    return name


def index_name(spec: CollectionSpec, index: Index) -> str:
    return _short(f"{spec.name}__{index.name}")


def replacement_name(spec: CollectionSpec, index: Index) -> str:
    """The name an index of a new layout is built under, beside the old one,
    until the old one is dropped and it takes the old one's name."""
    return _short(f"{spec.name}__{index.name}__new")


def _short(name: str) -> str:
    """name, or a shortened name with a digest when it is longer than PostgreSQL keeps."""
    if len(name.encode()) <= _MAX_NAME:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:12]
    return f"{name.encode()[:40].decode(errors='ignore')}__{digest}"


class Statements:
    """The SQL text for one collection, built once."""

    def __init__(self, schema: str, spec: CollectionSpec) -> None:
        self.table = table = f"{quote(schema)}.{quote(spec.name)}"
        # the columns this writer maintains (see _layout): in the statements'
        # text, and a value of each row COPY sends
        self.stamp = layout = stamp(spec.indexes)
        columns = ", ".join(quote(c) for c in spec.columns)
        marks = ", ".join(["%s"] * len(spec.columns))
        settings = ", ".join(f"{quote(c)} = %s" for c in spec.columns[1:])
        settings += f", {STAMP} = {layout}"
        # %b: arrays in binary (in text, psycopg quotes every JSON body with a regex)
        arrays = ", ".join(
            f"%b::{t}" for t in ("text[]", "bigint[]", "jsonb[]", *_array_types(spec))
        )
        from_unnest = f"unnest({arrays}) AS u({columns})"
        self.insert = (
            f"INSERT INTO {table} ({columns}, {STAMP}) VALUES ({marks}, {layout}) "
            "ON CONFLICT (id) DO NOTHING"
        )
        self.update = f"UPDATE {table} SET {settings} WHERE id = %s AND version = %s"
        self.update_many = (
            f"UPDATE {table} AS t SET "
            + ", ".join(f"{quote(c)} = u.{quote(c)}" for c in spec.columns[1:])
            + f", {STAMP} = {layout} FROM {from_unnest} "
            "WHERE t.id = u.id AND t.version = u.version - 1"
        )
        # rows locked in id order: two batches over the same rows cannot deadlock
        self.copy = f"COPY {table} ({columns}, {STAMP}) FROM STDIN (FORMAT BINARY)"
        self.copy_types = [
            "text",
            "int8",
            "jsonb",
            *(COPY_TYPES[i.kind] for i in spec.indexes),
            "int4",
        ]
        self.lock_versions = (
            f"SELECT id, version FROM {table} WHERE id = ANY(%s) ORDER BY id FOR UPDATE"
        )
        self.get = f"SELECT body FROM {table} WHERE id = %s"
        self.versions = f"SELECT id, version FROM {table} WHERE id = ANY(%s)"


def _array_types(spec: CollectionSpec) -> list[str]:
    return [ARRAY_TYPES[index.kind] for index in spec.indexes]


REGISTRY_TABLE = (
    "CREATE TABLE IF NOT EXISTS {schema}." + REGISTRY + " (collection text NOT NULL, "
    "name text NOT NULL, kind text NOT NULL, dflt text NOT NULL, ready boolean NOT NULL, "
    "PRIMARY KEY (collection, name))"
)


def create_table(schema: str, spec: CollectionSpec) -> str:
    table = f"{quote(schema)}.{quote(spec.name)}"
    return (
        f"CREATE TABLE IF NOT EXISTS {table} ("
        'id text COLLATE "C" PRIMARY KEY, version bigint NOT NULL, body jsonb NOT NULL, '
        f"{STAMP} integer)"
    )


def build_column(schema: str, spec: CollectionSpec, index: Index, has_column: bool) -> list[str]:
    """Makes an indexed field's column anew, empty (fill_triggers and a fill follow)."""
    table = f"{quote(schema)}.{quote(spec.name)}"
    column = quote(checked_name(index.name, "an indexed field name"))
    statements = [
        f"DROP INDEX IF EXISTS {quote(schema)}.{quote(name)}"
        for name in (index_name(spec, index), replacement_name(spec, index))
    ]
    if has_column:  # of another kind, or of unknown freshness
        statements.append(f"ALTER TABLE {table} DROP COLUMN {column}")
    statements.append(f"ALTER TABLE {table} ADD COLUMN {column} {COLUMN_TYPES[index.kind]}")
    return statements


def fill_triggers(schema: str, collection: str, columns: Sequence[Index]) -> list[str]:
    """A trigger that fills every registered column from the body of a row
    whose stamp is not theirs (see _layout)."""
    table = f"{quote(schema)}.{quote(collection)}"
    function = f"{quote(schema)}.{quote(_short(f'{collection}__statekeep_fill'))}"
    statements = [
        f"DROP TRIGGER IF EXISTS statekeep_fill ON {table}",
        f"DROP TRIGGER IF EXISTS statekeep_edit ON {table}",
    ]
    if not columns:
        return statements
    layout = stamp(columns)
    assignments = "".join(
        f"    NEW.{quote(i.name)} := {filled(schema, i, 'NEW.body')};\n" for i in columns
    )
    code = f"BEGIN\n{assignments}    NEW.{STAMP} := {layout};\n    RETURN NEW;\nEND\n"
    tag, n = "$fill$", 0  # a dollar quote that does not occur in the code (a default may)
    while tag in code:
        n += 1
        tag = f"$fill{n}$"
    statements.append(
        f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS {tag}\n"
        f"{code}{tag}"
    )
    statements.append(
        f"CREATE TRIGGER statekeep_fill BEFORE INSERT OR UPDATE ON {table} FOR EACH ROW "
        f"WHEN (NEW.{STAMP} IS DISTINCT FROM {layout}) EXECUTE FUNCTION {function}()"
    )
    # a body changed in place, stamp and version kept (a SQL tool): filled again
    statements.append(
        f"CREATE TRIGGER statekeep_edit BEFORE UPDATE ON {table} FOR EACH ROW "
        f"WHEN (NEW.{STAMP} = {layout} AND NEW.{STAMP} = OLD.{STAMP} "
        "AND NEW.version = OLD.version AND NEW.body IS DISTINCT FROM OLD.body) "
        f"EXECUTE FUNCTION {function}()"
    )
    return statements


def filled(schema: str, index: Index, body: str = "body") -> str:
    """SQL for the value an indexed column holds, read from a body."""
    field = Field(index.name, False, index.kind == "time", index.default)
    return _stored(field, index.kind, schema, body)


def batch_end(schema: str, collection: str) -> str:
    """The last of the next %s ids after %s (None past the end): one batch of a fill."""
    table = f"{quote(schema)}.{quote(collection)}"
    return f"SELECT max(id) FROM (SELECT id FROM {table} WHERE id > %s ORDER BY id LIMIT %s) AS b"


def fill_range(schema: str, collection: str, columns: Sequence[Index], bounded: bool) -> str:
    """Fills the registered columns of the stale rows with ids in (%s, %s]
    (not bounded: after %s). A range of the primary key, not a join with a
    batch of ids: for that the planner chose to scan the whole table."""
    table = f"{quote(schema)}.{quote(collection)}"
    layout = stamp(columns)
    settings = "".join(f"{quote(i.name)} = {filled(schema, i)}, " for i in columns)
    upper = "AND id <= %s " if bounded else ""
    return (
        f"UPDATE {table} SET {settings}{STAMP} = {layout} "
        f"WHERE id > %s {upper}AND {STAMP} IS DISTINCT FROM {layout}"
    )


def index_expression(schema: str, index: Index) -> str:
    """What an indexed field's index holds: the column, or for text that may
    be long, its prefix (see _postgres_prefix); the same text as queries use."""
    column = quote(index.name)
    if index.kind == "any":
        return f"({keys.key(_text(column, False, schema))})"
    return f"({keys.key(column)})" if keys.prefixed(index.kind) else column


def create_index(
    schema: str, spec: CollectionSpec, index: Index, concurrently: bool, named: str = ""
) -> str:
    table = f"{quote(schema)}.{quote(spec.name)}"
    how = "CONCURRENTLY " if concurrently else ""
    named = quote(named or index_name(spec, index))
    return f"CREATE INDEX {how}IF NOT EXISTS {named} ON {table} ({index_expression(schema, index)})"


# -- values as JSON -----------------------------------------------------------


def _json_of(field: Field, body: str = "body") -> str:
    """A body field as jsonb; a body without it has the field's default."""
    value = f"{body} -> {literal(field.name)}"
    if field.default is None:
        return value
    return f"COALESCE({value}, {literal(json.dumps(field.default))}::jsonb)"


def _rank(x: str) -> str:
    return (
        f"(CASE jsonb_typeof({x}) WHEN 'number' THEN 1 WHEN 'boolean' THEN 1 "
        f"WHEN 'string' THEN 2 WHEN 'object' THEN 2 WHEN 'array' THEN 2 ELSE 0 END)"
    )


def _number(x: str) -> str:
    return (
        f"(CASE jsonb_typeof({x}) WHEN 'number' THEN ({x})::numeric "
        f"WHEN 'boolean' THEN (CASE WHEN ({x})::boolean THEN 1 ELSE 0 END)::numeric END)"
    )


def _text(x: str, time: bool, schema: str) -> str:
    text = (
        f"(CASE jsonb_typeof({x}) WHEN 'string' THEN {x} #>> '{{}}' "
        f"WHEN 'object' THEN ({x})::text WHEN 'array' THEN ({x})::text END)"
    )
    if time:
        text = f"{quote(schema)}.statekeep_time({text})"
    return f'({text} COLLATE "C")'


def _is_null(x: str) -> str:
    return f"({x} IS NULL OR jsonb_typeof({x}) = 'null')"


def _stored(field: Field, kind: IndexKind, schema: str, body: str = "body") -> str:
    """SQL for the value an indexed column of `kind` holds, read from the body."""
    x = _json_of(field, body)
    if kind in ("text", "time"):
        return _text(x, kind == "time", schema)
    if kind == "integer":
        return f"{_number(x)}::bigint"
    if kind == "real":
        return f"{_number(x)}::float8"
    return f"NULLIF({x}, 'null'::jsonb)"


# -- where and order by -------------------------------------------------------


def _value_rank(value: Any) -> int:
    if value is None:
        return 0
    return 2 if isinstance(value, str) else 1


def _number_text(value: Any) -> str:
    return str(int(value)) if isinstance(value, bool) else repr(value)


class Query:
    """Builds WHERE and ORDER BY for one collection; collects the parameters."""

    def __init__(self, schema: str, spec: CollectionSpec) -> None:
        self._schema = schema
        self._kinds = {index.name: index.kind for index in spec.indexes}
        self._kinds.update(id="text", version="integer")
        # text columns indexed by their prefix (the id is the primary key's, whole)
        self._prefixed = {index.name for index in spec.indexes if keys.prefixed(index.kind)}
        self.params: list[Any] = []

    def where(self, filters: Sequence[Filter]) -> str:
        parts = [self._condition(f) for f in filters]
        return (" WHERE " + " AND ".join(parts)) if parts else ""

    def order_by(self, orders: Sequence[Order]) -> str:
        terms = [term for o in orders for term in self._order_terms(o)]
        return " ORDER BY " + ", ".join([*terms, "id"])

    def _kind(self, field: Field) -> IndexKind:
        return self._kinds[field.name] if field.column else "any"

    def _order_terms(self, o: Order) -> list[str]:
        way = "DESC" if o.descending else "ASC"
        kind = self._kind(o.field)
        if kind != "any":
            nulls = "LAST" if o.descending else "FIRST"
            return [f"{quote(o.field.name)} {way} NULLS {nulls}"]
        x = self._json(o.field)
        return [f"{part} {way}" for part in (_rank(x), _number(x), self._text(x, o.field))]

    def _json(self, field: Field) -> str:
        return quote(field.name) if field.column else _json_of(field)

    def _text(self, x: str, field: Field) -> str:
        return _text(x, field.time, self._schema)

    def _param(self, value: Any, cast: str = "") -> str:
        self.params.append(value)
        return f"%s{cast}"

    def _condition(self, f: Filter) -> str:
        kind = self._kind(f.field)
        indexed = f.field.column and f.field.name in self._prefixed
        if kind == "any":
            return self._json_condition(f, indexed)
        return self._column_condition(f, quote(f.field.name), _RANKED[kind], indexed)

    def _compare(self, text: str, op: str, value: Any, indexed: bool) -> str:
        """`text op value`; through the prefix index of an indexed text (see _postgres_prefix)."""
        if indexed and isinstance(value, str):
            return keys.compare(text, op, value, self._param)
        return f"{text} {op} {self._param(value)}"

    # a typed column: every stored value has rank `rank`, or is NULL;
    # indexed: a text column with a prefix index
    def _column_condition(self, f: Filter, column: str, rank: int, indexed: bool) -> str:
        op, value = f.op, f.value
        absent = f"{keys.key(column) if indexed else column} IS NULL"  # the index has NULLs too
        if op in (Op.IN, Op.NOT_IN):
            same = [v for v in value if _value_rank(v) == rank]
            parts = []
            if same:
                values = [int(v) if isinstance(v, bool) else v for v in same]
                if rank == 1 and any(isinstance(v, float) for v in values):
                    values = [float(v) for v in values]  # one array type
                if op is Op.IN:  # an index can serve it
                    parts.append(
                        keys.member(column, [str(v) for v in values], self._param)
                        if indexed
                        else f"{column} = ANY({self._param(values)})"
                    )
                else:
                    parts.append(f"COALESCE({column} = ANY({self._param(values)}), FALSE)")
            if None in value:
                parts.append(absent if op is Op.IN else f"{column} IS NULL")
            member = " OR ".join(parts) or "FALSE"
            return f"({member})" if op is Op.IN else f"NOT ({member})"
        theirs = _value_rank(value)
        if isinstance(value, bool):
            value = int(value)
        if op is Op.EQ:
            if value is None:
                return absent
            return self._compare(column, "=", value, indexed) if theirs == rank else "FALSE"
        if op is Op.NE:
            if value is None:
                return f"{column} IS NOT NULL"
            return f"{column} IS DISTINCT FROM {self._param(value)}" if theirs == rank else "TRUE"
        if value is None:
            return "FALSE"
        if op is Op.PREFIX:
            return self._prefix(column, value, indexed) if rank == 2 else "FALSE"
        if theirs == rank:
            return self._compare(column, _COMPARISONS[op], value, indexed)
        below = op in (Op.LT, Op.LE)  # asks for stored values below the value's kind
        return f"{column} IS NOT NULL" if below == (theirs > rank) else "FALSE"

    def _prefix(self, text: str, start: str, indexed: bool) -> str:
        lower, upper = prefix_range(start)
        if upper is None:
            return self._compare(text, ">=", lower, indexed)
        above = self._compare(text, ">=", lower, indexed)  # parameters in the order of the text
        return f"({above} AND {self._compare(text, '<', upper, indexed)})"

    # a JSON value: any rank; indexed: a column with a prefix index of its text
    def _json_condition(self, f: Filter, indexed: bool) -> str:
        x = self._json(f.field)
        number, text = _number(x), self._text(x, f.field)
        op, value = f.op, f.value
        if op in (Op.IN, Op.NOT_IN):
            numbers = [_number_text(v) for v in value if _value_rank(v) == 1]
            texts = [v for v in value if _value_rank(v) == 2]
            parts = []
            if numbers:
                parts.append(
                    f"COALESCE({number} = ANY({self._param(numbers, '::numeric[]')}), FALSE)"
                )
            if texts:
                among = (
                    keys.member(text, texts, self._param)
                    if indexed
                    else f"{text} = ANY({self._param(texts, '::text[]')})"
                )
                parts.append(f"COALESCE({among}, FALSE)")
            if None in value:
                parts.append(_is_null(x))
            member = " OR ".join(parts) or "FALSE"
            return f"({member})" if op is Op.IN else f"NOT ({member})"
        if value is None:
            if op is Op.EQ:
                return _is_null(x)
            return f"NOT {_is_null(x)}" if op is Op.NE else "FALSE"
        if op is Op.PREFIX:
            return self._prefix(text, value, indexed) if isinstance(value, str) else "FALSE"
        if op is Op.NE:
            if isinstance(value, str):
                return f"{text} IS DISTINCT FROM {self._param(value)}"
            return f"{number} IS DISTINCT FROM {self._param(_number_text(value), '::numeric')}"
        sign = "=" if op is Op.EQ else _COMPARISONS[op]
        if isinstance(value, str):
            compared, other_rank = self._compare(text, sign, value, indexed), 1
        else:
            param = self._param(_number_text(value), "::numeric")
            compared, other_rank = f"{number} {sign} {param}", 2
        if op is Op.EQ:
            return compared
        below = op in (Op.LT, Op.LE)
        if below == (other_rank == 1):  # the other kind lies on the asked side
            return f"({compared} OR {_rank(x)} = {other_rank})"
        return compared


def select(schema: str, spec: CollectionSpec, table: str, query: Search) -> tuple[str, list[Any]]:
    """The SELECT of the bodies a query finds, and its parameters."""
    built = Query(schema, spec)
    where = built.where(query.filters)
    order = built.order_by(query.order)
    text = f"SELECT body FROM {table}{where}{order}"
    if query.limit is not None:
        text += f" LIMIT {int(query.limit)}"
    if query.offset:
        text += f" OFFSET {int(query.offset)}"
    return text, built.params
