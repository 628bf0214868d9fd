"""The moves an entity made in memory, kept for its next save to announce.

A move is a tuple of text and a time (the garbage collector stops tracking
such tuples), in one Moves per run of moves of one binding, recorded on the
entity (statekeep.entity.recording) as a Deferred: made into Transitioned
events only if the save has someone to announce them to.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from ..entity import recording


def log_move(binding: Any, target: Any, event: str, source: Any, reached: Any) -> None:
    """Notes the move on the entity, for its next save to announce: a tuple of
    text and a time (the garbage collector stops tracking such tuples), in
    one Moves per run of moves of one binding."""
    moves = recording(target)
    last = moves[-1] if moves else None
    move = (event, str(source), reached._value_, time.time())
    if last.__class__ is Moves and last.binding is binding:
        last.moves.append(move)
    else:
        moves.append(Moves(binding, [move]))


class Moves:
    """Moves of one binding made in memory, to announce with the entity's
    next save (entity.recording): their events are made only then."""

    __slots__ = ("binding", "moves")

    def __init__(self, binding: Any, moves: list[tuple[str, str, str, float]]) -> None:
        self.binding, self.moves = binding, moves

    def copy(self) -> Moves:
        return Moves(self.binding, list(self.moves))

    def __len__(self) -> int:
        return len(self.moves)

    def make(self) -> list[Any]:
        binding = self.binding
        make = binding.event_class.made
        machine, field = binding.machine.__name__, binding.field
        return [
            make(
                "",
                "",
                0,
                at=datetime.fromtimestamp(at, UTC),
                machine=machine,
                field=field,
                event=event,
                source=source,
                target=target,
            )
            for event, source, target, at in self.moves
        ]


# where an entity's record of moves ends: (its list, its length, the length of
# the moves of its last item when that is a Moves, else -1); None for a model
Mark = tuple[list[Any], int, int] | None
# what a send with actions puts back if one raises: fields, fields set, mark
Saved = tuple[dict[str, Any], set[str] | None, Mark]


def mark(binding: Any, target: Any) -> Mark:
    if binding.event_class is None:
        return None
    moves = recording(target)
    last = moves[-1] if moves else None
    return moves, len(moves), len(last.moves) if last.__class__ is Moves else -1


def unwind(at: Mark) -> None:
    """Forgets the moves recorded since at (by actions that sent, then failed)."""
    if at is None:
        return
    moves, length, tail = at
    del moves[length:]
    if tail >= 0:
        del moves[length - 1].moves[tail:]


def put_back(target: Any, fields: dict[str, Any], fields_set: set[str] | None) -> None:
    target.__dict__.clear()
    target.__dict__.update(fields)
    if fields_set is not None:
        object.__setattr__(target, "__pydantic_fields_set__", fields_set)


def undo(binding: Any, target: Any, saved: Saved) -> None:
    """The target as it was before a send whose action raised."""
    put_back(target, saved[0], saved[1])
    unwind(saved[2])


def saving(binding: Any, target: Any) -> Saved:
    fields_set = set(target.__pydantic_fields_set__) if binding.pydantic else None
    return target.__dict__.copy(), fields_set, mark(binding, target)


def moves_since(binding: Any, target: Any, at: Mark) -> list[tuple[str, str, str, float]]:
    """The moves of binding recorded on target since mark(binding, target) was at."""
    if at is None:
        return []
    items, length, tail = at
    found: list[tuple[str, str, str, float]] = []
    if tail >= 0 and length <= len(items):
        last = items[length - 1]
        if last.__class__ is Moves and last.binding is binding:
            found += last.moves[tail:]
    for item in items[length:]:
        if item.__class__ is Moves and item.binding is binding:
            found += item.moves
    return found
