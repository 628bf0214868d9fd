"""A new version told to the subscriptions it touches (a part of AppState,
which holds the state it shares: see _appstate): each watch whose paths the
changes touch, in subscription order, its selector and callback isolated
(one that raises is logged and counted; the others still run)."""

from __future__ import annotations

import logging
from typing import Any

from ._options import StateOptions
from ._stats import Counters
from ._watch import Index, Watch, order_of

log = logging.getLogger("statekeep.state")


class Dispatching:
    options: StateOptions
    counters: Counters
    _index: Index
    _watches: dict[Watch, None]
    _dispatching: bool

    def _dispatch(self, old: Any, new: Any, changes: tuple[tuple[Any, ...], ...]) -> None:
        index = self._index
        if len(changes) == 1:
            watches: Any = index.of(changes[0])
            if not watches:
                return
        else:
            found: dict[Watch, None] = {}
            index.candidates(changes, found)
            watches = sorted(found, key=order_of)
        self._dispatching = True
        subscribed = self._watches
        try:
            for watch in watches:
                if watch not in subscribed:  # cancelled by a callback before it
                    continue
                try:
                    change = watch.change(old, new, changes, self._index)
                except Exception as exc:  # noqa: BLE001 - a selector that raises: isolated
                    self._failed(watch, "its selector", exc)
                    continue
                if change is not None:
                    self.counters.callbacks += 1
                    try:
                        watch.call(*change)
                    except Exception as exc:  # noqa: BLE001 - logged; the others still run
                        self._failed(watch, "its callback", exc)
        finally:
            self._dispatching = False

    def _failed(self, watch: Watch, what: str, error: Exception) -> None:
        self.counters.callbacks_failed += 1
        watch.failed += 1
        log.exception(
            "state %s: %s of %r failed",
            self.options.name,
            what,
            watch,
            extra={
                "statekeep": {
                    "event": "state.subscription_failed",
                    "state": self.options.name,
                    "part": what.removeprefix("its "),
                    "subscription": repr(watch),
                    "failures": watch.failed,
                    "error_type": type(error).__name__,
                    "error": str(error),
                }
            },
        )
