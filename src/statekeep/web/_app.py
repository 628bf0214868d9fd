"""statekeep.web.app(store): the dashboard, its stream, health and actions, as a Starlette app."""

from __future__ import annotations

import asyncio
import contextlib
import html
import importlib.util
import logging
import re
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from ..aio import AsyncStore
from ..entity import Entity
from ..errors import (
    ConfigurationError,
    NotFoundError,
    QueryError,
    StatekeepError,
    TransitionError,
    ValidationError,
)
from ..store import Store
from . import _page, _protocol
from ._board import Board, classes, entities_of
from ._feed import Extra, Feed
from ._security import COOKIE, Guard
from ._stream import response, store_of

log = logging.getLogger("statekeep.web")

STATIC = Path(__file__).parent / "static"
INTERVAL = 0.25  # seconds: the dashboard's frames, at most this often
READY_TIMEOUT = 2.0  # seconds /readyz waits for the database
SESSION_SECONDS = 12 * 3600  # a sign-in lasts this long
LOGIN_BODY = 4096  # bytes a sign-in form may take
MAX_BODY = 1024 * 1024  # bytes an action's signals may take (a page sends them all)


def app(
    store: Store | AsyncStore,
    *,
    token: str | None = None,
    entities: Iterable[type[Entity]] | None = None,
    expose: Iterable[type[Entity]] = (),
    title: str = "statekeep",
    interval: float = INTERVAL,
    close_store: bool = False,
) -> Starlette:
    """The dashboard of store as an ASGI app (Starlette).

    token: needed to change anything (and then to see anything but the health
    checks); without one the app is read-only and answers on loopback only.
    entities: the classes counted and whose machines are shown (default:
    every entity class defined so far). expose: the classes whose bodies the
    page may show (a dead letter's write); none by default. interval: the
    most often a page gets a frame. close_store: close the store when the
    app shuts down (what `statekeep serve` does with the store it opened)."""
    web = Dashboard(
        store_of(store),
        token=token,
        entities=entities,
        expose=expose,
        title=title,
        interval=interval,
        close_store=close_store,
    )
    return web.starlette


