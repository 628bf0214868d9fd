"""The server of benchmarks/web.py's fan-out part, in a process of its own so
that its CPU time is its own: `python -m benchmarks._web_server DB_PATH`.

Serves, on a free 127.0.0.1 port (printed as `PORT n`):
- /events: statekeep.web.app(store)'s dashboard stream, as served (its
  default interval, 0.25 s);
- /live: statekeep.web.live(store, WebItem, order_by=rank, limit=20);
- /raw: the limit, a plain sse-starlette endpoint: every page gets each
  payload published by a task of this loop, `fps` a second, `size` bytes
  (POST /_bench/raw?fps=&size=), from one shared future, as Feed does;
- POST /_bench/write?rate=&seconds=: a writer thread saving WebItem entities
  (updates of 100 of them, in turn) at a paced rate.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

import statekeep
import statekeep.web


class WebItem(statekeep.Entity, collection="bench_web_item"):
    rank: int
    value: int = 0
    title: str = ""


def _frame(n: int, pad: str) -> bytes:
    body = json.dumps({"value": n, "pad": pad})
    return f"event: datastar-merge-signals\ndata: signals {body}\n\n".encode()


class Raw:
    """The limit's publisher: one payload for all pages, `fps` times a second."""

    def __init__(self) -> None:
        self.fps, self.size = 0.0, 0
        self.task: asyncio.Task[None] | None = None
        self.published: asyncio.Future[bytes] | None = None

    async def publish(self) -> None:
        """Paced by the clock (frame n at start + n / fps), so that the rate asked
        for is the rate sent, not less by the loop's own delays."""
        loop = asyncio.get_running_loop()
        fps, start, n = self.fps, loop.time(), 0
        while fps > 0:
            n += 1
            await asyncio.sleep(max(0.0, start + n / fps - loop.time()))
            frame = _frame(n, "")  # then padded to the size of the frames it stands for
            frame = _frame(n, "x" * max(self.size - len(frame), 0))
            assert self.published is not None
            done, self.published = self.published, asyncio.get_running_loop().create_future()
            done.set_result(frame)

    async def frames(self) -> AsyncIterator[bytes]:
        while True:
            assert self.published is not None
            yield await asyncio.shield(self.published)


def _lifespan_of(inner: Starlette) -> Any:
    """A mounted app's lifespan is not run by Starlette: run the dashboard's."""
    return lambda app: inner.router.lifespan_context(inner)


def main() -> None:
    store = statekeep.open(f"sqlite:///{sys.argv[1]}")
    items = [WebItem(rank=n, title=f"item {n}") for n in range(100)]
    store.save_many(items)
    items = [store.get(WebItem, item.id) for item in items]
    dashboard = statekeep.web.app(store, entities=[WebItem])
    raw = Raw()
    writing = threading.Event()

    def write(rate: int, seconds: float) -> None:
        start = time.perf_counter()
        done = 0
        while (now := time.perf_counter() - start) < seconds:
            while done < int(now * rate) + 1:
                item = items[done % len(items)]
                item.value += 1
                store.save(item)
                done += 1
            time.sleep(0.001)
        writing.clear()

    async def start_writing(request: Request) -> JSONResponse:
        writing.set()
        query = request.query_params
        thread = threading.Thread(
            target=write, args=(int(query["rate"]), float(query["seconds"])), daemon=True
        )
        thread.start()
        return JSONResponse({"started": True, "thread": thread.native_id})

    async def writing_now(request: Request) -> JSONResponse:
        return JSONResponse({"writing": writing.is_set()})

    async def live(request: Request) -> Response:
        return statekeep.web.live(store, WebItem, order_by="rank", limit=20)

    async def set_raw(request: Request) -> JSONResponse:
        raw.fps = float(request.query_params["fps"])
        raw.size = int(request.query_params["size"])
        if raw.published is None:
            raw.published = asyncio.get_running_loop().create_future()
        if raw.task is not None:  # a new rate: a new clock
            raw.task.cancel()
            raw.task = None
        if raw.fps > 0:
            raw.task = asyncio.create_task(raw.publish())
        return JSONResponse({"fps": raw.fps})

    async def raw_events(request: Request) -> Response:
        return EventSourceResponse(raw.frames(), ping=15.0)

    app = Starlette(
        routes=[
            Route("/_bench/write", start_writing, methods=["POST"]),
            Route("/_bench/writing", writing_now),
            Route("/_bench/raw", set_raw, methods=["POST"]),
            Route("/live", live),
            Route("/raw", raw_events),
            Mount("/", dashboard),
        ],
        lifespan=_lifespan_of(dashboard),
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, backlog=512)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        store.close()


if __name__ == "__main__":
    main()
