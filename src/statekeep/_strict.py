"""Serializer warnings as errors, without asking pydantic-core for it on every call.

A body is stored only if pydantic-core serialised it without a warning (a
value of the wrong type, set past validation: `model_construct`, a list
mutated in place). `to_json(..., warnings="error")` says so, but parsing that
string costs pydantic-core about 3 us a call, more than the rest of the call;
`warnings=True` costs nothing, and issues the warning through Python's
warnings machinery instead, attributed to the module that called to_json.

StrictWarnings keeps `warnings=True` exactly as strict, for one calling module:

- One filter of ours, ("error", "Pydantic serializer warnings", UserWarning,
  that module), is put at the front of warnings.filters if it is not in the
  list, so that the warning is raised (the caller then serialises once more
  with "error" for pydantic's own error). Users' filters stay as they were.
- `arm()` before a call says whether that filter (or another "error" filter)
  is the first to match the warning: the list is walked again only when its
  identity, its length or its first entry changed. If not, the call passes
  "error", as before. This only spares a warning being shown; what keeps a
  bad body out is the next point.
- The module's `__warningregistry__` holds a token of ours and the version
  -1. Python clears a registry whose version is not the filters' version
  before it looks at the filters, so *every* warning issued from the module
  clears it, whatever the filters then do with it: ignore it, show it, or
  raise it. `intact(token)` after a call is false if any warning was issued
  meanwhile (by any thread), and the caller serialises again with "error".
  So a thread that changes the filters mid-call (catch_warnings(), -W
  ignore, simplefilter) can cost a second serialisation, never a bad body.
  A token is a new object each time, so a token put back by another thread
  is not mistaken for the one a call started with.

With context-aware warnings (Python 3.14+, sys.flags.context_aware_warnings)
the filters of the calling context are not in warnings.filters: arm()
returns None and every call passes "error".
"""

from __future__ import annotations

import re
import sys
import threading
import warnings
from collections.abc import Sequence
from typing import Any

__all__ = ["MESSAGE", "StrictWarnings"]

MESSAGE = "Pydantic serializer warnings"  # how pydantic-core's warning begins
_CATEGORY = UserWarning  # the category pydantic-core warns with
_TOKEN_KEY = "statekeep: no warning issued from this module since"  # never a warning's key
_CONTEXT_AWARE = bool(getattr(sys.flags, "context_aware_warnings", False))


class StrictWarnings:
    """The guard of the module whose globals are `namespace` (its to_json calls)."""

    def __init__(self, namespace: dict[str, Any]) -> None:
        self._namespace = namespace
        self._module: str = namespace["__name__"]
        self._module_pattern = re.escape(self._module) + r"\Z"
        # our filter as warnings.filterwarnings puts it in the list
        self._ours = (
            "error",
            re.compile(MESSAGE, re.I),
            _CATEGORY,
            re.compile(self._module_pattern),
            0,
        )
        self._lock = threading.Lock()
        # warnings.filters as last walked (the list, its length, its first entry)
        # and whether the first filter matching our warning raises it
        self._seen: tuple[object, int, object, bool] = (None, -1, None, False)
        self._token: object = None

    def arm(self) -> object | None:
        """A token for intact() if a call may pass warnings=True now; None: pass "error"."""
        filters = warnings.filters
        seen = self._seen
        if (
            filters is not seen[0]
            or len(filters) != seen[1]
            or (filters[0] if filters else None) is not seen[2]  # _first(), inlined: hot path
        ):
            seen = self._walk()
        if not seen[3]:
            return None
        registry: dict[str, object] | None = self._namespace.get("__warningregistry__")
        token = self._token
        if registry is None or registry.get(_TOKEN_KEY) is not token or token is None:
            return self._set_token()
        return token

    def intact(self, token: object) -> bool:
        """No warning was issued from the module since arm() gave out the token."""
        registry = self._namespace.get("__warningregistry__")
        return registry is not None and registry.get(_TOKEN_KEY) is token

    def _set_token(self) -> object | None:
        token = object()
        registry = self._namespace.setdefault("__warningregistry__", {})
        registry["version"] = -1  # no filters' version: the next warning clears the registry
        registry[_TOKEN_KEY] = token
        if registry.get("version") != -1:  # a warning cleared it in between: the token may
            return None  # stay through the next one; pass "error" (and try again next call)
        self._token = token
        return token

    def _walk(self) -> tuple[object, int, object, bool]:
        with self._lock:
            filters = warnings.filters
            if _CONTEXT_AWARE:
                raises = False
            else:
                if self._ours not in filters:  # at the front; ahead of it, left alone
                    warnings.filterwarnings("error", MESSAGE, _CATEGORY, self._module_pattern)
                    filters = warnings.filters
                raises = _first_match_raises(filters, self._module)
            self._seen = seen = (filters, len(filters), _first(filters), raises)
            return seen


def _first(filters: Sequence[Any]) -> object:
    return filters[0] if filters else None


def _first_match_raises(filters: Sequence[Any], module: str) -> bool:
    """Is the first filter that can match pydantic-core's warning from the
    module an "error" for every text of it (True), or may a text of it go
    otherwise (False, also when none matches: Python's default action shows it)?

    Walked as Python's warnings machinery does, erring towards False."""
    for item in filters:
        try:
            action, message, category, module_filter, lineno = item
            if not issubclass(_CATEGORY, category):
                continue
            if module_filter is not None and not (
                module_filter == module
                if isinstance(module_filter, str)
                else module_filter.match(module)
            ):
                continue
        except (TypeError, ValueError, AttributeError):  # not a filter Python makes
            return False
        if action != "error":
            return False  # ignores, shows or records some text of it, perhaps all
        if lineno == 0 and (message is None or getattr(message, "pattern", None) == MESSAGE):
            return True
        # an "error" for some lines or texts only: the others go on down the list
    return False
