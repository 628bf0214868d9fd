"""A machine bound to one field of one class: its guards and actions found.

A guard or action named by text is looked up on the entity's class first (a
method: called on the entity; a property or a field: read), then in the
machine's body (a function: called with the entity). Actions also come by
name, as python-statemachine names them: `before_<event>`, `on_<event>`,
`on_exit_<state>`, `on_enter_<state>`, `after_<event>`, on the entity's class
or in the machine's body. A callback whose signature takes more than the
entity gets the keywords given to send().

Each transition compiles to a `Step`: its guards, the actions before the
field changes, the ones after, and whether any of them is a coroutine
function (such a transition is sent with asend()).
"""

from __future__ import annotations

import inspect
import operator
import threading
import typing
from collections.abc import Callable, Iterable
from typing import Any

import pydantic

from ..errors import ConfigurationError, TransitionError
from ._define import Callback, Transition
from ._moves import log_move, mark, undo
from ._records import history_class, history_name

# a Machine class (this module sits below statekeep.machines._machine)
Machine = Any

# a callback made ready: (function of the entity [and data], takes data?, is async?, name)
Ready = tuple[Callable[..., Any], bool | tuple[str, ...], bool, str]


class Step:
    """One transition of a bound machine: its guards and actions found (the
    sync path runs them through _compiled's functions, the async one and
    can_send through these)."""

    __slots__ = (
        "actions_after",
        "actions_before",
        "guards",
        "has_actions",
        "is_async",
        "target",
        "transition",
    )

    def __init__(
        self,
        transition: Transition,
        guards: tuple[tuple[Ready, bool], ...],
        before: tuple[Ready, ...],
        after: tuple[Ready, ...],
    ) -> None:
        self.transition = transition
        self.target = transition.target
        self.guards = guards  # (callback, what it must return to let the transition go)
        self.actions_before, self.actions_after = before, after
        self.has_actions = bool(before or after)
        self.is_async = any(ready[2] for ready, _ in guards) or any(
            ready[2] for ready in (*before, *after)
        )


def _compiled(binding: Binding, source: Any, event: str, steps: tuple[Step, ...]) -> Any:
    """`go(t, d, source)`: the transitions event takes from source, as one
    function of straight-line code (loops over tuples of callbacks would cost
    a send more than the callbacks do): the first step whose guards hold
    runs its actions before, the move, its actions after, putting the fields
    (and the moves recorded) back if an action raises."""
    names: dict[str, Any] = {"B": binding, "log_move": log_move, "undo": undo, "mark": mark}
    names.update(held=_held, too_async=too_async, EVENT=event, pick=pick, truth=truth)
    names.update(S=source)
    names.update(moved_meanwhile=moved_meanwhile, setattr=setattr)
    field = repr(binding.field)

    def call(ready: Ready, name: str) -> str:
        names[name] = ready[0]
        takes = ready[1]
        if not takes:
            return f"{name}(t)"
        if takes is True:
            return f"{name}(t, **d)"
        names[f"{name}_takes"] = takes
        return f"{name}(t, **pick(d, {name}_takes))"

    def guard(ready: Ready, name: str) -> str:
        # a bool as it is; anything else through truth(), which refuses an awaitable
        called = call(ready, name)
        return (
            f"(r if (r := {called}).__class__ is bool else truth(r, {ready[3]!r}, B, t, S, EVENT))"
        )

    lines = ["def go(t, d, source):"]
    for n, step in enumerate(steps):
        names[f"T{n}"] = step.target
        pad = "    "
        if step.is_async:
            lines.append("    raise too_async(B, t, source, EVENT)")
            break
        if step.guards:
            terms = [
                ("" if wanted else "not ") + guard(ready, f"g{n}_{i}")
                for i, (ready, wanted) in enumerate(step.guards)
            ]
            lines.append(f"    if {' and '.join(terms)}:")
            pad = "        "
        if binding.validated:  # the model's validators see the move (and may refuse it)
            move = [f"setattr(t, {field}, T{n})"]
        else:  # __dict__ again: an action may replace it
            move = [f"t.__dict__[{field}] = T{n}"]
            if binding.pydantic:
                move.append(f"t.__pydantic_fields_set__.add({field})")
        if binding.event_class is not None:  # an entity: the move is announced when saved
            move.append(f"log_move(B, t, EVENT, source, T{n})")
        if not step.has_actions and not binding.validated:
            lines += [pad + line for line in move] + [pad + "return"]
        else:
            before = [call(ready, f"b{n}_{i}") for i, ready in enumerate(step.actions_before)]
            if before:  # an action before the move that sent this object elsewhere: refused
                before.append(f"if getattr(t, {field}, None) is not source:")
                before.append("    raise moved_meanwhile(B, t, source, EVENT)")
            after = [call(ready, f"a{n}_{i}") for i, ready in enumerate(step.actions_after)]
            fields_set = "set(t.__pydantic_fields_set__)" if binding.pydantic else "None"
            moves = "mark(B, t)" if binding.event_class is not None else "None"
            lines += [
                f"{pad}saved = t.__dict__.copy(), {fields_set}, {moves}",
                f"{pad}try:",
                *[f"{pad}    {line}" for line in (*before, *move, *after)],
                f"{pad}except BaseException:",
                f"{pad}    undo(B, t, saved)",
                f"{pad}    raise",
                f"{pad}return",
            ]
        if not step.guards:
            break  # the steps after one without guards are never taken
    else:
        lines.append("    raise held(B, t, source, EVENT)")
    made: dict[str, Any] = {}
    where = f"<{binding.machine.__name__}.{event} from {source._name_}>"
    exec(compile("\n".join(lines) + "\n", where, "exec"), names, made)
    return made["go"]


