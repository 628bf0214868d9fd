"""Backends by URL scheme: `memory://`, `sqlite:///app.db`, `sqlite://:memory:`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, unquote

from ..errors import ConfigurationError
from .base import Backend
from .memory import MemoryBackend
from .sqlite import SQLiteBackend, SQLiteMemoryBackend

__all__ = ["Backend", "open_backend", "register_backend"]

Factory = Callable[[str, dict[str, str]], Backend]
_factories: dict[str, Factory] = {}


def register_backend(scheme: str, factory: Factory) -> None:
    """Make `scheme://...` URLs open a backend made by `factory(rest, options)`."""
    _factories[scheme] = factory


def open_backend(url: str, options: dict[str, Any]) -> Backend:
    if not isinstance(url, str):
        raise ConfigurationError(f"a store URL is a string, not {url!r}")
    scheme, separator, rest = url.partition("://")
    factory = _factories.get(scheme)
    if not separator or factory is None:
        raise ConfigurationError(
            f"cannot open {url!r}: a store URL starts with one of "
            + ", ".join(f"{s}://" for s in sorted(_factories))
        )
    rest, _, query = rest.partition("?")
    merged = dict(parse_qsl(query, keep_blank_values=True))
    merged.update({key: str(value) for key, value in options.items()})
    return factory(rest, merged)


def _take(
    options: dict[str, str], allowed: dict[str, Callable[[str], Any]], url: str
) -> dict[str, Any]:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigurationError(
            f"unknown option(s) {', '.join(unknown)} for {url}; known: {', '.join(sorted(allowed))}"
        )
    try:
        return {key: allowed[key](value) for key, value in options.items()}
    except ValueError as exc:
        raise ConfigurationError(f"bad option for {url}: {exc}") from exc


def _seconds(text: str) -> float:
    """A lock timeout: a finite number of seconds >= 0."""
    seconds = float(text)
    if not 0 <= seconds < 1e6:
        raise ValueError(f"timeout must be between 0 and 1e6 seconds, not {text}")
    return seconds


def _memory(rest: str, options: dict[str, str]) -> Backend:
    if rest:
        raise ConfigurationError(f"memory:// takes no path, got {rest!r}")
    return MemoryBackend(**_take(options, {"timeout": _seconds}, "memory://"))


def _sqlite(rest: str, options: dict[str, str]) -> Backend:
    if rest in (":memory:", "/:memory:"):
        return SQLiteMemoryBackend(**_take(options, {"timeout": _seconds}, "sqlite://:memory:"))
    path = unquote(rest[1:] if rest.startswith("/") else rest)  # %3F for a ? in a name
    if not path:
        raise ConfigurationError(
            "sqlite URLs name a file: sqlite:///relative/app.db, sqlite:////absolute/app.db "
            "or sqlite://:memory:"
        )
    allowed: dict[str, Callable[[str], Any]] = {"synchronous": str.lower, "timeout": _seconds}
    return SQLiteBackend(path, **_take(options, allowed, "sqlite://"))


register_backend("memory", _memory)
register_backend("sqlite", _sqlite)
