"""Names made from class names: one rule for collections and event kinds, and
one for telling a class defined again from another class of the same name.

A class's topic is `module:qualname` (as the eventsourcing library writes it):
the name it is written under where a short name (a collection, an event kind)
could be another class's. A class defined again (the same qualified name, in
the same module or in the same file under another module name: a reload, a
module run as a script and imported, a class made in a function called twice)
replaces the old one in a registry; any other class of the same short name is
a clash.
"""

from __future__ import annotations

import re
import sys


def snake_case(name: str) -> str:
    """RecordingSession -> recording_session, HTTPLog -> http_log."""
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


def topic_of(cls: type) -> str:
    """`module:qualname`, e.g. `billing.events:Completed`."""
    return f"{cls.__module__}:{cls.__qualname__}"


def file_of(cls: type) -> str | None:
    """The file of the module that defines cls (None when it has none)."""
    file = getattr(sys.modules.get(cls.__module__), "__file__", None)
    return file if isinstance(file, str) else None


def redefines(cls: type, file: str | None, other: type, other_file: str | None) -> bool:
    """Is cls (defined in file) other (defined in other_file) defined again?"""
    return cls.__qualname__ == other.__qualname__ and (
        cls.__module__ == other.__module__ or (file is not None and file == other_file)
    )
