"""An AppState's options, checked once: a bad one is a ConfigurationError."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .._numbers import is_seconds
from ..errors import ConfigurationError
from ..flow import Clock
from ..flow import FakeClock as _FakeClock


@dataclass(frozen=True)
class StateOptions:
    name: str = "state"
    history: int = 100  # versions kept for at(), undo() and redo()
    history_bytes: int | None = None  # and at most about this many bytes they do not share
    frame: float = 0.016  # NORMAL updates arriving faster than this coalesce per frame
    max_frame: float = 0.1  # the most a frame stretches to when versions are costly
    idle: float = 0.1  # LOW updates wait for this long without a higher one
    low_max_age: float = 5.0  # and never longer than this
    clock: Clock = field(default_factory=Clock)


_SECONDS = ("frame", "max_frame", "idle", "low_max_age")


def check_options(options: dict[str, Any]) -> StateOptions:
    known = StateOptions.__dataclass_fields__
    for name in options:
        if name not in known:
            raise ConfigurationError(
                f"AppState has no option {name!r}; its options are: {', '.join(known)}"
            )
    name = options.get("name", "state")
    if not isinstance(name, str) or not name or len(name) > 200:
        raise ConfigurationError(
            f"name must be a non-empty string of at most 200 characters, not {name!r}"
        )
    try:  # a lone surrogate (a file name os.fsdecode could not decode) cannot be stored
        name.encode()
    except UnicodeEncodeError:
        raise ConfigurationError(f"name must be text that UTF-8 can encode, not {name!r}") from None
    history = options.get("history", 100)
    if not isinstance(history, int) or isinstance(history, bool) or history < 1:
        raise ConfigurationError(
            f"history must be a whole number of versions >= 1, not {history!r}"
        )
    history_bytes = options.get("history_bytes")
    if history_bytes is not None and (
        not isinstance(history_bytes, int) or isinstance(history_bytes, bool) or history_bytes < 0
    ):
        raise ConfigurationError(f"history_bytes must be None or bytes >= 0, not {history_bytes!r}")
    for key in _SECONDS:
        if key in options and not is_seconds(options[key]):
            raise ConfigurationError(f"{key} must be seconds >= 0, not {options[key]!r}")
    clock = options.get("clock")
    clock = Clock() if clock is None else clock
    if not isinstance(clock, Clock | _FakeClock):
        raise ConfigurationError(f"clock must be a statekeep.flow Clock, not {clock!r}")
    checked = StateOptions(**{**options, "clock": clock})
    if checked.max_frame < checked.frame:
        raise ConfigurationError(
            f"max_frame ({checked.max_frame}) is less than frame ({checked.frame})"
        )
    return checked
