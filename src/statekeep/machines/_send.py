"""Sending an event: find the transition, check its guards, run its actions,
set the field, and record the transition for the entity's next save.

Refused (TransitionError) when the event is unknown, not declared from the
current state, or every transition of it is held back by a guard: then
nothing has changed. When an action raises, the fields are put back as they
were before the send (what an action changed inside a list or a model it
holds is its own) and the error goes to the caller.

The field is written straight into the model's `__dict__`: the target is a
member of the field's own type, so pydantic's validation on assignment (about
a microsecond) has nothing to check.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from ..entity import Entity, forget_recorded_since, recorded_count, recording
from ..errors import ConfigurationError, TransitionError
from ._binding import Binding, Machine, Ready, Step, binding_for


def send(machine: Machine, target: Any, event: str, field: str | None, data: Any) -> None:
    binding = machine._bindings_.get((target.__class__, field))
    if binding is None:
        binding = binding_for(machine, type(target), field)
    send_bound(binding, target, event, data)


def send_bound(binding: Binding, target: Any, event: str, data: Any) -> None:
    """The hot path: a fraction of a microsecond for a guarded move with an action."""
    fields = target.__dict__
    source = fields.get(binding.field)
    try:
        steps = binding.steps[source][event]
    except (KeyError, TypeError):  # TypeError: an unhashable event
        raise _refused(binding, target, event) from None
    for step in steps:
        if step.is_async:
            raise _error(
                binding,
                target,
                source,
                event,
                "its guards or actions are coroutine functions: send it with "
                f"`await entity.asend({event!r})`",
            )
        for (call, takes_data, _, _), wanted in step.guards:
            if bool(call(target, **data) if takes_data else call(target)) is not wanted:
                break
        else:
            break
    else:
        raise _held_back(binding, target, source, event)
    if not (step.actions_before or step.actions_after):
        fields[binding.field] = step.target
        target.__pydantic_fields_set__.add(binding.field)
        if binding.event_class is not None:
            _log(binding, target, event, source, step.target)
        return
    # an action may assign fields (pydantic makes a new __dict__), send, or raise
    saved = fields.copy(), set(target.__pydantic_fields_set__), _mark(binding, target)
    try:
        for call, takes_data, _, _ in step.actions_before:
            call(target, **data) if takes_data else call(target)
        _move(binding, target, event, source, step.target)
        for call, takes_data, _, _ in step.actions_after:
            call(target, **data) if takes_data else call(target)
    except BaseException:
        _put_back(target, saved[:2])
        _unwind(saved[2])
        raise


# where an entity's record of moves ends: (its list, its length, the length of
# the moves of its last item when that is a Moves, else -1); None for a model
Mark = tuple[list[Any], int, int] | None


def _mark(binding: Binding, target: Any) -> Mark:
    if binding.event_class is None:
        return None
    moves = recording(target)
    last = moves[-1] if moves else None
    return moves, len(moves), len(last.moves) if last.__class__ is Moves else -1


def _unwind(mark: Mark) -> None:
    """Forgets the moves recorded since mark (by actions that sent, then failed)."""
    if mark is None:
        return
    moves, length, tail = mark
    del moves[length:]
    if tail >= 0:
        del moves[length - 1].moves[tail:]


def _move(binding: Binding, target: Any, event: str, source: Any, reached: Any) -> None:
    target.__dict__[binding.field] = reached
    target.__pydantic_fields_set__.add(binding.field)
    if binding.event_class is not None:  # noted before the actions after it (they may send)
        _log(binding, target, event, source, reached)


async def asend(machine: Machine, target: Any, event: str, field: str | None, data: Any) -> None:
    await asend_bound(binding_for(machine, type(target), field), target, event, data)


async def asend_bound(binding: Binding, target: Any, event: str, data: Any) -> None:
    source = binding.current(target)
    step = None
    for candidate in _candidates(binding, target, source, event):
        if await _passes_async(candidate, target, data):
            step = candidate
            break
    if step is None:
        raise _held_back(binding, target, source, event)
    saved = _save(target)
    try:
        for ready in step.actions_before:
            await _run_async(ready, target, data)
        _move(binding, target, event, source, step.target)
        for ready in step.actions_after:
            await _run_async(ready, target, data)
    except BaseException:
        _restore(binding, target, saved)
        raise


def can_send(machine: Machine, target: Any, event: str, field: str | None, data: Any) -> bool:
    binding = binding_for(machine, type(target), field)
    try:
        _step(binding, target, binding.current(target), event, data, sync=True)
    except TransitionError:
        return False
    return True


def _step(binding: Binding, target: Any, source: Any, event: str, data: Any, sync: bool) -> Step:
    """The transition event takes from source (TransitionError if none)."""
    for step in _candidates(binding, target, source, event):
        if step.is_async:
            raise _error(
                binding,
                target,
                source,
                event,
                "its guards or actions are coroutine functions: send it with "
                f"`await entity.asend({event!r})`",
            )
        if _passes(step, target, data):
            return step
    raise _held_back(binding, target, source, event)


def _candidates(binding: Binding, target: Any, source: Any, event: str) -> tuple[Step, ...]:
    steps = binding.steps[source].get(event) if isinstance(event, str) else None
    if steps is None:
        if not isinstance(event, str) or event not in binding.machine._events_:
            known = ", ".join(binding.machine._events_)
            raise _error(binding, target, source, str(event), f"no such event (events: {known})")
        allowed = ", ".join(binding.steps[source]) or "none: it is final"
        raise _error(
            binding, target, source, event, f"not from {source._name_} (from there: {allowed})"
        )
    return steps


def _refused(binding: Binding, target: Any, event: object) -> Exception:
    """Why event is not declared from the target's state (or the state is not one)."""
    try:
        source = binding.current(target)
        _candidates(binding, target, source, event)  # type: ignore[arg-type]
    except (ConfigurationError, TransitionError) as error:
        return error
    return _error(binding, target, None, str(event), "refused")  # pragma: no cover