class Dashboard:
    def __init__(
        self,
        store: Store,
        *,
        token: str | None,
        entities: Iterable[type[Entity]] | None,
        expose: Iterable[type[Entity]],
        title: str,
        interval: float,
        close_store: bool,
    ) -> None:
        if (
            isinstance(interval, bool)
            or not isinstance(interval, int | float)
            or not 0.01 <= interval <= 60
        ):
            raise ConfigurationError(
                f"statekeep.web: interval must be 0.01 to 60 seconds, not {interval!r}"
            )
        self.store = store
        self.guard = Guard(token)
        counted = entities_of(entities)
        self.exposed = frozenset(_collection(cls) for cls in classes(expose, "expose"))
        self.title = title if isinstance(title, str) else "statekeep"
        self.board = Board(store, counted, exposed=self.exposed, poke=lambda: self.feed.poke())
        self.feed = Feed(
            "dashboard",
            self._read,
            every=interval,
            gap=interval,
            start=self.board.start,
            stop=self.board.stop,
            alive=lambda: not store.closed,
        )
        self.close_store = close_store
        routes: list[Route | Mount] = [
            Route("/", self.index),
            Route("/events", self.events, methods=["GET", "POST"]),  # the page POSTs: its
            # signals go in the body, not in a URL that would outgrow a server's limit
            Route("/healthz", self.healthz),
            Route("/readyz", self.readyz),
            Route("/login", self.login, methods=["GET", "POST"]),
            Route("/logout", self.logout, methods=["GET", "POST"]),
            Route("/actions/requeue", self.requeue, methods=["POST"]),
            Route("/actions/send", self.send, methods=["POST"]),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ]
        if importlib.util.find_spec("prometheus_client") is not None:
            routes.insert(4, Route("/metrics", _Guarded(self, _metrics_app(store))))
        self.starlette = Starlette(routes=routes, lifespan=self._lifespan)
        self.starlette.state.dashboard = self

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(self.board.stop)
            if self.close_store:  # writes waiting in write-behind are stored first
                await anyio.to_thread.run_sync(self.store.close)

    def _read(self) -> dict[str, Any]:
        tree = self.board.read()
        tree["connected"] = True
        return tree

    # -- pages ---------------------------------------------------------------
    async def index(self, request: Request) -> Response:
        if not self.guard.reachable(request):
            return _unreachable()
        if not self.guard.may_view(request):
            return RedirectResponse("login", status_code=303)
        writable = self.guard.signed_in(request)
        signals = self.feed.state
        if signals is None:
            try:
                signals = await anyio.to_thread.run_sync(self._read)
            except StatekeepError as exc:
                return _refused(503, f"the store cannot be read: {type(exc).__name__}: {exc}"[:300])
        body = _page.page(
            title=self.title,
            csrf=self.guard.csrf if writable else "",
            writable=writable,
            login=self.guard.login,
            signals={**signals, "connected": False},
            base=_base(request),
        )
        return HTMLResponse(body, headers=_PAGE_HEADERS)

    async def events(self, request: Request) -> Response:
        if not self.guard.reachable(request):
            return _unreachable()
        if not self.guard.may_view(request):
            return _refused(401, "sign in first: the dashboard needs its token")
        writable = self.guard.signed_in(request)
        return response(self.feed.follow(self._rows(writable, _base(request))))

    def _rows(self, writable: bool, base: str) -> Extra:
        """The rows' HTML a page needs when a list's length changed."""

        def rows(sent: dict[str, Any] | None, state: dict[str, Any]) -> bytes:
            changed = _page.changed_rows(sent, state, writable, base)
            return b"".join(_protocol.fragments(html_) for html_ in changed) if changed else b""

        return rows

    async def healthz(self, request: Request) -> Response:
        if self.store.closed or self.store.closing:
            return JSONResponse({"status": "closing"}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        problems = []
        try:
            with anyio.fail_after(READY_TIMEOUT):
                ratio = await anyio.to_thread.run_sync(self._ready_reading, abandon_on_cancel=True)
        except TimeoutError:
            problems.append(f"the database did not answer within {READY_TIMEOUT:g} s")
        except StatekeepError as exc:  # its text only to whom may see the dashboard
            detail = f": {exc}" if self.guard.may_view(request) and self.guard.login else ""
            problems.append(f"the database is unreachable: {type(exc).__name__}{detail}"[:300])
        else:
            if ratio >= 0.9:
                problems.append(f"write-behind is {ratio:.0%} full")
        if problems:
            return JSONResponse({"status": "unready", "problems": problems}, status_code=503)
        return JSONResponse({"status": "ready"})

    def _ready_reading(self) -> float:
        self.store.subscriptions()  # a read of the database
        stats = self.store.writebehind.stats()
        limit = self.store.writebehind.options.max_pending
        return stats.total_pending / limit if limit else 0.0

    # -- signing in ------------------------------------------------------------
    async def login(self, request: Request) -> Response:
        if not self.guard.login:
            return RedirectResponse("./", status_code=303)
        problem = ""
        if request.method == "POST":
            if not self.guard.same_origin(request):
                return _refused(403, "refused: the form does not come from this dashboard")
            body = await _body(request, LOGIN_BODY)
            if body is None:
                return _refused(413, f"a sign-in form may take {LOGIN_BODY} bytes")
            given = parse_qs(body.decode("utf-8", "replace")).get("token", [""])[0]
            if isinstance(given, str) and self.guard.right_token(given):
                response = RedirectResponse("./", status_code=303)
                response.set_cookie(
                    COOKIE,
                    self.guard.session_cookie(),
                    max_age=SESSION_SECONDS,
                    httponly=True,
                    samesite="strict",
                    secure=request.url.scheme == "https",
                    path=_base(request) + "/",  # this dashboard's, not its host's others
                )
                return response
            await asyncio.sleep(0.5)  # a wrong token costs its sender time
            problem = '<p class="err">wrong token</p>'
        return HTMLResponse(
            _LOGIN.format(title=html.escape(self.title), problem=problem),
            status_code=401 if problem else 200,
            headers=_PAGE_HEADERS,
        )

    async def logout(self, request: Request) -> Response:
        response = RedirectResponse("login", status_code=303)
        response.delete_cookie(COOKIE, path=_base(request) + "/")
        return response

    # -- actions -------------------------------------------------------------
    async def _acting(self, request: Request) -> Response | None:
        if not self.guard.reachable(request):
            return _unreachable()
        refused = self.guard.may_act(request, None)  # who asks, before reading what
        if refused is not None:
            return _refused(*refused)
        body = await _body(request, MAX_BODY)
        if body is None:
            return _refused(413, f"an action's signals may take {MAX_BODY} bytes")
        refused = self.guard.may_act(request, _protocol.read_signals(body))
        return None if refused is None else _refused(*refused)

    async def requeue(self, request: Request) -> Response:
        """Requeues the dead letter of ?collection=&id= (the newest with that id)."""
        refused = await self._acting(request)
        if refused is not None:
            return refused
        collection = request.query_params.get("collection", "")
        id = request.query_params.get("id", "")

        def work() -> str | None:
            for letter in reversed(self.store.writebehind.dead_letters()):
                if letter.collection == collection and str(letter.id) == id:
                    self.store.writebehind.requeue(letter)
                    return f"requeued {collection}/{id}"
            return None

        try:
            done = await anyio.to_thread.run_sync(work)
        except StatekeepError as exc:
            return _refused(503, f"the store cannot requeue: {type(exc).__name__}: {exc}"[:300])
        if done is None:
            return _refused(404, f"no dead letter {collection[:100]!r}/{id[:100]!r}")
        self.feed.poke()
        return _answer(done)

    async def send(self, request: Request) -> Response:
        """Sends ?event= to the machine of the entity ?collection=&id= (its field: ?field=)."""
        refused = await self._acting(request)
        if refused is not None:
            return refused
        query = request.query_params
        cls = next(
            (c for c in self.board.entities if _collection(c) == query.get("collection")), None
        )
        if cls is None or not cls.__statekeep_machines__:
            return _refused(404, "no such collection with a state machine on this dashboard")
        id, event, field = query.get("id", ""), query.get("event", ""), query.get("field")

        def work() -> str:
            entity = self.store.get(cls, id)
            self.store.send(entity, event, field=field)
            return f"sent {event} to {_collection(cls)}/{id}"

        try:
            done = await anyio.to_thread.run_sync(work)
        except NotFoundError:
            return _refused(404, f"no {_collection(cls)} {id[:100]!r}")
        except (TransitionError, ConfigurationError) as exc:
            return _refused(409, str(exc)[:300])
        except (QueryError, ValidationError) as exc:
            return _refused(400, str(exc)[:300])
        except StatekeepError as exc:
            return _refused(503, f"the store cannot send: {type(exc).__name__}: {exc}"[:300])
        self.feed.poke()
        return _answer(done)


class _Guarded:
    """An ASGI app answered only for requests that may view the dashboard."""

    def __init__(self, dashboard: Dashboard, inner: ASGIApp) -> None:
        self.dashboard, self.inner = dashboard, inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        guard = self.dashboard.guard
        if not guard.reachable(request):
            await _unreachable()(scope, receive, send)
        elif not guard.may_view(request):
            await _refused(401, "the dashboard's token is needed")(scope, receive, send)
        else:
            await self.inner(scope, receive, send)


def _metrics_app(store: Store) -> ASGIApp:
    from ..metrics import metrics_app

    found: ASGIApp = metrics_app(store)
    return found


async def _body(request: Request, most: int) -> bytes | None:
    """The request's body, or None once it passes most bytes (the rest unread)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > most:
            return None
    return body


def _base(request: Request) -> str:
    """Where the app is mounted ("" at the root): the page's actions are absolute."""
    root = request.scope.get("root_path", "")
    if isinstance(root, str) and _MOUNT.fullmatch(root):
        return root.rstrip("/")
    return ""


def _collection(cls: type[Entity]) -> str:
    return cls.__statekeep__.spec.name


def _answer(message: str) -> Response:
    """What a Datastar action gets back: a stream of one signal patch."""
    return Response(
        _protocol.signals({"flash": message}),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache"},
    )


def _refused(status: int, why: str) -> Response:
    return JSONResponse({"error": why}, status_code=status)


def _unreachable() -> Response:
    return _refused(
        403,
        "this dashboard has no token, so it answers on this machine's loopback address only",
    )


_MOUNT = re.compile(r"(/[A-Za-z0-9._~-]+)*/?")  # a mount point that is safe inside a page

_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

_LOGIN = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}: sign in</title>
<link rel="stylesheet" href="static/statekeep.css"></head>
<body><form class="login" method="post" action="login">
<h1>{title}</h1>{problem}
<label>token <input type="password" name="token" autocomplete="current-password" autofocus>
</label><button type="submit">sign in</button></form></body></html>
"""
