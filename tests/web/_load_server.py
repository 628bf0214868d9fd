"""A dashboard under load, in a process of its own (tests/web/test_sse_load.py).

    python tests/web/_load_server.py DB_PATH

Serves statekeep.web.app(store) with uvicorn on a free 127.0.0.1 port (printed
as `PORT n` on stdout) and, beside the dashboard, a few control routes for the
test: a writer thread that enqueues entities at a paced rate into the same
store (the writes the dashboard shows), its figures, and a flush. The server
runs apart from the test so that the test's 100 clients, its parsing and its
sampling share no GIL with the server: what is measured is the server.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

import statekeep
import statekeep.web


class LoadReading(statekeep.Entity, collection="load_reading"):
    sensor: int
    value: float


class Writer:
    """Enqueues LoadReading entities at `rate` a second for `seconds`, paced on a
    1 ms tick (catching up at once when behind), counting each second's writes."""

    def __init__(self, store: statekeep.Store) -> None:
        self.store = store
        self.thread: threading.Thread | None = None
        self.per_second: list[int] = []
        self.enqueued = 0
        self.elapsed = 0.0

    def start(self, rate: int, seconds: float) -> None:
        if self.thread is not None and self.thread.is_alive():
            raise RuntimeError("the writer is writing")
        self.per_second, self.enqueued, self.elapsed = [], 0, 0.0
        self.thread = threading.Thread(target=self._write, args=(rate, seconds), daemon=True)
        self.thread.start()

    def _write(self, rate: int, seconds: float) -> None:
        enqueue = self.store.enqueue
        start = time.perf_counter()
        done = 0
        second_start = 0
        while True:
            now = time.perf_counter() - start
            if now >= seconds:
                break
            if int(now) >= len(self.per_second) + 1:
                self.per_second.append(done - second_start)
                second_start = done
            due = min(int(now * rate) + 1, int(seconds * rate))
            while done < due:
                enqueue(LoadReading(sensor=done % 100, value=done * 0.5))
                done += 1
            self.enqueued = done
            time.sleep(0.001)
        self.elapsed = time.perf_counter() - start
        self.enqueued = done

    def figures(self) -> dict[str, Any]:
        writing = self.thread is not None and self.thread.is_alive()
        return {
            "writing": writing,
            "enqueued": self.enqueued,
            "elapsed": self.elapsed,
            "per_second": list(self.per_second),
        }


def _lifespan_of(inner: Starlette) -> Any:
    """A mounted app's lifespan is not run by Starlette: run the dashboard's."""
    return lambda app: inner.router.lifespan_context(inner)


def main() -> None:
    path = sys.argv[1]
    store = statekeep.open(f"sqlite:///{path}")
    writer = Writer(store)
    dashboard = statekeep.web.app(store, entities=[LoadReading], interval=0.25)

    async def write(request: Request) -> JSONResponse:
        writer.start(int(request.query_params["rate"]), float(request.query_params["seconds"]))
        return JSONResponse({"started": True})

    async def figures(request: Request) -> JSONResponse:
        return JSONResponse(writer.figures())

    def flushed() -> dict[str, Any]:
        store.flush(timeout=60)
        return {"stored": store.writebehind.stats().stored, "count": store.count(LoadReading)}

    async def flush(request: Request) -> JSONResponse:
        import anyio.to_thread

        return JSONResponse(await anyio.to_thread.run_sync(flushed))

    app = Starlette(
        routes=[
            Route("/_load/write", write, methods=["POST"]),
            Route("/_load/figures", figures),
            Route("/_load/flush", flush, methods=["POST"]),
            Mount("/", dashboard),
        ],
        lifespan=_lifespan_of(dashboard),
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", backlog=512)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        store.close()


if __name__ == "__main__":
    main()
