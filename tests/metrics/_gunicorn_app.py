"""The app tests/metrics/test_gunicorn.py runs under gunicorn (2 workers):
each worker opens the store at $STATEKEEP_GUNICORN_URL (a SQLite file).

GET /work  saves SAVES entities, answers the worker's pid
GET /pid   answers the worker's pid
GET /metrics  metrics_app(store, multiprocess_dir=True): every worker's metrics
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import statekeep
from statekeep import Entity
from statekeep.metrics import metrics_app

SAVES = 3


class Job(Entity, collection="gunicorn_jobs"):
    n: int = 0


store = statekeep.open(os.environ["STATEKEEP_GUNICORN_URL"])
metrics = metrics_app(store, multiprocess_dir=True)


def work() -> None:
    for i in range(SAVES):
        store.save(Job(n=i))


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await asyncio.to_thread(store.close)
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    if path == "/metrics":
        await metrics(scope, receive, send)
        return
    if path == "/work":
        await asyncio.to_thread(work)
    status, body = (200, str(os.getpid()).encode()) if path in ("/work", "/pid") else (404, b"")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain"), (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": body})
