"""The updates an AppState applies: a value set at a path, a key removed, a
function run on a draft. Each applies to a root and returns the new root,
recording the paths it changed. A set is validated when it is made (in the
caller's thread, so a bad value raises there even when the update waits
for its frame); a function runs when the update is applied.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import ValidationError
from ._draft import Changes, Draft, draft_of, finish
from ._node import Map, replaced
from ._paths import Path, read_parent, remove, write
from ._shape import ListShape, Shape, frozen_kind


class SetValue:
    __slots__ = ("path", "value")

    def __init__(self, path: Path, value: Any) -> None:
        self.path = path
        self.value = value  # frozen and valid

    def apply(self, root: Any, changed: dict[tuple[Any, ...], None]) -> Any:
        new = write(root, self.path, self.value)
        changed[self.path.concrete(root)] = None
        return new


class SetKey:
    """A key of a model's dict field of scalars set to a value of its exact
    type (checked by the caller), made without resolving a path: a NORMAL
    set of a meter, the hottest waiting update. One small object, since
    thousands may wait for a frame (each one the garbage collector walks):
    its path is itself."""

    __slots__ = ("index", "key", "name", "value")
    field_then_key = True

    def __init__(self, index: int, name: str, key: Any, value: Any) -> None:
        self.index = index  # the field's index in the root Node
        self.name = name
        self.key = key
        self.value = value

    @property
    def path(self) -> SetKey:
        return self

    @property
    def keys(self) -> tuple[Any, Any]:
        return (self.index, self.key)

    @property
    def names(self) -> tuple[Any, Any]:
        return (self.name, self.key)

    def apply(self, root: Any, changed: dict[tuple[Any, ...], None]) -> Any:
        index = self.index
        new = replaced(root, index, root[index].set(self.key, self.value))
        changed[(self.name, self.key)] = None
        return new


class Remove:
    __slots__ = ("path",)

    def __init__(self, path: Path) -> None:
        self.path = path

    def apply(self, root: Any, changed: dict[tuple[Any, ...], None]) -> Any:
        new = remove(root, self.path)
        names = self.path.concrete(root)
        if (
            isinstance(self.path.containers[-1], ListShape)
            or type(read_parent(root, self.path)) is tuple
        ):
            names = names[:-1]  # the items after it move: the list changed
        changed[names] = None
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
        try:
            result = self.fn(draft)
        finally:
            made = changes.paths
            changes.close()
        if result is not None and result is not draft:
            if isinstance(result, Draft) or (  # a part: `lambda d: d.items.pop()`
                frozen_kind(result) and type(result) is not type(root)
            ):
                raise ValidationError(
                    "update(fn): fn returned a part of the draft; change the draft and "
                    "return None, or return a whole new value of the state"
                )
            new = self.shape.freeze(result, "")
            if new is not root:
                changed[()] = None
            return new
        new = finish(draft)
        if new is not root:
            changed.update(made)
        return new


class Finished:
    """A batch's draft, finished when applied (at the end of its `with`)."""

    __slots__ = ("changes", "draft")

    def __init__(self, draft: Any, changes: Changes) -> None:
        self.draft = draft
        self.changes = changes

    def apply(self, root: Any, changed: dict[tuple[Any, ...], None]) -> Any:
        made = self.changes.paths
        self.changes.close()
        new = finish(self.draft)
        if new is not root:
            changed.update(made)
        return new


class SetMany:
    """Consecutive sets of keys of one dict field ("meters.left", "meters.right",
    ...), as waiting NORMAL updates of a meter often are: one mutation of the
    dict, one copy of it, however many sets (the last of a key wins)."""

    __slots__ = ("sets",)

    def __init__(self, sets: list[SetValue | SetKey]) -> None:
        self.sets = sets

    def apply(self, root: Any, changed: dict[tuple[Any, ...], None]) -> Any:
        field = self.sets[0].path.keys[0]
        mapping = root[field]
        if type(mapping) is not Map:  # None (an optional field): each as it would fail
            for one in self.sets:
                root = one.apply(root, changed)
            return root
        with mapping.mutate() as mutation:
            for one in self.sets:
                mutation[one.path.keys[1]] = one.value
                changed[one.path.names] = None
            return replaced(root, field, mutation.finish())


_SETS = frozenset({SetValue, SetKey})


def grouped(updates: list[Any]) -> list[Any]:
    """updates, with each run of sets of one dict field's keys made one SetMany."""
    out: list[Any] = []
    run: list[SetValue | SetKey] = []
    field = None
    for update in updates:
        if type(update) in _SETS and update.path.field_then_key:
            if run and update.path.keys[0] == field:
                run.append(update)
                continue
            _close(run, out)
            run, field = [update], update.path.keys[0]
            continue
        _close(run, out)
        run, field = [], None
        out.append(update)
    _close(run, out)
    return out


def _close(run: list[SetValue | SetKey], out: list[Any]) -> None:
    if len(run) > 1:
        out.append(SetMany(run))
    elif run:
        out.append(run[0])
