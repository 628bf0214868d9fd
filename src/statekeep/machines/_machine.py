"""Machine: a state machine declared once, as an enum of its states.

    class Flow(statekeep.Machine):
        idle = State(initial=True)
        active, done = State(), State(final=True)
        start = idle.to(active)
        end = active.to(done)

    class Job(statekeep.Entity):
        state: Flow = Flow.idle    # an indexed column; type checkers see the enum

The class is an enum (str-valued: `Flow.idle == "idle"`), so a field of its
type is validated, stored and compared like any enum, and a type checker
knows its members; its events are descriptors beside them. The class is
checked when it is made (ConfigurationError): one initial state, every state
reachable from it, a way out of every state that is not final and none out of
a final one. Guard and action names are checked when an entity class binds
the machine to a field.
"""

from __future__ import annotations

import enum
import functools
from typing import Any, ClassVar, Self

from ..errors import ConfigurationError
from ._binding import Binding, bind, binding_for
from ._define import State, Transition, TransitionSpec
from ._mermaid import mermaid
from ._send import asend, asend_bound, can_send, send, send_bound

# what every machine class has: a state or an event of one of these names would hide it
RESERVED = frozenset(
    {
        "send",
        "asend",
        "allowed_events",
        "can_send",
        "states",
        "events",
        "transitions",
        "initial",
        "finals",
        "history",
        "to_mermaid",
        "final",
        "description",
        "exits",
        "declared",
        "bindings",
        "name",
        "value",
        "mro",
    }
)


_BODY_CLASSES: dict[type, type] = {}


def _body_class(enum_dict: Any) -> type:
    """The enum's class-body namespace, with what it refuses (a name used
    twice, a _sunder_ name) raised as ConfigurationError."""
    found = _BODY_CLASSES.get(enum_dict)
    if found is None:
        set_item: Any = enum_dict.__setitem__

        def checked_set(self: Any, key: str, value: Any) -> None:
            try:
                set_item(self, key, value)
            except (TypeError, ValueError) as exc:
                raise ConfigurationError(
                    f"{getattr(self, '_cls_name', 'a machine')}.{key}: {exc}"
                ) from exc

        found = _BODY_CLASSES[enum_dict] = type(
            "MachineBody", (enum_dict,), {"__setitem__": checked_set}
        )
    return found


class MachineType(enum.EnumType):
    """The metaclass of machines: names the states and events of a class
    body, makes the enum, then reads its transition table."""

    @classmethod
    def __prepare__(  # type: ignore[override]
        cls, name: str, bases: tuple[type, ...], /, **kwds: Any
    ) -> Any:
        kwds.pop("history", None)
        try:
            body = super().__prepare__(name, bases, **kwds)
        except (TypeError, ValueError) as exc:  # e.g. extending a machine that has states
            raise ConfigurationError(f"{name}: {exc}") from exc
        body.__class__ = _body_class(type(body))  # the enum's mistakes as ConfigurationErrors
        return body

    def __new__(
        metacls,
        cls: str,
        bases: tuple[type, ...],
        classdict: Any,
        *,
        history: bool = False,
        **kwds: Any,
    ) -> MachineType:
        if not isinstance(history, bool):
            raise ConfigurationError(f"{cls}: history takes True or False, not {history!r}")
        history = history or any(getattr(base, "_history_", False) for base in bases)
        members = list(getattr(classdict, "_member_names", ()))
        clash = sorted(RESERVED.intersection(members))
        if clash:
            raise ConfigurationError(
                f"{cls}: {', '.join(clash)} would hide what every machine has "
                f"({', '.join(sorted(RESERVED))}); rename them"
            )
        declared: dict[str, State] = {}
        for name in members:
            value = classdict[name]
            if not isinstance(value, State):
                raise ConfigurationError(
                    f"{cls}.{name} = {value!r}: a machine's body holds states (State()), "
                    "events (state.to(...)) and functions"
                )
            if value.name:
                raise ConfigurationError(
                    f"{cls}.{name}: this State is already {value.name!r}; "
                    "make one State() per state"
                )
            value.name = name
            declared[name] = value
        events = {
            name: value for name, value in classdict.items() if isinstance(value, TransitionSpec)
        }
        try:
            made = super().__new__(metacls, cls, bases, classdict, **kwds)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"{cls}: {exc}") from exc
        if members or events:
            _compile(made, declared, events, history)  # type: ignore[arg-type]
        else:  # a machine without states (a base for others): empty, but whole
            made._table_, made._events_, made._initial_ = {}, {}, None  # type: ignore[attr-defined]
            made._bindings_, made._defaults_ = {}, {}  # type: ignore[attr-defined]
            made._history_ = history  # type: ignore[attr-defined]
        return made

    # -- introspection: SessionFlow.states, .events, ... ---------------------------
    @property
    def states(cls) -> tuple[Any, ...]:
        """Every state, in the order declared."""
        return tuple(cls)

    @property
    def initial(cls) -> Any:
        """The state a new entity starts in."""
        return cls._initial_  # type: ignore[attr-defined]

    @property
    def finals(cls) -> frozenset[Any]:
        """The final states (no way out)."""
        return frozenset(state for state in cls._table_ if state.final)  # type: ignore[attr-defined]

    @property
    def events(cls) -> tuple[str, ...]:
        """Every event's name, in the order declared."""
        return tuple(cls._events_)  # type: ignore[attr-defined]

    @property
    def transitions(cls) -> list[tuple[Any, str, Any]]:
        """(source, event, target) for every declared transition."""
        table: dict[Any, dict[str, tuple[Transition, ...]]] = cls._table_  # type: ignore[attr-defined]
        return [
            (state, event, transition.target)
            for state, exits in table.items()
            for event, transitions in exits.items()
            for transition in transitions
        ]

    @property
    def history(cls) -> bool:
        """Do store.send and transition_many write a history record per move?"""
        return bool(cls._history_)  # type: ignore[attr-defined]


