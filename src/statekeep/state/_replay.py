"""Updates made inside a batch go into its draft: `state.set()`,
`state.delete()` and `state.update(fn)` called by the thread that holds
`with state.batch() as draft:` change that draft (so the batch stays one
version), replayed here path by path."""

from __future__ import annotations

from typing import Any

from ..errors import StateError, StatePathError
from ._draft import Changes, Draft, NodeDraft, draft_of, finish
from ._shape import Shape
from ._watch import ABSENT, select_absent


def _part(parent: Any, name: Any, where: tuple[Any, ...]) -> Any:
    try:
        if isinstance(parent, NodeDraft):
            return getattr(parent, name)
        return parent[name]
    except (KeyError, IndexError, TypeError, AttributeError):
        text = ".".join(map(str, where))
        raise StatePathError(f"{text}: no such part in the draft", text) from None


def draft_set(draft: Any, names: tuple[Any, ...], value: Any) -> None:
    """Sets value (frozen and valid) at a path of names in a draft."""
    if not names:
        raise StateError("inside batch(), change the draft's parts; the state cannot be replaced")
    parent = draft
    for depth, name in enumerate(names[:-1]):
        parent = _part(parent, name, names[: depth + 1])
    last = names[-1]
    if isinstance(parent, NodeDraft):
        setattr(parent, last, value)
        return
    try:
        parent[last] = value
    except (IndexError, TypeError, KeyError):
        text = ".".join(map(str, names))
        raise StatePathError(f"{text}: no such part in the draft", text) from None


def draft_remove(draft: Any, names: tuple[Any, ...]) -> None:
    """Removes the dict key or list item at a path of names in a draft."""
    parent = draft
    for depth, name in enumerate(names[:-1]):
        parent = _part(parent, name, names[: depth + 1])
    try:
        del parent[names[-1]]
    except (IndexError, TypeError, KeyError, AttributeError):
        text = ".".join(map(str, names))
        raise StatePathError(f"{text}: no such key or item in the draft", text) from None


def run_in(draft: Any, fn: Any, shape: Shape) -> None:
    """fn(a draft of draft's value now); what it changed goes into draft only
    if it returns normally (a raising fn leaves draft as it was)."""
    base = draft._peek() if isinstance(draft, Draft) else draft
    changes = Changes()
    inner = draft_of(base, shape, (), changes)
    try:
        result = fn(inner)
    finally:
        changes_made = changes.paths
        changes.close()
    if result is not None and result is not inner:
        raise StateError("inside batch(), update() changes the draft; it cannot replace it")
    after = finish(inner)
    if after is base:
        return
    done: set[tuple[Any, ...]] = set()
    for path in sorted(changes_made, key=len):
        if any(path[:i] in done for i in range(len(path))):
            continue  # under a path copied whole
        done.add(path)
        value = select_absent(after, path)
        if value is ABSENT:
            if select_absent(base, path) is not ABSENT:  # (not a key fn added and removed)
                draft_remove(draft, path)
        else:
            draft_set(draft, path, value)
