"""Calling a durable subscription's handler from its thread, and waiting for it.

A coroutine handler runs on the event loop that was running where it
subscribed, and the subscription thread waits for it (events stay in order);
without such a loop, or once that loop is closed, it runs on a loop of its own
in the subscription's thread.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any


def call(handler: Callable[[Any], Any], event: Any, loop: asyncio.AbstractEventLoop | None) -> None:
    result = handler(event)
    if not inspect.isawaitable(result):
        return
    if loop is not None and not loop.is_closed():  # on the application's loop
        coroutine = _awaited(result)
        try:
            future = asyncio.run_coroutine_threadsafe(coroutine, loop)
        except RuntimeError:  # closed meanwhile: run it here instead
            coroutine.close()
        else:
            future.result()  # waited for, to keep the order
            return
    asyncio.run(_awaited(result))


def running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def is_async(handler: Callable[[Any], Any]) -> bool:
    call = getattr(handler, "__call__", None)  # noqa: B004 - an object with an async __call__
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(call)


async def _awaited(result: Any) -> Any:
    return await result
