"""A selection's rows, kept up to date from the changes this process commits,
without reading the selection again when a change's effect is certain.

live() reads its selection (find with where, order_by and limit) and then
applies each Created / Updated / Deleted event of the entity class:
- an update of a row in the selection whose where and order_by fields kept
  their values: the row is replaced where it is;
- an event older than the row it is about: nothing to do;
- a change to an entity outside the selection that certainly stays out (a
  where condition it certainly fails or, the selection being full, order_by
  values certainly after the last row's): nothing to do;
- anything else (a row that leaves, moves or may come in, a deletion in the
  selection, a value not compared here as every backend compares it):
  the rows are unknown, and the selection is read again.

"Certainly" is judged only on values every backend compares alike: numbers
for order and ranges (not None, whose place in an order differs between
SQLite and PostgreSQL, nor text, whose order is a collation's), equality of
numbers, booleans, text and None; prefixes and times fall back to a read.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from ..backends.base import Filter, Op, Order
from ..events import Created, Deleted, Updated
from ._signals import plain

Row = dict[str, Any]


class Rows:
    def __init__(
        self, cls: type[Any], filters: Sequence[Filter], orders: Sequence[Order], limit: int | None
    ) -> None:
        self.cls = cls
        self.filters, self.orders, self.limit = tuple(filters), tuple(orders), limit
        shape = {f.field.name for f in self.filters} | {o.field.name for o in self.orders}
        self._shape, self._dumped = sorted(shape), shape  # (the fields an outsider's dump needs)
        self.rows: list[Any] | None = None  # as signal trees (_signals.plain); None: to be read
        self._at: dict[str, int] = {}  # id -> place
        self._kept: list[tuple[int, tuple[Any, ...]]] = []  # each row's version and shape values
        self._since = datetime.min.replace(tzinfo=UTC)  # when the rows' read began

    def reset(self, rows: list[Row] | None, since: datetime | None = None) -> None:
        """The rows as read (entities' JSON dumps) by a read that began at
        since (datetime.now(UTC) before it), or None: unknown."""
        if rows is None:
            self.rows, self._at, self._kept = None, {}, []
            return
        if since is not None:
            self._since = since
        self.rows = [plain(row) for row in rows]
        self._at = {str(row["id"]): n for n, row in enumerate(rows)}
        self._kept = [self._key(row) for row in rows]

    def _key(self, row: Row) -> tuple[int, tuple[Any, ...]]:
        return row.get("version", 0), tuple(row.get(name) for name in self._shape)

    def apply(self, events: Sequence[Any]) -> bool:
        """Applies events (in commit order as dispatched); False when the rows
        are unknown after them (or were before): the selection is to be read."""
        if self.rows is None:
            return False
        for event in events:
            if not self._apply(event):
                self.reset(None)
                return False
        return True

    def _apply(self, event: Any) -> bool:
        at = self._at.get(event.entity_id)
        if isinstance(event, Deleted):
            return at is None  # a row of the selection went: another may come in
        if not isinstance(event, Created | Updated) or event.entity is None:
            return True  # not a change of an entity (a domain event comes with its change's)
        if type(event.entity) is not self.cls:
            return False  # another class of a shared collection: its fields are not these
        if at is None:
            return self._stays_out(event.entity.model_dump(mode="json", include=self._dumped))
        version, shape = self._kept[at]
        if isinstance(event, Created):
            return False  # created again under the id of a row (deleted meanwhile)
        if event.version <= version:
            return True  # dispatched after a change that came later (another thread's)
        if event.at < self._since:
            # made before the read, committed after it: it may be of an earlier life
            # of the id (deleted and created again since, its versions anew)
            return False
        new: Row = event.entity.model_dump(mode="json")
        kept = self._key(new)
        if kept[1] != shape:
            return False
        assert self.rows is not None
        self.rows[at] = plain(new)  # a new object: the rows that did not change keep theirs
        self._kept[at] = kept
        return True

    def _stays_out(self, new: Row) -> bool:
        """Whether an entity outside the selection certainly stays out of it."""
        if any(_fails(f, new.get(f.field.name)) for f in self.filters):
            return True
        if self.limit is None:
            return False
        assert self.rows is not None
        if self.limit == 0:
            return True
        if len(self.rows) < self.limit:
            return False
        last = dict(zip(self._shape, self._kept[-1][1], strict=True))
        return _after(self.orders, new, last)


EXACT = 2**53  # beyond, a backend may compare an integer as a double (SQLite REAL,
# PostgreSQL double precision, SQLite's JSON beyond 64 bits): not as Python does


def _number(value: Any) -> bool:
    """A number every backend compares as Python does."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -EXACT <= value <= EXACT
    return isinstance(value, float)


def _kind(value: Any) -> int:
    """A kind of value equality is certain for (0: None; -1: not one of them)."""
    if value is None:
        return 0
    if isinstance(value, bool):
        return 1
    if _number(value):
        return 2
    return 3 if isinstance(value, str) else -1


def _unequal(value: Any, target: Any) -> bool | None:
    """Whether value certainly differs from target (null-safe); None: not certain."""
    left, right = _kind(value), _kind(target)
    if left < 0 or right < 0:
        return None
    if left == 0 or right == 0:
        return left != right
    if left != right:
        return None
    return bool(value != target)


def _fails(f: Filter, value: Any) -> bool:
    """Whether value certainly fails the filter (False: it passes, or not certain)."""
    if f.field.time:
        return False
    op, target = f.op, f.value
    if op is Op.EQ:
        return _unequal(value, target) is True
    if op is Op.NE:
        return _unequal(value, target) is False
    if op is Op.IN:
        return all(_unequal(value, t) is True for t in target)
    if op is Op.NOT_IN:
        return any(_unequal(value, t) is False for t in target)
    if op is Op.PREFIX:
        return False
    if value is None:
        return True  # an order comparison never matches None
    if not (_number(value) and _number(target)):
        return False
    passes = {
        Op.LT: value < target,
        Op.LE: value <= target,
        Op.GT: value > target,
        Op.GE: value >= target,
    }[op]
    return not passes


def _after(orders: Sequence[Order], new: Row, last: Row) -> bool:
    """Whether new certainly sorts after last (a tie goes to the ids: not certain)."""
    for order in orders:
        name = order.field.name
        a: Any = new.get(name)
        b: Any = last.get(name)
        if order.field.time or not (_number(a) and _number(b)):
            return False
        if a != b:
            return bool(a > b) != order.descending
    return False
