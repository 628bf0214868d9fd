"""statekeep.web's security rules (see statekeep/web/_security.py), from outside:
the bind rule (serve() refuses beyond loopback without a token, before binding),
the token's length, the token on every page but the health checks and /login, the
session cookie, CSRF and Origin on actions, the loopback-only rule of an app
without a token, and hostile query strings that never 500 and never change data.
A real dead letter is requeued through the action."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from starlette.types import ASGIApp

import statekeep
import statekeep.web
from statekeep import ConflictError, Entity
from statekeep.errors import ConfigurationError

TOKEN = "s3cret-token-for-tests"
BEARER = {"authorization": f"Bearer {TOKEN}"}


class Doc(Entity, collection="web_security_doc"):
    title: str = ""


@pytest.fixture
def store(tmp_path: Path) -> Iterator[statekeep.Store]:
    with statekeep.open(f"sqlite:///{tmp_path / 'sec.db'}") as opened:
        yield opened


Client = Callable[[ASGIApp], httpx.Client]


@pytest.fixture
def client(serve_app: Callable[[ASGIApp], str]) -> Iterator[Client]:
    """client(app): an httpx client of app served by uvicorn on 127.0.0.1."""
    opened: list[httpx.Client] = []

    def make(app: ASGIApp) -> httpx.Client:
        made = httpx.Client(base_url=serve_app(app), follow_redirects=False, timeout=10)
        opened.append(made)
        return made

    yield make
    for made in opened:
        made.close()


def rows(store: statekeep.Store) -> list[tuple[str, int, str]]:
    return sorted((d.id, d.version, d.title) for d in store.find(Doc))


# -- the bind rule and the token ------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.7", "::", "example.org"])
def test_serve_refuses_beyond_loopback_without_a_token_before_binding(
    host: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigurationError, match="token"):
        statekeep.web.serve(f"sqlite:///{tmp_path / 'x.db'}", host=host, port=1)
    assert not (tmp_path / "x.db").exists()


@pytest.mark.parametrize("token", ["short", "x" * 15, " " + "y" * 20])
def test_a_short_or_padded_token_is_refused(token: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="16 characters"):
        statekeep.web.serve(f"sqlite:///{tmp_path / 'x.db'}", token=token)
    with statekeep.open("memory://") as store, pytest.raises(ConfigurationError):
        statekeep.web.app(store, token=token)


@pytest.mark.parametrize(
    ("options", "says"),
    [({"port": 0}, "port"), ({"port": 65536}, "port"), ({"workers": 0}, "workers")],
)
def test_serve_refuses_bad_numbers(options: dict[str, int], says: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=says):
        statekeep.web.serve(f"sqlite:///{tmp_path / 'x.db'}", **options)  # type: ignore[arg-type]


def test_serve_refuses_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigurationError, match=f"127.0.0.1:{port}"):
            statekeep.web.serve(f"sqlite:///{tmp_path / 'x.db'}", port=port)


def test_from_env_applies_the_bind_rule(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STATEKEEP_URL", f"sqlite:///{tmp_path / 'x.db'}")
    monkeypatch.setenv("STATEKEEP_HOST", "0.0.0.0")
    monkeypatch.delenv("STATEKEEP_TOKEN", raising=False)
    with pytest.raises(ConfigurationError, match="token"):
        statekeep.web.from_env()
    monkeypatch.delenv("STATEKEEP_URL")
    with pytest.raises(ConfigurationError, match="STATEKEEP_URL"):
        statekeep.web.from_env()


# -- with a token: who sees what -------------------------------------------------


def test_with_a_token_every_page_but_health_needs_it(
    store: statekeep.Store, client: Client
) -> None:
    with client(statekeep.web.app(store, token=TOKEN)) as web:
        index = web.get("/")
        assert index.status_code == 303 and index.headers["location"].endswith("login")
        assert web.get("/events").status_code == 401
        assert web.get("/metrics").status_code in (401, 404)
        assert web.get("/healthz").status_code == 200
        assert web.get("/readyz").status_code == 200
        assert web.get("/login").status_code == 200
        assert web.get("/", headers=BEARER).status_code == 200
        metrics = web.get("/metrics", headers=BEARER)
        assert metrics.status_code in (200, 404)
        assert (
            web.get("/", headers={"authorization": "Bearer wrong-token-wrong-token"}).status_code
            == 303
        )


def test_login_with_the_wrong_token_401_and_the_right_one_sets_a_strict_cookie(
    store: statekeep.Store, client: Client
) -> None:
    with client(statekeep.web.app(store, token=TOKEN)) as web:
        wrong = web.post("/login", data={"token": "not-the-token-at-all"})
        assert wrong.status_code == 401 and "statekeep_session" not in wrong.headers.get(
            "set-cookie", ""
        )
        right = web.post("/login", data={"token": TOKEN})
        assert right.status_code == 303
        cookie = right.headers["set-cookie"]
        assert cookie.startswith("statekeep_session=")
        assert TOKEN not in cookie
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
        assert web.get("/").status_code == 200  # the cookie is kept by the client


def csrf_of(page: str) -> str:
    found = re.search(r"&quot;csrf&quot;: &quot;([0-9a-f]*)&quot;", page)
    assert found is not None, page[:500]
    return found.group(1)


def test_actions_need_a_token_the_cookie_csrf_and_the_origin(
    store: statekeep.Store, client: Client
) -> None:
    store.save(Doc(id="d1", title="kept"))
    before = rows(store)
    with client(statekeep.web.app(store)) as web:  # no token: read-only
        assert web.post("/actions/requeue?collection=x&id=y").status_code == 403
    with client(statekeep.web.app(store, token=TOKEN)) as web:
        assert web.post("/actions/requeue?collection=x&id=y").status_code == 401
        assert web.get("/actions/requeue?collection=x&id=y", headers=BEARER).status_code == 405
        web.post("/login", data={"token": TOKEN})
        csrf = csrf_of(web.get("/").text)
        assert csrf
        url = "/actions/requeue?collection=web_security_doc&id=none"
        assert web.post(url).status_code == 403  # the cookie but no CSRF signal
        assert web.post(url, json={"csrf": "0" * len(csrf)}).status_code == 403
        other = {"origin": "http://evil.example"}
        assert web.post(url, json={"csrf": csrf}, headers=other).status_code == 403
        cross = {"sec-fetch-site": "cross-site"}
        assert web.post(url, json={"csrf": csrf}, headers=cross).status_code == 403
        assert web.post(url, json={"csrf": csrf}).status_code == 404  # allowed: no such letter
        same = {"origin": str(web.base_url).rstrip("/")}
        assert web.post(url, json={"csrf": csrf}, headers=same).status_code == 404
    with client(statekeep.web.app(store, token=TOKEN)) as web:  # no cookie: bearer alone
        assert web.post(url, headers=BEARER).status_code == 404
    assert rows(store) == before


def test_without_a_token_actions_are_refused_on_loopback_too(
    store: statekeep.Store, serve_app: Callable[[ASGIApp], str]
) -> None:
    base = serve_app(statekeep.web.app(store))
    assert httpx.get(f"{base}/", timeout=5).status_code == 200
    done = httpx.post(f"{base}/actions/requeue?collection=a&id=b", timeout=5)
    assert done.status_code == 403 and "read-only" in done.text


def test_without_a_token_a_non_loopback_server_address_is_refused(store: statekeep.Store) -> None:
    """httpx's ASGITransport gives the scope the URL's host as its server: ("example.org", 80)."""
    app = statekeep.web.app(store)

    async def ask() -> dict[str, int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://example.org") as web:
            paths = ("/", "/events", "/metrics", "/healthz")
            found = {path: (await web.get(path)).status_code for path in paths}
            action = await web.post("/actions/requeue?collection=a&id=b")
            found["action"] = action.status_code
            return found

    found = asyncio.run(ask())
    assert found == {
        "/": 403,
        "/events": 403,
        "/metrics": found["/metrics"],
        "/healthz": 200,
        "action": 403,
    }
    assert found["/metrics"] in (403, 404)


# -- hostile input ---------------------------------------------------------------


HOSTILE = [
    "?" + "a" * 60_000,
    "?collection=%00&id=%00",
    "?collection=../../x&id=../../etc/passwd",
    "?collection=" + "é" * 500 + "&id=☃",
    "?collection=a&collection=b&id=1&id=2",
    "?collection=web_security_doc&id=d1&event=%ff%fe&field=__class__",
    "?datastar=%7Bnot%20json",
    "?datastar=" + "%5B" * 5000,
]


@pytest.mark.parametrize("query", HOSTILE, ids=lambda q: q[:30])
@pytest.mark.parametrize("action", ["requeue", "send"])
def test_hostile_queries_never_500_and_change_nothing(
    query: str, action: str, store: statekeep.Store, client: Client
) -> None:
    store.save(Doc(id="d1", title="kept"))
    before = rows(store)
    with client(statekeep.web.app(store, token=TOKEN, entities=[Doc])) as web:
        for headers in (BEARER, {}):
            answered = web.post(f"/actions/{action}{query}", headers=headers)
            assert answered.status_code < 500, answered.text
        big = web.post(f"/actions/{action}{query}", headers=BEARER, content=b"{" * 1_000_000)
        assert big.status_code in (401, 403, 404, 413), big.status_code
        for path in ("/", "/events", "/login", "/healthz"):
            assert web.get(f"{path}{query}").status_code < 500
    assert rows(store) == before


# -- a real dead letter, requeued --------------------------------------------------


def test_requeue_a_dead_letter_end_to_end(store: statekeep.Store, client: Client) -> None:
    store.save(Doc(id="x", title="stored"))  # version 1
    receipt = store.enqueue(Doc(id="x", title="conditional"), expect_version=2)
    with pytest.raises(ConflictError):
        receipt.wait_stored(timeout=30)
    (letter,) = store.writebehind.dead_letters()
    store.save(store.get(Doc, "x"))  # version 2: the conditional write can go through now
    with client(statekeep.web.app(store, token=TOKEN)) as web:
        done = web.post("/actions/requeue?collection=web_security_doc&id=x", headers=BEARER)
        assert done.status_code == 200, done.text
        assert done.headers["content-type"].startswith("text/event-stream")
        assert "datastar-merge-signals" in done.text and "requeued" in done.text
        again = web.post("/actions/requeue?collection=web_security_doc&id=x", headers=BEARER)
        assert again.status_code == 404
    assert store.flush(timeout=30)
    assert store.writebehind.dead_letters() == []
    assert store.get(Doc, "x").title == "conditional"
    assert letter.id == "x"


def test_actions_without_a_cookie(store: statekeep.Store, client: Client) -> None:
    """What does not need /login's form: read-only without a token, 401, 405, bearer."""
    store.save(Doc(id="d1", title="kept"))
    before = rows(store)
    url = "/actions/requeue?collection=web_security_doc&id=none"
    with client(statekeep.web.app(store)) as web:
        assert web.post(url).status_code == 403
    with client(statekeep.web.app(store, token=TOKEN)) as web:
        assert web.post(url).status_code == 401
        assert web.post(url, json={"csrf": "guess"}).status_code == 401
        assert web.get(url, headers=BEARER).status_code == 405
        assert web.post(url, headers=BEARER).status_code == 404  # no CSRF needed: no such letter
    assert rows(store) == before
