"""An AsyncStore opened and used in a parent, then used by forked children
on event loops of their own (gunicorn --preload with an async worker)."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

import statekeep
import statekeep.aio
from conformance.models import Todo

CHILDREN = 3


@pytest.mark.requires("persistent")
def test_forked_children_use_the_parents_async_store(store_url: str) -> None:
    store = asyncio.run(statekeep.aio.open(store_url))

    async def before() -> None:  # the parent's workers and connections are in use
        await store.save(Todo(title="parent"))
        assert await store.count(Todo) == 1

    asyncio.run(before())
    pids = []
    for number in range(CHILDREN):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:

                async def child(number: int = number) -> None:
                    async with store.transaction():
                        await store.save(Todo(title=f"child {number}"))
                    assert await store.count(Todo) >= 2
                    assert len(await store.find(Todo).all()) >= 2

                asyncio.run(asyncio.wait_for(child(), 20))
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    codes: list[int | str] = []
    deadline = time.monotonic() + 30
    for pid in pids:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                codes.append(os.waitstatus_to_exitcode(status))
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                codes.append("hung")
                break
            time.sleep(0.01)
    assert codes == [0] * CHILDREN

    async def after() -> None:
        assert await store.count(Todo) == 1 + CHILDREN
        await store.close()

    asyncio.run(after())
