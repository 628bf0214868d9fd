"""A shared todo list: every open page shows the same list, live.

    python examples/shared_todo/app.py [sqlite:///todo.db]    # then open http://127.0.0.1:8001

statekeep.web.live streams the list to each page as Datastar signals
($todos.0.title, $todos.0.done, ...) and patches them on every change, from
this process or any other writing the same database. The rows' HTML names
signals only, so no user text is ever put into HTML.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import uvicorn
from datastar_py.starlette import DatastarResponse, ServerSentEventGenerator, read_signals
from pydantic import Field, StringConstraints
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

import statekeep
import statekeep.web
from statekeep import Entity, Indexed
from statekeep.aio import AsyncStore

STATIC = Path(statekeep.web.__file__).parent / "static"  # the packaged Datastar client
MAX_BODY = 16 * 1024


class Todo(Entity, collection="shared_todo"):
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    done: bool = False
    created_at: Annotated[float, Indexed()] = Field(default_factory=time.time)


def render(rows: list[dict[str, object]]) -> str:
    """The list's rows, bound by position to the signals live() keeps up to date."""
    items = "".join(
        f'<li id="todo-{i}" data-class-done="$todos.{i}.done">'
        f'<input type="checkbox" data-bind="todos.{i}.done"'
        f" data-on-click=\"@post('/toggle?id=' + encodeURIComponent($todos.{i}.id))\">"
        f'<span class="title" data-text="$todos.{i}.title"></span>'
        f'<button class="delete" aria-label="delete"'
        f" data-on-click=\"@post('/delete?id=' + encodeURIComponent($todos.{i}.id))\">"
        "&times;</button></li>"
        for i in range(len(rows))
    )
    return f'<ul id="todo-list">{items}</ul>'


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Shared todo</title>
<script type="module" src="/static/datastar.js"></script>
<style>
body { font: 16px system-ui, sans-serif; max-width: 32rem; margin: 3rem auto; }
ul { list-style: none; padding: 0; } li { display: flex; gap: .5rem; padding: .3rem 0; }
li.done .title { text-decoration: line-through; color: #888; } .title { flex: 1; }
input[type=text] { flex: 1; padding: .3rem; } form { display: flex; gap: .5rem; }
</style></head>
<body data-signals="{newtitle: '', todos: {}, todos_count: 0}">
<h1>Shared todo</h1>
<form data-on-submit="@post('/add')">
<input type="text" id="new-title" data-bind-newtitle placeholder="what needs doing?"
 maxlength="200" autofocus><button type="submit">add</button></form>
<main data-on-load="@post('/stream')"><ul id="todo-list"></ul></main>
<p id="count"><span data-text="$todos_count"></span> to do or done</p>
</body></html>
"""


def from_this_page(request: Request) -> bool:
    """A change comes from this app's own page: Datastar's header (another site's
    form cannot send it, and a script of another site would need CORS, which
    this app never grants) and, where the browser tells, the same origin."""
    return request.headers.get("datastar-request") == "true" and request.headers.get(
        "sec-fetch-site", "same-origin"
    ) in ("same-origin", "none")


def make_app(store: statekeep.Store) -> Starlette:
    db = AsyncStore(store)  # the same store, awaitable: endpoints never block the loop

    async def page(request: Request) -> Response:
        return HTMLResponse(PAGE)

    async def stream(request: Request) -> Response:
        order = [Todo.f.created_at.asc()]
        return statekeep.web.live(
            db, Todo, order_by=order, limit=100, signal="todos", render=render
        )

    async def add(request: Request) -> Response:
        if not from_this_page(request):
            return Response(status_code=403)
        if int(request.headers.get("content-length") or 0) > MAX_BODY:
            return JSONResponse({"error": "too much"}, status_code=413)
        signals = await read_signals(request) or {}
        try:
            todo = Todo(title=signals.get("newtitle", ""))
        except statekeep.ValidationError as refused:  # empty, too long or not text
            return JSONResponse({"error": str(refused)[:300]}, status_code=400)
        await db.save(todo)  # every page following the list gets it now
        return DatastarResponse(ServerSentEventGenerator.merge_signals({"newtitle": ""}))

    async def toggle(request: Request) -> Response:
        if not from_this_page(request):
            return Response(status_code=403)
        try:
            todo = await db.get(Todo, request.query_params.get("id", ""))
        except statekeep.NotFoundError:
            return Response(status_code=404)
        todo.done = not todo.done
        await db.save(todo)
        return Response(status_code=204)

    async def delete(request: Request) -> Response:
        if not from_this_page(request):
            return Response(status_code=403)
        try:
            await db.delete(Todo, request.query_params.get("id", ""))
        except statekeep.NotFoundError:
            return Response(status_code=404)
        return Response(status_code=204)

    return Starlette(
        routes=[
            Route("/", page),
            Route("/stream", stream, methods=["GET", "POST"]),  # the page POSTs: its signals
            # (the whole list) go in the body, not in a URL that would outgrow a server's limit
            Route("/add", add, methods=["POST"]),
            Route("/toggle", toggle, methods=["POST"]),
            Route("/delete", delete, methods=["POST"]),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ]
    )


if __name__ == "__main__":
    url = sys.argv[1] if len(sys.argv) > 1 else "sqlite:///todo.db"
    with statekeep.open(url) as store:
        uvicorn.run(make_app(store), host="127.0.0.1", port=8001)
