"""What a machine's class body declares: states, and events made of transitions.

    idle = State(initial=True)
    start = idle.to(active, cond="has_devices")
    end = (active | paused).to(done)        # one event from several states
    stop = active.to(done) | idle.to(x)     # events joined (type checkers: # type: ignore)

`State.to` is typed as returning a callable (`Flow.start(session)` moves a
session), which is also what keeps type checkers from counting an event among
the enum's states; at run time it is a `TransitionSpec`, a descriptor, which
keeps the enum from making it a member.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ..errors import ConfigurationError

E = TypeVar("E")

# a guard or an action: the name of a method of the entity (or of a function in
# the machine's body), or a function that takes the entity
Callback = str | Callable[..., Any]


def _callbacks(value: Callback | Sequence[Callback] | None, what: str) -> tuple[Callback, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or callable(value):
        found: tuple[Any, ...] = (value,)
    elif isinstance(value, (list, tuple)):
        found = tuple(value)
    else:
        raise ConfigurationError(
            f"{what} takes a method name, a function, or a list of them, not {value!r}"
        )
    for item in found:
        if not (isinstance(item, str) and item.isidentifier()) and not callable(item):
            raise ConfigurationError(f"{what} takes method names or functions, not {item!r}")
    return found


class State:
    """A state of a machine, declared in its body: `paused = State()`.

    initial: where a new entity starts (one state per machine); final: a
    state with no way out; enter / exit: actions run on entering or leaving
    it (besides the entity's `on_enter_<state>` / `on_exit_<state>`)."""

    __slots__ = ("description", "enter", "exit", "final", "initial", "name")

    def __init__(
        self,
        description: str = "",
        *,
        initial: bool = False,
        final: bool = False,
        enter: Callback | Sequence[Callback] | None = None,
        exit: Callback | Sequence[Callback] | None = None,
    ) -> None:
        for flag, value in (("initial", initial), ("final", final)):
            if not isinstance(value, bool):
                raise ConfigurationError(f"State({flag}=...) takes True or False, not {value!r}")
        if not isinstance(description, str):
            raise ConfigurationError(f"a state's description is text, not {description!r}")
        self.description, self.initial, self.final = description, initial, final
        self.enter = _callbacks(enter, "State(enter=...)")
        self.exit = _callbacks(exit, "State(exit=...)")
        self.name = ""  # set by the machine's class

    def __repr__(self) -> str:
        return f"State({self.name or '?'})"

    def to(
        self,
        target: State,
        *,
        cond: Callback | Sequence[Callback] | None = None,
        unless: Callback | Sequence[Callback] | None = None,
        before: Callback | Sequence[Callback] | None = None,
        after: Callback | Sequence[Callback] | None = None,
        internal: bool = False,
    ) -> Callable[[E], E]:
        """A transition from this state to target, as an event of its own
        (name it by assigning it in the machine's body).

        cond: guards that must all hold; unless: guards that must all fail;
        before / after: actions run before leaving this state and after
        entering target; internal: a transition to the same state that runs
        no exit or enter actions."""
        return TransitionSpec([_transition(self, target, cond, unless, before, after, internal)])

    def __or__(self, other: State | Sources) -> Sources:
        return Sources([self]) | other


class Sources:
    """Several states, to declare one event from each: `(active | paused).to(done)`."""

    __slots__ = ("states",)

    def __init__(self, states: list[State]) -> None:
        self.states = states

    def __or__(self, other: State | Sources) -> Sources:
        if isinstance(other, State):
            return Sources([*self.states, other])
        if isinstance(other, Sources):
            return Sources([*self.states, *other.states])
        return NotImplemented

    def to(
        self,
        target: State,
        *,
        cond: Callback | Sequence[Callback] | None = None,
        unless: Callback | Sequence[Callback] | None = None,
        before: Callback | Sequence[Callback] | None = None,
        after: Callback | Sequence[Callback] | None = None,
        internal: bool = False,
    ) -> Callable[[E], E]:
        """A transition from each of these states to target (see State.to)."""
        return TransitionSpec(
            [
                _transition(source, target, cond, unless, before, after, internal)
                for source in self.states
            ]
        )


class Transition:
    """One declared transition: source -> target, with its guards and actions.
    (After the machine's class is made, source and target are its members.)"""

    __slots__ = ("after", "before", "cond", "internal", "source", "target", "unless")

    def __init__(
        self,
        source: Any,
        target: Any,
        cond: tuple[Callback, ...],
        unless: tuple[Callback, ...],
        before: tuple[Callback, ...],
        after: tuple[Callback, ...],
        internal: bool,
    ) -> None:
        self.source, self.target = source, target
        self.cond, self.unless = cond, unless
        self.before, self.after = before, after
        self.internal = internal

    def __repr__(self) -> str:
        return f"Transition({self.source} -> {self.target})"


def _transition(
    source: State,
    target: object,
    cond: Callback | Sequence[Callback] | None,
    unless: Callback | Sequence[Callback] | None,
    before: Callback | Sequence[Callback] | None,
    after: Callback | Sequence[Callback] | None,
    internal: bool,
) -> Transition:
    if not isinstance(target, State):
        raise ConfigurationError(f"{source!r}.to() takes a State of the machine, not {target!r}")
    if not isinstance(internal, bool):
        raise ConfigurationError(f"internal takes True or False, not {internal!r}")
    if internal and target is not source:
        raise ConfigurationError(
            "internal=True is for a transition from a state to itself (no exit or enter "
            f"actions); {source!r} -> {target!r} leaves the state"
        )
    return Transition(
        source,
        target,
        _callbacks(cond, "cond"),
        _callbacks(unless, "unless"),
        _callbacks(before, "before"),
        _callbacks(after, "after"),
        internal,
    )


_NONE: dict[str, Any] = {}


class TransitionSpec:
    """An event of a machine: its transitions, in the order declared (the
    first whose guards hold is taken). Called with an entity, it sends
    itself to it: `Flow.start(session)` is `session.send("start")`."""

    __slots__ = ("machine", "name", "send_to", "transitions")

    def __init__(self, transitions: list[Transition]) -> None:
        self.transitions = transitions
        self.name = ""  # set by the machine's class
        self.machine: Any = None  # the Machine class, once made
        self.send_to: Any = None  # (target, event, field, data) -> None, once made

    def __or__(self, other: object) -> TransitionSpec:
        if not isinstance(other, TransitionSpec):
            return NotImplemented
        return TransitionSpec([*self.transitions, *other.transitions])

    def __get__(self, instance: object, owner: type | None = None) -> TransitionSpec:
        return self  # a descriptor: the enum does not make it a state

    def __call__(self, entity: E, /, **data: Any) -> E:
        # the common case in a few lines: the class's only binding, a state it
        # declares this event from (see statekeep.machines._send.send_bound)
        binding = self.machine._defaults_.get(entity.__class__) if self.machine else None
        if binding is not None:
            source = entity.__dict__.get(binding.field)
            go = binding.go.get(source, _NONE).get(self.name)
            if go is not None:
                go(entity, data, source)
                return entity
        if self.send_to is None:
            raise ConfigurationError("an event is sent once its machine's class is made")
        self.send_to(entity, self.name, None, data)  # binds, or says why not
        return entity

    async def asend(self, entity: E, /, **data: Any) -> E:
        """`await Flow.start.asend(session)`: awaiting async guards and actions."""
        if self.machine is None:
            raise ConfigurationError("an event is sent once its machine's class is made")
        await self.machine.asend(entity, self.name, **data)
        return entity

    def __repr__(self) -> str:
        owner = self.machine.__name__ if self.machine is not None else "?"
        return f"<event {owner}.{self.name or '?'}: {len(self.transitions)} transition(s)>"
