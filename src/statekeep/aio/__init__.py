"""statekeep.aio: the Store's operations for asyncio, awaitable, never blocking the loop.

    store = await statekeep.aio.open("sqlite:///app.db")
    async with store.transaction():
        todo = await store.get(Todo, id)
        todo.done = True
        await store.save(todo)

See docs/async.md.
"""

from ._block import AsyncTransaction
from ._results import AsyncResults
from ._store import AsyncStore, open

__all__ = ["AsyncResults", "AsyncStore", "AsyncTransaction", "open"]
