"""Signal trees and the patches between them.

A page's signals are a tree of JSON objects whose leaves are values. The
server keeps the tree it last sent to a page, and sends only the difference
to the new one: the leaves that changed (as one nested object, which the
client merges) and the paths that went away. A list the page addresses by
element (`todos.3.done`) is sent as an object keyed "0", "1", ... (see
`indexed`); any other list is one value.

Datastar addresses a signal by a dotted path and refuses keys with "__"
anywhere in a patch, so `plain` turns an object with a key that would not
make a path (a dot, "__", an empty key, other characters than letters,
digits, "_" and "-", as user data may have) into a list of [key, value]
pairs, which the page holds as one value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

Tree = dict[str, Any]

_PATH_KEY = re.compile(r"[A-Za-z0-9_-]{1,100}")


def path_key(key: object) -> bool:
    """Whether key can be one step of a signal path."""
    return isinstance(key, str) and _PATH_KEY.fullmatch(key) is not None and "__" not in key


def branches(value: Any) -> bool:
    """Whether value (from `plain`) is a branch of the tree (merged key by key), not a leaf."""
    return isinstance(value, dict) and bool(value)


def indexed(items: Iterable[Any]) -> Tree:
    """A list as the page addresses it by element: {"0": first, "1": second, ...}."""
    return {str(n): item for n, item in enumerate(items)}


def plain(value: Any) -> Any:
    """value as a signal tree: strict JSON (a float that is not finite becomes
    None), and an object whose keys cannot all be paths a list of [key, value]."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        if all(path_key(key) for key in value):
            return {key: plain(item) for key, item in value.items()}
        return [[str(key), plain(item)] for key, item in value.items()]
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def diff(old: Tree, new: Tree, prefix: str = "") -> tuple[Tree, list[str]]:
    """(patch, removed): merging patch into old after removing the removed paths gives new."""
    patch: Tree = {}
    removed: list[str] = []
    for key, value in new.items():
        before = old.get(key, _MISSING)
        if before is value:  # the same object (a row that did not change): nothing to send
            continue
        if before is _MISSING:
            patch[key] = value
        elif branches(value) and branches(before):
            inner, gone = diff(before, value, f"{prefix}{key}.")
            if inner:
                patch[key] = inner
            removed.extend(gone)
        elif before != value or type(before) is not type(value):
            if isinstance(before, dict) or isinstance(value, dict):  # an object for a leaf
                # or back: Datastar merges an object into what is there, so it goes first
                removed.append(prefix + key)
            patch[key] = value
    removed.extend(prefix + key for key in old if key not in new)
    return patch, removed


_MISSING = object()
