"""The updates an AppState applies: a value set at a path, a key removed, a
function run on a draft. Each applies to a root and returns the new root,
recording the paths it changed. A set is validated when it is made (in the
caller's thread, so a bad value raises there even when the update waits
for its frame); a function runs when the update is applied.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._draft import Changes, draft_of, finish
from ._paths import Path, remove, write
from ._shape import Shape


class SetValue:
    __slots__ = ("path", "value")

    def __init__(self, path: Path, value: Any) -> None:
        self.path = path
        self.value = value  # frozen and valid

    def apply(self, root: Any, changed: dict[tuple[Any, ...], None]) -> Any:
        new = write(root, self.path, self.value)
        changed[self.path.names] = None
        return new


class Remove:
    __slots__ = ("path",)

    def __init__(self, path: Path) -> None:
        self.path = path

    def apply(self, root: Any, changed: dict[tuple[Any, ...], None]) -> Any:
        new = remove(root, self.path)
        changed[self.path.names] = None
        return new


class Run:
    """fn(draft): changes the draft in place, or returns a whole new value."""

    __slots__ = ("fn", "shape")

    def __init__(self, fn: Callable[[Any], Any], shape: Shape) -> None:
        self.fn = fn
        self.shape = shape

    def apply(self, root: Any, changed: dict[tuple[Any, ...], None]) -> Any:
        changes = Changes()
        draft = draft_of(root, self.shape, (), changes)
        result = self.fn(draft)
        if result is not None and result is not draft:
            new = self.shape.freeze(finish(result), "")
            if new is not root:
                changed[()] = None
            return new
        new = finish(draft)
        if new is not root:
            changed.update(changes.paths)
        return new


class Finished:
    """A batch's draft, finished when applied (at the end of its `with`)."""

    __slots__ = ("changes", "draft")

    def __init__(self, draft: Any, changes: Changes) -> None:
        self.draft = draft
        self.changes = changes

    def apply(self, root: Any, changed: dict[tuple[Any, ...], None]) -> Any:
        new = finish(self.draft)
        if new is not root:
            changed.update(self.changes.paths)
        return new
