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

import inspect
from typing import Any

from ..entity import restore_recorded, snapshot_recorded
from ..errors import ConfigurationError, TransitionError
from ._binding import (
    Binding,
    Machine,
    Ready,
    Step,
    binding_for,
    held_back,
    moved_meanwhile,
    pick,
    refusal,
    too_async,
    truth,
)
from ._moves import log_move, put_back, saving, undo


def send(machine: Machine, target: Any, event: str, field: str | None, data: Any) -> None:
    if field is not None and not isinstance(field, str):
        raise ConfigurationError(f"field= takes a field's name, not {field!r}")
    binding = machine._bindings_.get((target.__class__, field))
    if binding is None:
        binding = binding_for(machine, type(target), field)
    send_bound(binding, target, event, data)


def send_bound(binding: Binding, target: Any, event: str, data: Any) -> None:
    """The hot path: the transition's own compiled function (Binding.go) does
    the guards, actions and move."""
    source = target.__dict__.get(binding.field)
    if source is None:  # a plain object's class default, or no such field
        source = getattr(target, binding.field, None)
    try:
        go = binding.go[source][event]
    except (KeyError, TypeError):  # TypeError: an unhashable event
        raise _refused(binding, target, event) from None
    go(target, data, source)


def _move(binding: Binding, target: Any, event: str, source: Any, reached: Any) -> None:
    target.__dict__[binding.field] = reached
    if binding.pydantic:
        target.__pydantic_fields_set__.add(binding.field)
    if binding.event_class is not None:  # noted before the actions after it (they may send)
        log_move(binding, target, event, source, reached)


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
        raise held_back(binding, target, source, event)
    if getattr(target, binding.field, None) is not source:  # another task moved it meanwhile
        raise moved_meanwhile(binding, target, source, event)
    saved = saving(binding, target)
    try:
        for ready in step.actions_before:
            await _run_async(ready, target, data)
        if getattr(target, binding.field, None) is not source:
            raise moved_meanwhile(binding, target, source, event)
        _move(binding, target, event, source, step.target)
        for ready in step.actions_after:
            await _run_async(ready, target, data)
    except BaseException:
        undo(binding, target, saved)
        raise


def can_send(machine: Machine, target: Any, event: str, field: str | None, data: Any) -> bool:
    binding = binding_for(machine, type(target), field)
    try:
        _step(binding, target, binding.current(target), event, data)
    except TransitionError:
        return False
    return True


def _step(binding: Binding, target: Any, source: Any, event: str, data: Any) -> Step:
    """The transition event takes from source (TransitionError if none): can_send's
    reading of the guards (a send runs Binding.go's compiled code)."""
    for step in _candidates(binding, target, source, event):
        if step.is_async:
            raise too_async(binding, target, source, event)
        if all(
            truth(call_with(ready, target, data), ready[3], binding, target, source, event)
            is wanted
            for ready, wanted in step.guards
        ):
            return step
    raise held_back(binding, target, source, event)


def _candidates(binding: Binding, target: Any, source: Any, event: str) -> tuple[Step, ...]:
    steps = binding.steps[source].get(event) if isinstance(event, str) else None
    if steps is None:
        if not isinstance(event, str) or event not in binding.machine._events_:
            known = ", ".join(binding.machine._events_)
            raise refusal(binding, target, source, str(event), f"no such event (events: {known})")
        allowed = ", ".join(binding.steps[source]) or "none: it is final"
        raise refusal(
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
    return refusal(binding, target, None, str(event), "refused")  # pragma: no cover


def call_with(ready: Ready, target: Any, data: dict[str, Any]) -> Any:
    """Calls a callback with the target and the keywords of send() it takes."""
    call, takes, _, _ = ready
    if isinstance(takes, tuple):
        return call(target, **pick(data, takes))
    return call(target, **data) if takes else call(target)


async def _passes_async(step: Step, target: Any, data: Any) -> bool:
    for ready, wanted in step.guards:
        if bool(await _run_async(ready, target, data)) is not wanted:
            return False
    return True


async def _run_async(ready: Ready, target: Any, data: Any) -> Any:
    result = call_with(ready, target, data)
    return await result if ready[2] or inspect.isawaitable(result) else result


def _save(target: Any) -> tuple[dict[str, Any], set[str], list[Any]]:
    """An entity as it is, to put back after a stored send fails (_restore):
    its fields, and what is recorded on it (copied)."""
    return dict(target.__dict__), set(target.__pydantic_fields_set__), snapshot_recorded(target)


def _restore(
    binding: Binding, target: Any, saved: tuple[dict[str, Any], set[str], list[Any]]
) -> None:
    fields, fields_set, recorded = saved
    put_back(target, fields, fields_set)
    restore_recorded(target, recorded)
