"""statekeep.web.live: a selection of entities kept live in a page, over a real server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

import statekeep
import statekeep.web
from statekeep import Entity

from ._datastar import Page, rows

Serve = Callable[[ASGIApp], str]


class LiveTask(Entity, collection="web_live_task"):
    title: str = ""
    done: bool = False
    rank: int = 0
    tags: list[str] = []
    extra: dict[str, Any] = {}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[statekeep.Store]:
    store = statekeep.open(f"sqlite:///{tmp_path / 'live.db'}")
    yield store
    store.close()


def serve_live(serve_app: Serve, store: statekeep.Store, **options: Any) -> str:
    async def stream(request: Request) -> Response:
        return statekeep.web.live(store, LiveTask, **options)

    return serve_app(Starlette(routes=[Route("/stream", stream)]))


def titles(signals: dict[str, Any], name: str = "web_live_task") -> list[str]:
    return [row["title"] for row in rows(signals, name)]


def test_a_page_gets_the_rows_then_a_patch_for_each_change(
    serve_app: Serve, store: statekeep.Store
) -> None:
    tasks = [store.save(LiveTask(title=f"t{n}", rank=n)) for n in range(3)]
    page = Page(serve_live(serve_app, store, order_by="rank") + "/stream")
    try:
        page.wait(lambda s: titles(s) == ["t0", "t1", "t2"] and s["web_live_task_count"] == 3)
        first = page.frames
        tasks[1].done = True
        store.save(tasks[1])
        page.wait(lambda s: s["web_live_task"]["1"]["done"] is True, timeout=2)
        assert page.frames == first + 1
        store.delete(tasks[2])
        page.wait(lambda s: titles(s) == ["t0", "t1"] and s["web_live_task_count"] == 2)
        assert "datastar-remove-signals" in page.events  # row 2 left the selection
        store.save(LiveTask(title="t-1", rank=-1))
        page.wait(lambda s: titles(s) == ["t-1", "t0", "t1"])
    finally:
        page.close()


def test_where_and_limit_hold_as_rows_come_and_go(serve_app: Serve, store: statekeep.Store) -> None:
    for n in range(5):
        store.save(LiveTask(title=f"t{n}", rank=n, done=n % 2 == 0))
    url = serve_live(serve_app, store, where=[LiveTask.f.done == False], order_by="-rank", limit=2)
    page = Page(url + "/stream")
    try:
        page.wait(lambda s: titles(s) == ["t3", "t1"])
        store.save(LiveTask(title="t9", rank=9, done=False))
        page.wait(lambda s: titles(s) == ["t9", "t3"])
        store.save(LiveTask(title="t8", rank=8, done=True))  # not in the selection
        page.wait(lambda s: titles(s) == ["t9", "t3"])
    finally:
        page.close()


def test_two_pages_share_one_reader(serve_app: Serve, store: statekeep.Store) -> None:
    store.save(LiveTask(title="a"))
    url = serve_live(serve_app, store) + "/stream"
    pages = [Page(url), Page(url)]
    try:
        for page in pages:
            page.wait(lambda s: titles(s) == ["a"])
        store.save(LiveTask(title="b"))
        for page in pages:
            page.wait(lambda s: titles(s) == ["a", "b"])
    finally:
        for page in pages:
            page.close()


def test_another_process_change_arrives_by_polling(
    serve_app: Serve, store: statekeep.Store, tmp_path: Path
) -> None:
    page = Page(serve_live(serve_app, store, poll=0.2) + "/stream")
    try:
        page.wait(lambda s: s["web_live_task_count"] == 0)
        other = statekeep.open(f"sqlite:///{tmp_path / 'live.db'}")  # its events stay there
        try:
            other.save(LiveTask(title="elsewhere"))
        finally:
            other.close()
        page.wait(lambda s: titles(s) == ["elsewhere"], timeout=3)
    finally:
        page.close()


def test_user_data_reaches_the_page_as_values_not_paths(
    serve_app: Serve, store: statekeep.Store
) -> None:
    store.save(LiveTask(title="<script>x</script>", tags=["a", "b"], extra={"a.b": 1, "x__y": 2}))
    page = Page(serve_live(serve_app, store) + "/stream")
    try:
        page.wait(lambda s: s["web_live_task"]["0"]["title"] == "<script>x</script>")
        row = page.signals["web_live_task"]["0"]
        assert row["tags"] == ["a", "b"]
        assert row["extra"] == [["a.b", 1], ["x__y", 2]]
    finally:
        page.close()


def test_render_sends_rows_html_when_the_membership_changes(
    serve_app: Serve, store: statekeep.Store
) -> None:
    drawn: list[int] = []

    def render(found: list[dict[str, Any]]) -> str:
        drawn.append(len(found))
        items = "".join(
            f'<li data-text="$web_live_task.{n}.title"></li>' for n in range(len(found))
        )
        return f'<ul id="tasks">{items}</ul>'

    task = store.save(LiveTask(title="a"))
    page = Page(serve_live(serve_app, store, render=render) + "/stream")
    try:
        page.wait(lambda s: titles(s) == ["a"])
        task.title = "renamed"
        store.save(task)  # a field changed: signals only
        page.wait(lambda s: titles(s) == ["renamed"])
        store.save(LiveTask(title="b"))
        page.wait(lambda s: len(titles(s)) == 2)
        page.wait(lambda s: len(page.fragments) == 2)
        assert page.fragments[-1].count("<li") == 2
        assert drawn == [1, 2]
    finally:
        page.close()


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"where": "done = 1"}, statekeep.ConfigurationError),
        ({"where": {"nope": 1}}, statekeep.UnknownFieldError),
        ({"order_by": "nope"}, statekeep.UnknownFieldError),
        ({"limit": -1}, statekeep.QueryError),
        ({"signal": "a.b"}, statekeep.ConfigurationError),
        ({"signal": "a__b"}, statekeep.ConfigurationError),
        ({"poll": 0}, statekeep.ConfigurationError),
        ({"coalesce": -1}, statekeep.ConfigurationError),
        ({"render": "html"}, statekeep.ConfigurationError),
    ],
)
def test_bad_arguments_raise_typed_errors_before_any_response(
    store: statekeep.Store, options: dict[str, Any], error: type[Exception]
) -> None:
    saved = store.save(LiveTask(title="kept"))
    with pytest.raises(error):
        statekeep.web.live(store, LiveTask, **options)
    assert store.get(LiveTask, saved.id) == saved


def test_live_takes_a_store_or_an_async_store_only(store: statekeep.Store) -> None:
    with pytest.raises(statekeep.ConfigurationError):
        statekeep.web.live("sqlite:///x.db", LiveTask)
