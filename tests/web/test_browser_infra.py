"""The browser-test set-up itself: the Datastar client that the build packaged
(src/statekeep/web/static/datastar.js) runs in Debian's chromium, served by
uvicorn from a thread, and that server stops with its test."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

import statekeep

from .conftest import serving

STATIC = Path(statekeep.__file__).parent / "web" / "static"

COUNTER = """<!doctype html>
<html>
<head><script type="module" src="/static/datastar.js"></script></head>
<body data-signals="{count: 1}">
  <span id="c" data-text="$count"></span>
  <button id="more" data-on-click="$count++">more</button>
</body>
</html>
"""


def counter_app() -> Starlette:
    if not (STATIC / "datastar.js").is_file():
        pytest.fail(
            f"{STATIC / 'datastar.js'} is missing: the build makes it "
            "(`make .venv/.installed`, or `pip install -e .`; hatch_build.py)"
        )

    async def index(request: Request) -> HTMLResponse:
        return HTMLResponse(COUNTER)

    return Starlette(
        routes=[Route("/", index), Mount("/static", StaticFiles(directory=STATIC), name="static")]
    )


def test_the_packaged_datastar_client_runs_in_chromium(
    page: Page, serve_app: Callable[[ASGIApp], str]
) -> None:
    base = serve_app(counter_app())
    with page.expect_response(f"{base}/static/datastar.js") as script:
        page.goto(f"{base}/")
    assert script.value.ok
    assert "javascript" in script.value.headers["content-type"]
    count = page.locator("#c")
    expect(count).to_have_text("1")
    page.locator("#more").click()
    expect(count).to_have_text("2")


def test_a_served_app_runs_its_lifespan_and_stops_with_the_block() -> None:
    phases: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        phases.append("startup")
        yield
        phases.append("shutdown")

    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hello")

    app = Starlette(routes=[Route("/", hello)], lifespan=lifespan)
    with serving(app) as base:
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            reply = b""
            while chunk := conn.recv(4096):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"hello")
        assert phases == ["startup"]
    assert phases == ["startup", "shutdown"]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
