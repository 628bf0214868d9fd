"""Decorating with a flow part: functions, coroutine functions, generator
functions and async generator functions alike.

A part that guards a call (a Throttle's slot, a CircuitBreaker's verdict)
must hold for as long as the call runs: for a generator, that is while it is
iterated, not while the generator object is made; for an async generator,
on the event loop (`async with`), never blocking it.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from ..errors import ConfigurationError


def wrap_iterators(fn: Callable[..., Any], part: Any) -> Callable[..., Any] | None:
    """fn guarded by `with part` / `async with part` around its iteration,
    if fn is a generator or async generator function; else None."""
    if inspect.isasyncgenfunction(fn):

        @functools.wraps(fn)
        async def guarded_agen(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            async with part:
                async for value in fn(*args, **kwargs):
                    yield value

        return guarded_agen
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def guarded_gen(*args: Any, **kwargs: Any) -> Iterator[Any]:
            with part:
                returned = yield from fn(*args, **kwargs)
            return returned  # type: ignore[no-any-return]

        return guarded_gen
    return None


def a_callable(fn: Any, what: str) -> None:
    if not callable(fn):
        raise ConfigurationError(f"@{what} decorates a callable, not {fn!r}")


def guard(
    fn: Callable[..., Any],
    what: str,
    part: Any,
    run: Callable[..., Any],
    run_async: Callable[..., Any],
) -> Callable[..., Any]:
    """`@part` on fn: run(fn, *args, **kwargs) for a function,
    await run_async(...) for a coroutine function, `with part` / `async
    with part` around a generator's or an async generator's iteration."""
    a_callable(fn, what)
    iterating = wrap_iterators(fn, part)
    if iterating is not None:
        return iterating
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def guarded_async(*args: Any, **kwargs: Any) -> Any:
            return await run_async(fn, *args, **kwargs)

        return guarded_async

    @functools.wraps(fn)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        return run(fn, *args, **kwargs)

    return guarded
