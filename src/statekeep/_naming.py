"""Names made from class names: one rule for collections and event kinds."""

from __future__ import annotations

import re


def snake_case(name: str) -> str:
    """RecordingSession -> recording_session, HTTPLog -> http_log."""
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()
