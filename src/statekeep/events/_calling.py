"""Calling a durable subscription's handler from its thread, and waiting for it.

A coroutine handler runs on the event loop that was running where it
subscribed, and the subscription thread waits for it (events stay in order);
without such a loop, or once that loop is closed, it runs on a loop of its own
in the subscription's thread.

A stop() (or the store's close()) called on that very loop cannot wait for
the handler, which needs the loop: it sets `abandon`, and the subscription
thread cancels the handler (Abandoned) instead of waiting for it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import threading
from collections.abc import Callable
from typing import Any


class Abandoned(Exception):  # noqa: N818 - not an error: the handler was cancelled
    """The handler on the loop was cancelled: the loop is stopping this subscription."""


def call(
    handler: Callable[[Any], Any],
    event: Any,
    loop: asyncio.AbstractEventLoop | None,
    abandon: threading.Event | None = None,
) -> None:
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
            while not concurrent.futures.wait([future], timeout=0.05).done:
                if abandon is not None and abandon.is_set():
                    future.cancel()
                    raise Abandoned
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