class Binding:
    """A machine bound to owner.field."""

    __slots__ = (
        "event_class",
        "field",
        "go",
        "keeps_history",
        "machine",
        "owner",
        "pydantic",
        "steps",
        "validated",
    )

    def __init__(self, machine: Machine, owner: type, field: str) -> None:
        self.machine, self.owner, self.field = machine, owner, field
        # a pydantic model's fields set (model_fields_set) must learn of the field
        self.pydantic = issubclass(owner, pydantic.BaseModel)
        # the model's validators must see a move (set through validated assignment)
        self.validated = self.pydantic and _validates_moves(owner, field)
        # owner.Transitioned, for an entity class: its moves are recorded for its next save
        self.event_class: Any = None
        self.keeps_history = False  # an entity class's binding of a machine with history=True
        if _is_entity_class(owner):
            entity: Any = owner
            self.event_class = entity.Transitioned
            if machine._history_:
                history_name(owner)  # too long a name is refused now
                self.keeps_history = True
        find = _Finder(self, machine, owner)
        # state -> event -> the steps from it, in the order declared
        self.steps: dict[Any, dict[str, tuple[Step, ...]]] = {
            state: {
                event: tuple(find.step(event, transition) for transition in transitions)
                for event, transitions in exits.items()
            }
            for state, exits in machine._table_.items()
        }
        # state -> event -> go(target, data, source): the sync send, compiled
        self.go: dict[Any, dict[str, Any]] = {
            state: {event: _compiled(self, state, event, steps) for event, steps in exits.items()}
            for state, exits in self.steps.items()
        }

    def history_class(self) -> Any:
        """The class of its history records (made on first use: a class that
        fails to be defined claims no history collection), or None."""
        return history_class(self.owner) if self.keeps_history else None

    def exits_of(self, target: Any) -> Iterable[str]:
        return self.steps[self.current(target)]

    def current(self, target: Any) -> Any:
        value = getattr(target, self.field, _MISSING)
        if value is _MISSING:
            raise ConfigurationError(f"{type(target).__name__} has no field {self.field!r}")
        if value not in self.steps:
            raise ConfigurationError(
                f"{type(target).__name__}.{self.field} holds {value!r}, "
                f"not a state of {self.machine.__name__}"
            )
        return value


_MISSING = object()
# the modules of the classes in a machine's MRO that are not machine bodies
_NOT_A_BODY = frozenset({"statekeep.machines._machine", "enum", "builtins"})


def _validates_moves(owner: Any, field: str) -> bool:
    """Does the model validate assignments with validators of its own that a
    move must pass (a model validator, or one of the field)? A frozen model
    cannot move at all: refused."""
    config = owner.model_config
    if config.get("frozen") or owner.model_fields[field].frozen:
        raise ConfigurationError(
            f"{owner.__name__}.{field} is frozen: a machine cannot move it (frozen=True)"
        )
    if not config.get("validate_assignment"):
        return False
    decorators = owner.__pydantic_decorators__
    return bool(decorators.model_validators) or any(
        field in validator.info.fields or "*" in validator.info.fields
        for validator in decorators.field_validators.values()
    )


