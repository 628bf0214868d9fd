"""Parsers for backend options given as text (in a URL's query string)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from .._numbers import is_seconds


def seconds(text: str) -> float:
    """A lock timeout: a finite number of seconds >= 0."""
    seconds = float(text)
    if not is_seconds(seconds, 0, 1e6):
        raise ValueError(f"timeout must be between 0 and 1e6 seconds, not {text}")
    return seconds


def flag(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, not {text!r}")


_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)
_NETLOC_PASSWORD = re.compile(r"^([a-z][a-z0-9+.-]*://[^/?#@:]*:)[^/?#@]*@", re.IGNORECASE)


def redacted(url: str) -> str:
    """The URL as it may be shown: a password in it (user:password@, or
    libpq's ?password=) replaced by ***, also in a URL too malformed to parse."""
    shown = _QUERY_PASSWORD.sub(r"\1***", url)
    try:
        password = urlsplit(shown).password
    except ValueError:
        return _NETLOC_PASSWORD.sub(r"\1***@", shown)
    if not password:
        return shown
    return shown.replace(f":{password}@", ":***@", 1)
