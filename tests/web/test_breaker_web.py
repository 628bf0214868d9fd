"""What a hostile new user found in statekeep.web, one test each, all fixed: junk
entities/expose/interval/poll get typed errors, a closed store is refused, the
page and actions answer 503 (not 500) once the store is gone, a bad id is a
400, streams end when the store closes, live() forgets a selection no page
follows, and pages asking for different polls get their own."""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp

import statekeep
import statekeep.web
from statekeep import Entity, Machine, State
from statekeep.errors import StatekeepError
from statekeep.web import _live

from ._datastar import Page

Serve = Callable[[ASGIApp], str]
TOKEN = "x" * 20
BEARER = {"Authorization": f"Bearer {TOKEN}"}


class BrkFlow(Machine):
    idle = State(initial=True)
    active = State(final=True)
    start = idle.to(active)


class BrkJob(Entity, collection="web_brk_job"):
    state: BrkFlow = BrkFlow.idle


class BrkTodo(Entity, collection="web_brk_todo"):
    title: str = ""
    n: int = 0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[statekeep.Store]:
    store = statekeep.open(f"sqlite:///{tmp_path / 'brk.db'}")
    yield store
    store.close()


def client(serve_app: Serve, app: ASGIApp) -> httpx.Client:
    return httpx.Client(base_url=serve_app(app), follow_redirects=False, timeout=10)


@pytest.mark.parametrize("entities", [[1, 2], [int], "web_brk_todo", [statekeep.Entity], 5])
def test_app_refuses_entities_that_are_not_entity_classes(
    store: statekeep.Store, entities: Any
) -> None:
    with pytest.raises(StatekeepError):
        statekeep.web.app(store, entities=entities)


@pytest.mark.parametrize("expose", [[1], "web_brk_todo", 3, None])
def test_app_refuses_junk_expose_with_a_typed_error(store: statekeep.Store, expose: Any) -> None:
    with pytest.raises(StatekeepError):
        statekeep.web.app(store, expose=expose)


def test_app_refuses_a_closed_store(tmp_path: Path) -> None:
    closed = statekeep.open(f"sqlite:///{tmp_path / 'closed.db'}")
    closed.close()
    with pytest.raises(StatekeepError):
        statekeep.web.app(closed)


def test_a_bool_is_not_seconds(store: statekeep.Store) -> None:
    with pytest.raises(StatekeepError):
        statekeep.web.app(store, interval=True)
    with pytest.raises(StatekeepError):
        statekeep.web.live(store, BrkTodo, poll=True)


def test_the_page_and_actions_do_not_500_once_the_store_is_closed(
    serve_app: Serve, store: statekeep.Store
) -> None:
    app = statekeep.web.app(store, token=TOKEN, entities=[BrkTodo])
    with client(serve_app, app) as web:
        store.close()
        assert web.get("/healthz").status_code == 503
        assert web.get("/", headers=BEARER).status_code == 503  # the store cannot be read
        requeue = "/actions/requeue?collection=web_brk_todo&id=x"
        assert web.post(requeue, headers=BEARER).status_code == 503


@pytest.mark.parametrize("id_part", ["&id=", "", "&id=%00"])
def test_send_with_a_bad_id_is_a_client_error(
    serve_app: Serve, store: statekeep.Store, id_part: str
) -> None:
    store.save(BrkJob())
    app = statekeep.web.app(store, token=TOKEN, entities=[BrkJob])
    with client(serve_app, app) as web:
        answer = web.post(
            f"/actions/send?collection=web_brk_job{id_part}&event=start", headers=BEARER
        )
        assert 400 <= answer.status_code < 500, answer.text


def test_streams_end_when_the_store_closes(
    serve_app: Serve, store: statekeep.Store, caplog: pytest.LogCaptureFixture
) -> None:
    store.save(BrkTodo(title="a"))
    dashboard = statekeep.web.app(store, entities=[BrkTodo])

    async def stream(request: Request) -> Response:
        return statekeep.web.live(store, BrkTodo)

    base = serve_app(Starlette(routes=[Route("/live", stream), Mount("/", dashboard)]))
    board, selection = Page(f"{base}/events"), Page(f"{base}/live")
    try:
        board.wait(lambda s: s["connected"] is True)
        selection.wait(lambda s: s["web_brk_todo_count"] == 1)
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="statekeep.web"):
            store.close()
            time.sleep(3)
        failed = [r for r in caplog.records if "feed failed" in r.getMessage()]
        board._thread.join(2)
        selection._thread.join(2)
        assert not board._thread.is_alive(), "the dashboard's stream goes on after close"
        assert not selection._thread.is_alive(), "the live stream goes on after close"
        assert len(failed) <= 2, f"{len(failed)} tracebacks logged in 3 s"
    finally:
        board.close()
        selection.close()


def test_live_does_not_keep_every_selection_forever(store: statekeep.Store) -> None:
    for n in range(500):
        statekeep.web.live(store, BrkTodo, where={"n": n})  # responses never streamed
    gc.collect()
    assert len(_live._feeds.get(store, {})) < 50


def test_a_page_gets_the_poll_it_asks_for(
    serve_app: Serve, store: statekeep.Store, tmp_path: Path
) -> None:
    statekeep.web.live(store, BrkTodo, poll=3600)  # someone else's page, earlier

    async def stream(request: Request) -> Response:
        return statekeep.web.live(store, BrkTodo, poll=0.1)

    base = serve_app(Starlette(routes=[Route("/live", stream)]))
    page = Page(f"{base}/live")
    other = statekeep.open(f"sqlite:///{tmp_path / 'brk.db'}")  # as another process would
    try:
        page.wait(lambda s: s["web_brk_todo_count"] == 0)
        other.save(BrkTodo(title="from elsewhere"))
        page.wait(lambda s: s["web_brk_todo_count"] == 1, timeout=3)
    finally:
        page.close()
        other.close()
