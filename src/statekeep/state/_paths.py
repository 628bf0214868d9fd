"""Paths into a state: `"doc.paragraphs.3.text"` or `("meters", "left")`.

A path is resolved once against the state's Shape (and cached): each part
becomes the key its container is read with (a field's index in its Node, a
dict key of the declared key type, a list index), and the Shape at its end
validates what is set there. Use a tuple when a dict key holds a dot or is
not a string.

`read`, `write` and `remove` give a new tree with one value changed: the
containers along the path are copied, everything else is shared.
"""

from __future__ import annotations

import contextlib
from typing import Any

from ..errors import StatePathError
from ._node import Map, replaced, values_of
from ._shape import ListShape, MapShape, ModelShape, OptionalShape, Shape

PathLike = str | tuple[Any, ...]
_tuple = tuple.__new__


class Path:
    __slots__ = ("changes", "containers", "field_then_key", "keys", "names", "negative", "shape")

    def __init__(
        self,
        names: tuple[Any, ...],
        keys: tuple[Any, ...],
        containers: tuple[Shape, ...],
        shape: Shape,
        negative: bool | None = None,
    ) -> None:
        self.names = names  # what subscriptions see: field names, dict keys, indices
        self.keys = keys  # what containers are read with (a field's index in its Node)
        self.containers = containers
        self.shape = shape
        self.changes = (names,)  # what a set of it changes, as versions record it
        # a model's dict field, then one key of it ("meters.left"): the hot path of set
        self.field_then_key = (
            len(keys) == 2
            and isinstance(containers[0], ModelShape)
            and isinstance(containers[1], MapShape)
            and not containers[1].checked
        )
        if negative is None:  # a list index from the end: what a change records depends on the list
            negative = any(
                type(k) is int and k < 0 and isinstance(c, ListShape)
                for k, c in zip(keys, containers, strict=True)
            )
        self.negative = negative

    def then(self, part: Any) -> Path:
        """This path and one part more."""
        shape = self.shape
        try:
            key, child = shape.child(part, "")
        except StatePathError:  # again, to say where (made only for the error)
            shape.child(part, f"{self.text}.{part}" if self.names else str(part))
            raise
        inner = shape.inner if isinstance(shape, OptionalShape) else shape
        negative = self.negative or (type(key) is int and key < 0 and isinstance(inner, ListShape))
        path = Path(
            (*self.names, part if isinstance(inner, ModelShape) else key),
            (*self.keys, key),
            (*self.containers, inner),
            child,
            negative,
        )
        if inner is not shape:  # a key of a dict that may be None: each set fails on its own
            path.field_then_key = False
        return path

    @property
    def text(self) -> str:
        return ".".join(str(n) for n in self.names)

    def concrete(self, root: Any) -> tuple[Any, ...]:
        """names, with an index from the end made the index it is in root."""
        if not self.negative:
            return self.names
        names = list(self.names)
        value = root
        for depth, (key, container) in enumerate(zip(self.keys, self.containers, strict=True)):
            if isinstance(container, ListShape) and type(key) is int and key < 0 and value:
                names[depth] = key % len(value)
            value = _step(value, container, key, self, depth)
        return tuple(names)


class Resolver:
    """Resolves paths against one root Shape; remembers up to `limit` of them."""

    __slots__ = ("cache", "limit", "root")

    def __init__(self, root: Shape, limit: int = 256) -> None:
        # small on purpose: paths of random dict keys cached longer live on into
        # the garbage collector's older generations, and every full collection
        # then walks them (measured: 14 us a set of a random key of 100,000 with
        # 4,096 paths cached, 7 us with 256)
        self.root = root
        self.limit = limit
        self.cache: dict[PathLike, Path] = {}

    def __call__(self, path: PathLike) -> Path:
        cache = self.cache
        try:
            found = cache.get(path)
        except TypeError:  # a list, or a tuple holding something unhashable
            found = None
        if found is not None:
            return found
        kind = type(path)
        if kind is tuple:
            parts: tuple[Any, ...] = path  # type: ignore[assignment]
        elif kind is str or isinstance(path, str):
            parts = tuple(path.split(".")) if path else ()  # type: ignore[union-attr]
        elif isinstance(path, tuple):
            parts = tuple(path)
        else:
            raise StatePathError(
                f"a path is a string ('doc.title') or a tuple of parts, not {path!r}", repr(path)
            )
        if not parts:
            resolved = Path((), (), (), self.root, False)
        else:
            last = parts[-1]
            if last == "":
                raise StatePathError(f"{path!r}: a path has no empty parts", str(path))
            prefix = parts[:-1]
            parent = cache.get(prefix) or self(prefix)
            resolved = parent.then(last)
        if len(cache) >= self.limit:
            cache.clear()
        with contextlib.suppress(TypeError):  # a tuple holding something unhashable: not cached
            cache[path] = resolved
        return resolved


