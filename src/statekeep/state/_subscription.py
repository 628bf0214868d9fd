"""A subscription to a part of an AppState, and how its callback is called.

A coroutine callback runs on the event loop that was running where it
subscribed (scheduled, not waited for: the state does not wait for a loop);
its failure is logged and counted like a plain callback's.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any, Protocol

from ..errors import ConfigurationError
from ._paths import Resolver
from ._watch import WILDCARD, Watch

log = logging.getLogger("statekeep.state")


class Unsubscribes(Protocol):
    def unsubscribe(self, subscription: Subscription) -> bool: ...


class Subscription:
    """What subscribe() returns: `cancel()` it (or use `with`) to stop."""

    __slots__ = ("state", "watch")

    def __init__(self, state: Unsubscribes, watch: Watch) -> None:
        self.state = state
        self.watch = watch

    @property
    def failed(self) -> int:
        """How many times its selector or callback raised."""
        return self.watch.failed

    def cancel(self) -> bool:
        return self.state.unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()

    def __repr__(self) -> str:
        return repr(self.watch)


def make_watch(target: Any, callback: Any, resolve: Resolver, counters: Any) -> Watch:
    if not callable(callback):
        raise ConfigurationError(f"a subscription's callback must be callable, not {callback!r}")
    loop = None
    if _is_async(callback):
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise ConfigurationError(
                "subscribe a coroutine callback from inside the event loop it should run on"
            ) from None
    if isinstance(target, str | tuple):
        watch = Watch(callback, pattern(target, resolve), None, loop)
    elif callable(target):
        if _is_async(target):
            raise ConfigurationError(
                "a selector is a plain function of a snapshot that returns the part it selects, "
                f"not a coroutine function: {target!r}"
            )
        watch = Watch(callback, None, target, loop)
    else:
        raise ConfigurationError(
            "subscribe() takes a path ('doc.title', 'meters.*') or a selector function, "
            f"not {target!r}"
        )
    watch.call = _caller(watch, counters)
    return watch


def pattern(target: str | tuple[Any, ...], resolve: Resolver) -> tuple[Any, ...]:
    """A path's names, `*` parts kept: each run of parts between wildcards is
    resolved against the shape, so a bad field name fails at subscribe()."""
    parts = tuple(target.split(".")) if isinstance(target, str) and target else target
    if isinstance(parts, str):
        parts = ()
    names: list[Any] = []
    for i, part in enumerate(parts):
        if part == WILDCARD:
            names.append(WILDCARD)
            continue
        if WILDCARD in names:  # below a wildcard the shape is not known: names as given
            names.append(part)
            continue
        names.append(resolve(tuple(parts[: i + 1])).names[-1])
    return tuple(names)


def _caller(watch: Watch, counters: Any) -> Callable[[Any, Any], None]:
    callback, loop = watch.callback, watch.loop
    if loop is None:
        return callback

    def schedule(old: Any, new: Any) -> None:
        coroutine = callback(old, new)
        try:
            future = asyncio.run_coroutine_threadsafe(coroutine, loop)
        except RuntimeError:  # the loop is closed
            coroutine.close()
            raise
        future.add_done_callback(lambda f: _report(watch, counters, f))

    return schedule


def _report(watch: Watch, counters: Any, future: Any) -> None:
    """A coroutine callback ended: its failure counted and logged, as a plain one's."""
    if future.cancelled():
        return
    error = future.exception()
    if error is not None:
        watch.failed += 1
        counters.callbacks_failed += 1
        log.error(
            "state subscription %r failed",
            watch,
            exc_info=(type(error), error, error.__traceback__),
            extra={
                "statekeep": {
                    "event": "state.subscription_failed",
                    "part": "callback",
                    "subscription": repr(watch),
                    "failures": watch.failed,
                    "error_type": type(error).__name__,
                    "error": str(error),
                }
            },
        )


def _is_async(callback: Any) -> bool:
    call = getattr(callback, "__call__", None)  # noqa: B004 - an object with an async __call__
    return inspect.iscoroutinefunction(callback) or inspect.iscoroutinefunction(call)
