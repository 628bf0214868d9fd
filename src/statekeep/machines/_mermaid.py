"""A machine as a Mermaid stateDiagram-v2: for docs, and for the dashboard
(with the state an entity is in highlighted)."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigurationError


def mermaid(machine: Any, current: Any = None) -> str:
    try:
        known = current is None or current in machine._table_
    except TypeError:  # unhashable: not a state
        known = False
    if not known:
        raise ConfigurationError(f"{current!r} is not a state of {machine.__name__}")
    ids = {state: _id(state._name_) for state in machine}
    lines = ["stateDiagram-v2"]
    for state, name in ids.items():
        if name != state._name_:  # a name Mermaid reads as a keyword: an id, the name shown
            lines.append(f'    state "{state._name_}" as {name}')
    lines.append(f"    [*] --> {ids[machine._initial_]}")
    for state in machine:
        if state.declared.description:
            lines.append(f"    {ids[state]} : {_text(state.declared.description)}")
    for state, exits in machine._table_.items():
        for event, transitions in exits.items():
            for transition in transitions:
                guards = [_name(c) for c in transition.cond] + [
                    f"not {_name(c)}" for c in transition.unless
                ]
                label = event + (f" [{' and '.join(guards)}]" if guards else "")
                lines.append(f"    {ids[state]} --> {ids[transition.target]} : {label}")
    for state in machine:
        if state.final:
            lines.append(f"    {ids[state]} --> [*]")
    if current is not None:
        lines.append("    classDef current fill:#fde68a,stroke:#b45309,stroke-width:2px")
        lines.append(f"    class {ids[machine(current)]} current")
    return "\n".join(lines) + "\n"


# words Mermaid's state diagrams read as keywords (a state of one of these names gets an id)
_KEYWORDS = frozenset(
    {
        "acctitle",
        "accdescr",
        "as",
        "class",
        "classdef",
        "click",
        "default",
        "direction",
        "end",
        "hide",
        "left",
        "linkstyle",
        "note",
        "of",
        "over",
        "right",
        "scale",
        "state",
        "statediagram",
        "style",
    }
)


def _id(name: str) -> str:
    return f"{name}_state" if name.lower() in _KEYWORDS or name.startswith("_") else name


def _name(callback: object) -> str:
    return callback if isinstance(callback, str) else getattr(callback, "__name__", "guard")


def _text(value: str) -> str:
    """Text Mermaid shows as it is (no line breaks, no colons that end a label)."""
    return " ".join(value.replace(":", " -").split())