def _step(value: Any, container: Shape, key: Any, path: Path, depth: int) -> Any:
    if value is None:
        raise StatePathError(f"{_upto(path, depth)} is None", path.text)
    try:
        if isinstance(container, ModelShape):
            return values_of(value)[key]
        return value[key]
    except (KeyError, IndexError):
        what = "key" if isinstance(container, MapShape) else "index"
        raise StatePathError(
            f"{path.text}: no {what} {key!r} in {_upto(path, depth)}", path.text
        ) from None
    except TypeError:
        raise StatePathError(f"{path.text}: {_upto(path, depth)} has no parts", path.text) from None


def _upto(path: Path, depth: int) -> str:
    return ".".join(str(n) for n in path.names[:depth]) or "the state"


def read(root: Any, path: Path) -> Any:
    value = root
    for depth, (key, container) in enumerate(zip(path.keys, path.containers, strict=True)):
        value = _step(value, container, key, path, depth)
    return value


def _put(
    container_value: Any, container: Shape, key: Any, child: Any, path: Path, depth: int
) -> Any:
    if container_value is None:
        raise StatePathError(f"{_upto(path, depth)} is None: set it first", path.text)
    if isinstance(container, ModelShape):
        return replaced(container_value, key, child)
    if type(container_value) is Map:
        return container_value.set(key, child)
    if type(container_value) is tuple:
        if not -len(container_value) <= key < len(container_value):
            raise StatePathError(
                f"{path.text}: index {key} is out of range of {_upto(path, depth)} "
                f"({len(container_value)} items); append with update()",
                path.text,
            )
        index = key % len(container_value)
        return (*container_value[:index], child, *container_value[index + 1 :])
    raise StatePathError(
        f"{path.text}: {_upto(path, depth)} cannot be changed at a part", path.text
    )


def write(root: Any, path: Path, value: Any) -> Any:
    """root with value (already frozen) at path."""
    keys, containers = path.keys, path.containers
    if path.field_then_key:  # spelt out: the hot path of set
        field, key = keys
        mapping = root[field]
        if type(mapping) is Map:
            return _tuple(type(root), (*root[:field], mapping.set(key, value), *root[field + 1 :]))
    n = len(keys)
    if n == 0:
        return value
    stack = [root]
    for depth in range(n - 1):
        stack.append(_step(stack[-1], containers[depth], keys[depth], path, depth))
    child = value
    for depth in range(n - 1, -1, -1):
        container = containers[depth]
        child = _put(stack[depth], container, keys[depth], child, path, depth)
        if container.checked:  # a constrained dict or list: valid whole after the change?
            container.check(child, _upto(path, depth))
    return child


def read_parent(root: Any, path: Path) -> Any:
    """The container the last part of path is in."""
    return read(
        root, Path(path.names[:-1], path.keys[:-1], path.containers[:-1], path.containers[-1])
    )


def remove(root: Any, path: Path) -> Any:
    """root without the dict key (or list item) at path."""
    if not path.keys:
        raise StatePathError("the state itself cannot be removed", "")
    container = path.containers[-1]
    if not isinstance(container, MapShape | ListShape) and container.annotation is not Any:
        raise StatePathError(
            f"{path.text}: only a dict key or a list item can be removed", path.text
        )
    parent_path = Path(path.names[:-1], path.keys[:-1], path.containers[:-1], container)
    parent = read(root, parent_path)
    key = path.keys[-1]
    if type(parent) is Map:
        if key not in parent:
            raise StatePathError(f"{path.text}: no key {key!r}", path.text)
        smaller: Any = parent.delete(key)
    elif type(parent) is tuple:
        items = list(parent)
        try:
            del items[key]
        except (IndexError, TypeError):
            raise StatePathError(f"{path.text}: no index {key!r}", path.text) from None
        smaller = tuple(items)
    else:  # None, or a value with no parts (inside an Any field)
        where = parent_path.text or "the state"
        raise StatePathError(
            f"{path.text}: {where} is {_kind(parent)}: it has no key or item to remove", path.text
        )
    if container.checked:
        container.check(smaller, parent_path.text)
    return write(root, parent_path, smaller)


def _kind(value: Any) -> str:
    return "None" if value is None else f"a {type(value).__name__}"
