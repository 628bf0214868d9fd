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
    lines = ["stateDiagram-v2", f"    [*] --> {machine._initial_._name_}"]
    for state in machine:
        if state.declared.description:
            lines.append(f"    {state._name_} : {_text(state.declared.description)}")
    for state, exits in machine._table_.items():
        for event, transitions in exits.items():
            for transition in transitions:
                guards = [_name(c) for c in transition.cond] + [
                    f"not {_name(c)}" for c in transition.unless
                ]
                label = event + (f" [{' and '.join(guards)}]" if guards else "")
                lines.append(f"    {state._name_} --> {transition.target._name_} : {label}")
    for state in machine:
        if state.final:
            lines.append(f"    {state._name_} --> [*]")
    if current is not None:
        lines.append("    classDef current fill:#fde68a,stroke:#b45309,stroke-width:2px")
        lines.append(f"    class {machine(current)._name_} current")
    return "\n".join(lines) + "\n"


def _name(callback: object) -> str:
    return callback if isinstance(callback, str) else getattr(callback, "__name__", "guard")


def _text(value: str) -> str:
    """Text Mermaid shows as it is (no line breaks, no colons that end a label)."""
    return " ".join(value.replace(":", " -").split())
