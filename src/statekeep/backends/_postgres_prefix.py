"""Text columns indexed by a bounded prefix, so that no value is too long to index.

A btree entry holds at most 2,704 bytes (after compression): a longer value in
an indexed column fails its INSERT with SQLSTATE 54000 ("index row size ...
exceeds btree maximum"). So a text column, and the text of a mixed-kind (jsonb)
column, is indexed by `left(text, PREFIX)`, its first PREFIX characters: at
most 4 bytes each in UTF-8, 2,048 bytes in all, whatever the value's length.

Queries stay exact. `left` keeps order (a <= b gives left(a) <= left(b)), and
a value v shorter than PREFIX characters is its own prefix, so for such a v

    text = v  <=>  left(text) = v          text < v   <=>  left(text) < v
    text > v  <=>  left(text) > v          (<= and >= alike)

(when left(text) differs from text, text is longer than v and shares the
position where left(text) and v first differ). A condition on a short value
is then one index condition, as on a plain column index. A longer v gets the
prefix condition made loose (< becomes <=) for the index and the exact one
beside it, checked on the few rows the index finds. Whether v is short is
decided by its UTF-8 length in bytes, never below its length in characters
in any server encoding, and the prefix of a long v is cut by the server.

Ordering (ORDER BY text) is left as it is: a sort, as it was before (the
plain index never served it: statekeep orders NULLs first).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .base import IndexKind

# characters of a text the index holds: 512 x 4 bytes of UTF-8 fit the btree's
# 2,704 with room to spare, and texts that share their first 512 characters
# are rare enough that the rows the index cannot tell apart stay few.
# Measured against an index of the whole column (python -m
# benchmarks.prefix_index, 100k short names, PostgreSQL 15, 2 cores): lookups
# 0.99-1.02x, COPY 0.98-1.02x, a single INSERT 1.02-1.04x its time.
PREFIX = 512

# the index condition a comparison with a long value implies
_LOOSE = {"=": "=", "<": "<=", "<=": "<=", ">": ">=", ">=": ">="}


def prefixed(kind: IndexKind) -> bool:
    """Is a column of this kind indexed by its prefix (text that may be long)?
    Time keys are short by construction, numbers have a fixed size."""
    return kind in ("text", "any")


def key(text: str) -> str:
    """The index expression of a text expression (the same text in CREATE
    INDEX and in every query, so that the planner matches them)."""
    return f"left({text}, {PREFIX})"


def short(value: str) -> bool:
    return len(value.encode()) < PREFIX


def compare(text: str, op: str, value: str, param: Callable[[Any], str]) -> str:
    """SQL for `text op value` (op one of = < <= > >=) that the prefix index serves."""
    if short(value):
        return f"{key(text)} {op} {param(value)}"
    bound = key(param(value))
    return f"({key(text)} {_LOOSE[op]} {bound} AND {text} {op} {param(value)})"


def member(text: str, values: list[str], param: Callable[[Any], str]) -> str:
    """SQL for `text = ANY(values)` that the prefix index serves."""
    shorts = [v for v in values if short(v)]
    parts = [f"{key(text)} = ANY({param(shorts)})"] if shorts else []
    parts += [compare(text, "=", v, param) for v in values if not short(v)]
    return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"
