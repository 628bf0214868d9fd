"""What a review of statekeep.web found, one test each: readers set up and taken
down without leaking subscriptions as pages come and go, a page has every
commit before its store closes and its stream ends then, dead letters' text
only for exposed collections, bodies read only after the credentials, the
session cookie's life and path."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp

import statekeep
import statekeep.web
from statekeep import Entity, State

from ._datastar import Page, rows

Serve = Callable[[ASGIApp], str]
TOKEN = "t" * 24
BEARER = {"Authorization": f"Bearer {TOKEN}"}


class RevItem(Entity, collection="web_rev_item"):
    title: str = ""


class RevNote(Entity, collection="web_rev_note"):
    text: str = ""


@pytest.fixture
def store(tmp_path: Path) -> Iterator[statekeep.Store]:
    store = statekeep.open(f"sqlite:///{tmp_path / 'review.db'}")
    yield store
    store.close()


def subscriptions(store: statekeep.Store) -> int:
    return len(store._core.bus._subscriptions)


def test_pages_coming_and_going_leave_no_subscription(
    serve_app: Serve, store: statekeep.Store
) -> None:
    async def stream(request: Request) -> Response:
        return statekeep.web.live(store, RevItem)

    dashboard = statekeep.web.app(store, entities=[RevItem])
    base = serve_app(Starlette(routes=[Route("/live", stream), Mount("/", dashboard)]))
    before = subscriptions(store)
    for _ in range(15):  # each page leaves as soon as it had its first frame
        pages = [Page(base + "/live"), Page(base + "/events")]
        for page in pages:
            page.wait(lambda signals: bool(signals))
            page.close()
    deadline = time.monotonic() + 5
    while subscriptions(store) != before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert subscriptions(store) == before


def test_a_page_has_every_commit_before_close_and_its_stream_ends_then(
    serve_app: Serve, tmp_path: Path
) -> None:
    store = statekeep.open(f"sqlite:///{tmp_path / 'closing.db'}")

    async def stream(request: Request) -> Response:
        return statekeep.web.live(store, RevItem, poll=60)

    page = Page(serve_app(Starlette(routes=[Route("/live", stream)])) + "/live")
    try:
        page.wait(lambda signals: signals["web_rev_item_count"] == 0)
        for n in range(20):
            store.save(RevItem(title=f"i{n}"))
        page.wait(lambda signals: signals["web_rev_item_count"] == 20, timeout=5)
        assert [row["title"] for row in rows(page.signals, "web_rev_item")][-1] == "i19"
        store.close()
        page.ended(timeout=5)  # no stream left open on heartbeats alone
    finally:
        page.close()


def make_dead_letter(store: statekeep.Store) -> None:
    store.save(RevNote(id="n1", text="stored"))
    receipt = store.enqueue(RevNote(id="n1", text="secret-value"), expect_version=2)
    with pytest.raises(statekeep.ConflictError):
        receipt.wait_stored(timeout=10)


@pytest.mark.parametrize("exposed", [False, True])
def test_a_dead_letter_shows_its_text_and_body_only_when_exposed(
    serve_app: Serve, store: statekeep.Store, exposed: bool
) -> None:
    make_dead_letter(store)
    expose = [RevNote] if exposed else []
    base = serve_app(statekeep.web.app(store, entities=[RevNote], expose=expose))
    page = Page(base + "/events")
    try:
        page.wait(lambda signals: signals["shape"]["letters"] == 1)
        letter = page.signals["letters"]["0"]
        assert letter["id"] == "n1"
        if exposed:
            assert "expected version 2" in letter["error"]
            assert "secret-value" in letter["body"]
        else:
            assert letter["error"] == "ConflictError"
            assert "body" not in letter
            assert "secret-value" not in str(page.signals)
    finally:
        page.close()


def raw_post(base: str, path: str, body: bytes, headers: dict[str, str]) -> int:
    """The status of a POST whose body the server may refuse to read."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        with contextlib.suppress(OSError):  # the server answered and closed first
            sock.sendall(body)
        return int(sock.recv(1024).split()[1])


def test_bodies_are_read_only_after_the_credentials(
    serve_app: Serve, store: statekeep.Store
) -> None:
    base = serve_app(statekeep.web.app(store, token=TOKEN))
    big = b"x" * (2 * 1024 * 1024)
    assert raw_post(base, "/actions/requeue?collection=a&id=b", big, {}) == 401
    assert raw_post(base, "/actions/requeue?collection=a&id=b", big, BEARER) == 413
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert raw_post(base, "/login", b"token=" + b"x" * 10_000, form) == 413


def test_the_session_cookie_lasts_12_hours_on_the_dashboard_path(
    serve_app: Serve, store: statekeep.Store
) -> None:
    dashboard = statekeep.web.app(store, token=TOKEN)
    base = serve_app(Starlette(routes=[Mount("/ops", dashboard)]))
    answer = httpx.post(f"{base}/ops/login", data={"token": TOKEN})
    assert answer.status_code == 303
    cookie = answer.headers["set-cookie"]
    assert "Max-Age=43200" in cookie and "Path=/ops/" in cookie, cookie


class RevFlowLate(Entity, collection="web_rev_late"):
    state: RevFlow | None = None  # a machine declared after its entity: a field not indexed


class RevFlow(statekeep.Machine):
    idle = State(initial=True)
    done = State(final=True)
    finish = idle.to(done)


def test_every_class_defined_is_counted_even_one_that_cannot_be_grouped(
    serve_app: Serve, store: statekeep.Store
) -> None:
    """The default dashboard counts every entity class defined so far (in this
    test process: hundreds); a machine field without an index is counted state
    by state, and nothing one class does makes the page fail."""
    RevFlowLate.model_rebuild()
    RevFlowLate(state=RevFlow.idle).send("finish")  # binds the machine, its field unindexed
    store.save(RevFlowLate(state=RevFlow.idle))
    base = serve_app(statekeep.web.app(store))
    assert httpx.get(base + "/").status_code == 200
    page = Page(base + "/events")
    try:
        page.wait(
            lambda signals: any(
                machine["name"] == "RevFlowLate.state" for machine in signals["machines"].values()
            ),
            timeout=10,
        )
        late = next(
            m for m in page.signals["machines"].values() if m["name"] == "RevFlowLate.state"
        )
        assert {s["state"]: s["count"] for s in late["states"].values()} == {"idle": 1, "done": 0}
    finally:
        page.close()