def _passes(step: Step, target: Any, data: Any) -> bool:
    for (call, takes_data, _, _), wanted in step.guards:
        if bool(call(target, **data) if takes_data else call(target)) is not wanted:
            return False
    return True


async def _passes_async(step: Step, target: Any, data: Any) -> bool:
    for ready, wanted in step.guards:
        if bool(await _run_async(ready, target, data)) is not wanted:
            return False
    return True


async def _run_async(ready: Ready, target: Any, data: Any) -> Any:
    call, takes_data, is_async, _ = ready
    result = call(target, **data) if takes_data else call(target)
    return await result if is_async else result


def _held_back(binding: Binding, target: Any, source: Any, event: str) -> TransitionError:
    steps = binding.steps[source][event]
    names = sorted(
        {("" if wanted else "not ") + ready[3] for step in steps for ready, wanted in step.guards}
    )
    return _error(binding, target, source, event, f"held back by its guards ({', '.join(names)})")


def _error(binding: Binding, target: Any, source: Any, event: str, reason: str) -> TransitionError:
    entity_id = target.__dict__.get("id", "") if hasattr(target, "__dict__") else ""
    return TransitionError(
        binding.machine.__name__,
        getattr(source, "_name_", str(source)),
        event,
        reason,
        entity_id if isinstance(entity_id, str) else "",
    )


def _log(binding: Binding, target: Any, event: str, source: Any, reached: Any) -> None:
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


def _put_back(target: Any, saved: tuple[dict[str, Any], set[str]]) -> None:
    fields, fields_set = saved
    target.__dict__.clear()
    target.__dict__.update(fields)
    object.__setattr__(target, "__pydantic_fields_set__", fields_set)


def _save(target: Any) -> tuple[dict[str, Any], set[str], int]:
    """The entity as it is, to put back after a stored send fails (_restore)."""
    count = recorded_count(target) if isinstance(target, Entity) else 0
    return dict(target.__dict__), set(target.__pydantic_fields_set__), count


def _restore(binding: Binding, target: Any, saved: tuple[dict[str, Any], set[str], int]) -> None:
    fields, fields_set, count = saved
    _put_back(target, (fields, fields_set))
    if isinstance(target, Entity):
        forget_recorded_since(target, count)


class Moves:
    """Moves of one binding made in memory, to announce with the entity's
    next save (entity.record_deferred): their events are made only then."""

    __slots__ = ("binding", "moves")

    def __init__(self, binding: Binding, moves: list[tuple[str, str, str, float]]) -> None:
        self.binding, self.moves = binding, moves

    def __len__(self) -> int:
        return len(self.moves)

    def truncate(self, count: int) -> None:
        del self.moves[count:]

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


def check_field(field: object) -> None:
    if field is not None and not isinstance(field, str):
        raise ConfigurationError(f"field= takes a field's name, not {field!r}")
