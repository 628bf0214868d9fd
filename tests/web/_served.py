"""The app tests/web/test_serving.py serves in uvicorn and gunicorn: statekeep.web's
from_env() dashboard, plus POST /enqueue?n=N&tag=T, which enqueues N Notes through
the serving process's own store (write-behind) and answers before they are stored.
It is imported by the servers (PYTHONPATH=tests/web), never by the test process."""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from statekeep import Entity
from statekeep.web import from_env


class Note(Entity, collection="web_served_note"):
    tag: str = ""
    n: int = 0
    pid: int = 0


def factory() -> Starlette:
    served = from_env()
    store = served.state.dashboard.store

    async def enqueue(request: Request) -> Response:
        count = int(request.query_params.get("n", "1"))
        tag = request.query_params.get("tag", "")
        for n in range(count):
            store.enqueue(Note(id=f"{tag}-{n}", tag=tag, n=n, pid=os.getpid()))
        return JSONResponse({"enqueued": count, "pid": os.getpid()})

    served.router.routes.insert(0, Route("/enqueue", enqueue, methods=["POST"]))
    return served