class _Finder:
    def __init__(self, binding: Binding, machine: Machine, owner: type) -> None:
        self.binding, self.machine, self.owner = binding, machine, owner
        self.fields = getattr(owner, "model_fields", {})
        self.pydantic = issubclass(owner, pydantic.BaseModel)
        self.callers: dict[str, Any] = {}  # one methodcaller per method name

    def step(self, event: str, transition: Transition) -> Step:
        source, target = transition.source, transition.target
        guards = tuple((self.ready(c, "cond"), True) for c in transition.cond) + tuple(
            (self.ready(c, "unless"), False) for c in transition.unless
        )
        leaving = not transition.internal
        before = [
            *map(self.ready, transition.before, _repeat("before")),
            *self.named(f"before_{event}"),
            *self.named(f"on_{event}"),
        ]
        if leaving:
            before += [
                *map(self.ready, source.declared.exit, _repeat("exit")),
                *self.named(f"on_exit_{source._name_}"),
            ]
        after = []
        if leaving:
            after += [
                *map(self.ready, target.declared.enter, _repeat("enter")),
                *self.named(f"on_enter_{target._name_}"),
            ]
        after += [
            *map(self.ready, transition.after, _repeat("after")),
            *self.named(f"after_{event}"),
        ]
        return Step(transition, guards, _once(before), _once(after))

    def named(self, name: str) -> list[Ready]:
        """The callbacks of that conventional name, on the class and in the machine."""
        found = []
        if callable(getattr(self.owner, name, None)):
            found.append(self.ready(name, "action"))
        body = self.in_machine(name)
        if body is not None:
            found.append(self.from_machine(body, name))
        return found

    def in_machine(self, name: str) -> Any:
        """A function of the machine's body (or of a machine it derives from)."""
        for klass in self.machine.__mro__:
            if klass.__module__ in _NOT_A_BODY:
                continue  # Machine itself, the enum's classes, str, object
            found = vars(klass).get(name)
            if isinstance(found, (staticmethod, classmethod)) or (
                found is not None and callable(found)
            ):
                return found
        return None

    def ready(self, callback: Callback, what: str) -> Ready:
        if not isinstance(callback, str):
            return _ready(callback, callback, getattr(callback, "__name__", repr(callback)))
        name = callback
        if name in self.fields:
            return operator.attrgetter(name), False, False, name
        attribute = inspect.getattr_static(self.owner, name, None)
        if isinstance(attribute, property) and attribute.fget is not None:
            # read from the object when sent: a property patched later is the one read
            return operator.attrgetter(name), False, False, name
        if (attribute is not None and callable(attribute)) or isinstance(
            attribute, (staticmethod, classmethod)
        ):
            function = getattr(self.owner, name)
            call, takes, is_async, _ = _ready(function, function, name)
            if not takes and not is_async:  # looked up on the object each time: patchable
                call = self.callers.setdefault(name, operator.methodcaller(name))
            return call, takes, is_async, name
        body = self.in_machine(name)
        if body is not None:
            return self.from_machine(body, name)
        if not self.pydantic:  # a plain object's attribute, set by its __init__: read when sent
            return operator.attrgetter(name), False, False, name
        raise ConfigurationError(
            f"{self.machine.__name__}: the {what} {name!r} is neither a method, property or "
            f"field of {self.owner.__name__} nor a function of {self.machine.__name__}"
        )

    def from_machine(self, function: Any, name: str) -> Ready:
        if isinstance(function, staticmethod):
            function = function.__func__
        elif isinstance(function, classmethod):
            function = function.__get__(None, self.machine)
        return _ready(function, function, f"{self.machine.__name__}.{name}")


def _ready(call: Callable[..., Any], signature_of: Any, name: str) -> Ready:
    """A callback that takes the entity, and the keywords of send() that its
    signature has room for: True for all (**kwargs), else their names."""
    if inspect.isasyncgenfunction(signature_of):
        raise ConfigurationError(
            f"{name} is an async generator function: a guard or action is a function, "
            "or a coroutine function (awaited by asend)"
        )
    try:
        parameters = list(inspect.signature(signature_of).parameters.values())
    except (TypeError, ValueError):
        parameters = []
    takes: bool | tuple[str, ...] = False
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        takes = True
    elif len(parameters) > 1:
        takes = (
            tuple(
                p.name
                for p in parameters[1:]
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            )
            or False
        )
    is_async = inspect.iscoroutinefunction(signature_of) or inspect.iscoroutinefunction(
        getattr(signature_of, "func", None)  # a functools.partial of one
    )
    return call, takes, is_async, name


def _once(callbacks: list[Ready]) -> tuple[Ready, ...]:
    """Each callback once, though two conventional names name it (on_<event>
    and on_exit_<state> when the event is called exit_<state>)."""
    seen: set[tuple[int, str]] = set()
    kept = []
    for ready in callbacks:
        key = (id(ready[0]), ready[3])
        if key not in seen:
            seen.add(key)
            kept.append(ready)
    return tuple(kept)


def _repeat(what: str) -> Iterable[str]:
    while True:
        yield what


def held_back(binding: Binding, target: Any, source: Any, event: str) -> TransitionError:
    steps = binding.steps[source][event]
    names = sorted(
        {("" if wanted else "not ") + ready[3] for step in steps for ready, wanted in step.guards}
    )
    return refusal(binding, target, source, event, f"held back by its guards ({', '.join(names)})")