class Machine(enum.StrEnum, metaclass=MachineType):
    """A state machine: subclass it, declare its states and events, and give
    an entity a field of its type."""

    # set on each machine class when it is made
    __statekeep_indexed__: ClassVar[bool] = True  # a field of its type is an indexed column
    _table_: ClassVar[dict[Any, dict[str, tuple[Transition, ...]]]]
    _events_: ClassVar[dict[str, TransitionSpec]]
    _initial_: ClassVar[Any]
    _history_: ClassVar[bool]
    _bindings_: ClassVar[dict[tuple[type, str | None], Binding]]
    _defaults_: ClassVar[dict[type, Binding]]  # a class's binding when it has one field of it

    def __new__(cls, value: object) -> Self:
        if not isinstance(value, State):  # an enum lookup by value goes through the metaclass
            raise ConfigurationError(f"{cls.__name__}: {value!r} is not a state")
        member = str.__new__(cls, value.name)
        member._value_ = value.name
        return member

    def __repr__(self) -> str:
        return f"{type(self).__name__}.{self._name_}"

    # the text's own hash, in C: Enum's (a Python function) is a third of a send's time
    __hash__ = str.__hash__

    @property
    def final(self) -> bool:
        return bool(self.declared.final)

    @property
    def description(self) -> str:
        return str(self.declared.description)

    @property
    def declared(self) -> State:
        return _DECLARED[type(self)][self._name_]

    def exits(self) -> tuple[str, ...]:
        """The events declared from this state."""
        return tuple(type(self)._table_[self])

    @classmethod
    def to_mermaid(cls, current: object = None) -> str:
        """The machine as a Mermaid stateDiagram-v2, with current (a state)
        highlighted."""
        return mermaid(cls, current)

    # -- sending ---------------------------------------------------------------
    @classmethod
    def send(cls, target: Any, event: str, /, *, field: str | None = None, **data: Any) -> None:
        """Moves target (an entity, a pydantic model or an object with a field
        of this machine) by event, in memory (see statekeep.Entity.send)."""
        binding = cls._defaults_.get(target.__class__) if field is None else None
        if binding is not None and isinstance(event, str):  # the common case, in a few lines
            source = target.__dict__.get(binding.field)
            go = binding.go.get(source, _NONE).get(event)
            if go is not None:
                go(target, data, source)
                return
        send(cls, target, event, field, data)  # binds, or says why not

    @classmethod
    async def asend(
        cls, target: Any, event: str, /, *, field: str | None = None, **data: Any
    ) -> None:
        await asend(cls, target, event, field, data)

    @classmethod
    def allowed_events(cls, target: Any, /, *, field: str | None = None) -> list[str]:
        """The events declared from target's current state (guards not evaluated)."""
        binding = binding_for(cls, type(target), field)
        return list(binding.exits_of(target))

    @classmethod
    def can_send(cls, target: Any, event: str, /, *, field: str | None = None, **data: Any) -> bool:
        """Would send() take event now? (Guards evaluated; sync guards only.)"""
        return can_send(cls, target, event, field, data)

    @classmethod
    def __statekeep_bind__(cls, owner: type, field: str) -> Sender:
        """An entity class declares a field of this machine: its guards and
        actions are found now (ConfigurationError for a name it lacks); the
        entity's send() calls what this returns."""
        return Sender(bind(cls, owner, field))