def refusal(binding: Binding, target: Any, source: Any, event: str, reason: str) -> TransitionError:
    entity_id = target.__dict__.get("id", "") if hasattr(target, "__dict__") else ""
    return TransitionError(
        binding.machine.__name__,
        getattr(source, "_name_", str(source)),
        event,
        reason,
        entity_id if isinstance(entity_id, str) else "",
    )


def pick(data: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """The keywords of send() a callback takes (by the names of its parameters)."""
    return {name: data[name] for name in names if name in data}


def truth(
    result: object, name: str, binding: Binding, target: Any, source: Any, event: str
) -> bool:
    """A guard's result that is not a bool: its truth, unless it is something
    to await (a guard that is a coroutine in disguise: a partial, a lambda)."""
    if inspect.isawaitable(result) or inspect.isasyncgen(result):
        if inspect.iscoroutine(result):
            result.close()  # never awaited: no warning about it
        raise refusal(
            binding,
            target,
            source,
            event,
            f"the guard {name} returned {type(result).__name__}, which a sync send cannot "
            f"await: send it with `await entity.asend({event!r})`",
        )
    return bool(result)


def moved_meanwhile(binding: Binding, target: Any, source: Any, event: str) -> TransitionError:
    now = getattr(target, binding.field, None)
    return refusal(
        binding,
        target,
        source,
        event,
        f"an action moved it to {getattr(now, '_name_', now)!r} before this move: a send from "
        "an action before a move is refused (send from an action after it)",
    )


def _held(binding: Binding, target: Any, source: Any, event: str) -> TransitionError:
    return held_back(binding, target, source, event)


def too_async(binding: Binding, target: Any, source: Any, event: str) -> TransitionError:
    return refusal(
        binding,
        target,
        source,
        event,
        "its guards or actions are coroutine functions: send it with "
        f"`await entity.asend({event!r})`",
    )


_bind_lock = threading.Lock()


def bind(machine: Machine, owner: type, field: str) -> Binding:
    """Binds machine to owner.field (again, when owner is defined again)."""
    with _bind_lock:
        binding = Binding(machine, owner, field)
        machine._bindings_[(owner, field)] = binding
        machine._bindings_.pop((owner, None), None)
        machine._defaults_.pop(owner, None)
        return binding


def binding_for(machine: Machine, owner: type, field: str | None) -> Binding:
    """The binding of machine to a field of owner: the one field of owner of
    that machine, or the named one. A pydantic model that is not an entity
    binds on first use."""
    if field is not None and not isinstance(field, str):
        raise ConfigurationError(f"field= takes a field's name, not {field!r}")
    found: Binding | None = machine._bindings_.get((owner, field))  # (owner, None): its only one
    if found is not None:
        return found
    fields = _fields_of(machine, owner)
    if field is None and len(fields) == 1:
        field = fields[0]
    if field is None or field not in fields:
        raise ConfigurationError(
            f"{owner.__name__} has no field of {machine.__name__}"
            + (f" called {field!r}" if field is not None else "")
            + (
                f" (it has {', '.join(fields)}; say which with field=...)"
                if len(fields) > 1
                else ""
            )
        )
    found = machine._bindings_.get((owner, field)) or bind(machine, owner, field)
    if len(fields) == 1:
        machine._bindings_[(owner, None)] = found
        machine._defaults_[owner] = found
    return found


def _fields_of(machine: Machine, owner: type) -> list[str]:
    """The fields of owner declared with machine's type: a pydantic model's, or
    the annotations of a plain class or dataclass whose instances have a __dict__."""
    from .._schema import base_type

    if isinstance(owner, type) and issubclass(owner, pydantic.BaseModel):
        return [
            name
            for name, info in owner.model_fields.items()
            if base_type(info.annotation) is machine
        ]
    if not isinstance(owner, type) or not hasattr(owner, "__dict__") or "__slots__" in vars(owner):
        raise ConfigurationError(
            f"a machine moves pydantic models, entities and objects with a __dict__, not {owner!r}"
        )
    params = getattr(owner, "__dataclass_params__", None)
    if params is not None and params.frozen:
        raise ConfigurationError(
            f"{owner.__name__} is a frozen dataclass: a machine cannot move it"
        )
    try:
        hints = typing.get_type_hints(owner)
    except (NameError, TypeError, AttributeError):  # an annotation that does not resolve
        hints = {}  # read them as written
        for klass in reversed(owner.__mro__):
            hints.update(getattr(klass, "__annotations__", {}))
    return [
        name
        for name, hint in hints.items()
        if base_type(hint) is machine or hint in (machine.__name__, machine.__qualname__)
    ]


def _is_entity_class(owner: type) -> bool:
    return hasattr(owner, "__statekeep__") and hasattr(owner, "__statekeep_machines__")