class Sender:
    """What an entity's send(), asend() and allowed_events() call for one of
    its machine fields (statekeep.Entity.send)."""

    __slots__ = ("allowed_events", "asend", "binding", "finish", "machine", "send")

    def __init__(self, binding: Binding) -> None:
        self.binding, self.machine = binding, binding.machine
        self.send = functools.partial(send_bound, binding)
        # called by the entity class once its own collection is claimed: the
        # history collection is claimed then (a clash refused with the class)
        self.finish = binding.history_class
        self.asend = functools.partial(asend_bound, binding)
        self.allowed_events = lambda target: list(binding.exits_of(target))


_NONE: dict[str, Any] = {}

# the State objects each machine's body declared, by name
_DECLARED: dict[type, dict[str, State]] = {}


def _compile(
    cls: type[Machine], states: dict[str, State], events: dict[str, TransitionSpec], history: bool
) -> None:
    name = cls.__name__
    clash = sorted(RESERVED.intersection([*states, *events]))
    if clash:
        raise ConfigurationError(
            f"{name}: {', '.join(clash)} would hide what every machine has "
            f"({', '.join(sorted(RESERVED))}); rename them"
        )
    if not states:
        raise ConfigurationError(f"{name} declares events but no State()")
    _DECLARED[cls] = states
    by_state = {id(state): cls[state_name] for state_name, state in states.items()}
    initial = [cls[n] for n, s in states.items() if s.initial]
    if len(initial) != 1:
        raise ConfigurationError(
            f"{name} must mark one state initial=True, not "
            + (", ".join(str(s) for s in initial) if initial else "none")
        )
    table: dict[Any, dict[str, list[Transition]]] = {cls[n]: {} for n in states}
    seen: dict[int, str] = {}
    for event_name, spec in events.items():
        if id(spec) in seen:
            raise ConfigurationError(
                f"{name}: {event_name} and {seen[id(spec)]} are one event; declare each once"
            )
        seen[id(spec)] = event_name
        if event_name.startswith("_"):
            raise ConfigurationError(f"{name}.{event_name}: an event's name cannot start with _")
        spec.name, spec.machine = event_name, cls
        spec.send_to = functools.partial(send, cls)
        for transition in spec.transitions:
            for end in (transition.source, transition.target):
                if isinstance(end, State) and id(end) not in by_state:
                    raise ConfigurationError(
                        f"{name}.{event_name}: {end!r} is not a state of {name}"
                    )
            if isinstance(transition.source, State):  # a spec is compiled once
                transition.source = by_state[id(transition.source)]
                transition.target = by_state[id(transition.target)]
            table[transition.source].setdefault(event_name, []).append(transition)
    finals = {cls[n] for n, s in states.items() if s.final}
    for state, exits in table.items():
        if state in finals and exits:
            raise ConfigurationError(
                f"{name}.{state._name_} is final but has events out: {', '.join(exits)}"
            )
        if state not in finals and not exits:
            raise ConfigurationError(
                f"{name}.{state._name_} has no way out: declare an event from it, or mark it "
                "final=True"
            )
    reached = {initial[0]}
    todo = [initial[0]]
    while todo:
        for transitions in table[todo.pop()].values():
            for transition in transitions:
                if transition.target not in reached:
                    reached.add(transition.target)
                    todo.append(transition.target)
    lost = [state._name_ for state in table if state not in reached]
    if lost:
        raise ConfigurationError(
            f"{name}: no event leads from {initial[0]._name_} to {', '.join(lost)}"
        )
    cls._table_ = {
        state: {e: tuple(ts) for e, ts in exits.items()} for state, exits in table.items()
    }
    cls._events_ = dict(events)
    cls._initial_ = initial[0]
    cls._history_ = history
    cls._bindings_ = {}
    cls._defaults_ = {}
