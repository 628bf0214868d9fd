"""statekeep.web.app(store) in Debian's chromium: the dashboard's figures
follow the store within a second, machines and dead letters show, and the
requeue action works for a signed-in page and for no one else.

Every figure asserted here starts empty in the page's HTML and is set only
by the Datastar client from a signal patch the stream sent, so none of
these tests can pass without the client running. docs/img/dashboard.png is
written by test_a_screenshot_of_a_busy_dashboard, on every run."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import ASGIApp

import statekeep
import statekeep.web
from statekeep import Entity, Machine, Priority, State, WriteBehindOptions

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "dashboard.png"
TOKEN = "x" * 20
FOLLOWS = 1_000  # ms: the page shows a stored write within this


class OrderFlow(Machine):
    placed = State(initial=True)
    paid, shipped = State(), State()
    delivered = State(final=True)

    pay = placed.to(paid)
    ship = paid.to(shipped)
    deliver = shipped.to(delivered)


class DashOrder(Entity, collection="dash_order"):
    state: OrderFlow = OrderFlow.placed
    item: str = ""


class DashNote(Entity, collection="dash_note"):
    text: str = ""


ENTITIES: list[type[Entity]] = [DashOrder, DashNote]

OpenStore = Callable[..., statekeep.Store]


@pytest.fixture
def open_store(tmp_path: Path) -> Iterator[OpenStore]:
    """open_store(**write-behind options): a SQLite store, closed after the
    test's servers stopped (it is set up before them)."""
    opened: list[statekeep.Store] = []

    def open_(**options: Any) -> statekeep.Store:
        store = statekeep.open(
            f"sqlite:///{tmp_path / f'dash{len(opened)}.db'}",
            writebehind=WriteBehindOptions(drain_timeout=2, **options),
        )
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


@pytest.fixture
def serve(
    open_store: OpenStore, serve_app: Callable[[ASGIApp], str]
) -> Callable[..., tuple[statekeep.Store, str]]:
    def serve_(token: str | None = None, **options: Any) -> tuple[statekeep.Store, str]:
        store = open_store(**options)
        app = statekeep.web.app(store, token=token, entities=ENTITIES, title="orders")
        return store, serve_app(app)

    return serve_


def text_is(page: Page, selector: str, value: str, timeout: float) -> None:
    """Waits (polling the DOM every animation frame) until selector's text is value."""
    page.wait_for_function(
        "([selector, value]) => document.querySelector(selector)?.textContent === value",
        arg=[selector, value],
        timeout=timeout,
    )


def count_row(page: Page, name: str) -> Any:
    return page.locator("#counts-rows tr").filter(has_text=name).locator("td.num")


def dead_letter(store: statekeep.Store, id: str = "late") -> None:
    """A write that fails for good: its expected version is not the stored one
    (a ConflictError: dead-lettered, never retried). Once the stored note
    reaches that version, a requeue of it is stored."""
    store.save(DashNote(id=id, text="stored"))  # version 1
    receipt = store.enqueue(DashNote(id=id, text="conditional"), expect_version=2)
    with pytest.raises(statekeep.ConflictError):
        receipt.wait_stored(timeout=10)
    assert [letter.id for letter in store.writebehind.dead_letters()] == [id]


def test_the_page_opens_its_stream(
    serve: Callable[..., tuple[statekeep.Store, str]], page: Page
) -> None:
    _, base = serve()
    with page.expect_request(lambda request: request.url.startswith(f"{base}/events")):
        page.goto(f"{base}/")
    expect(page.locator(".live")).to_have_class("live on")  # $connected, from the stream


def test_a_dashboard_mounted_under_a_path_streams_and_acts_there(
    open_store: OpenStore, serve_app: Callable[[ASGIApp], str], page: Page
) -> None:
    """Datastar resolves an action's URL against the site's root: the page names
    its mount point (a relative 'events' went to /events, a 404)."""
    store = open_store()
    dashboard = statekeep.web.app(store, entities=ENTITIES, title="orders")
    base = serve_app(Starlette(routes=[Mount("/admin/store", dashboard)]))
    with page.expect_request(lambda request: request.url == f"{base}/admin/store/events"):
        page.goto(f"{base}/admin/store/")
    expect(page.locator(".live")).to_have_class("live on")
    store.save(DashOrder(id="mounted", item="tea"))
    expect(count_row(page, "dash_order")).to_have_text("1")


def test_the_figures_follow_the_store_within_a_second(
    serve: Callable[..., tuple[statekeep.Store, str]], page: Page
) -> None:
    store, base = serve()
    page.goto(f"{base}/")
    text_is(page, "#wb-stored", "0", 5_000)  # the stream's first frame
    expect(count_row(page, "dash_order")).to_have_text("0")
    for round, total in ((1, 25), (2, 60)):
        for n in range(total - store.writebehind.stats().stored):
            store.enqueue(DashOrder(id=f"o{round}-{n}", item="tea"))
        assert store.flush(timeout=10)
        stored_at = time.monotonic()
        text_is(page, "#wb-stored", str(total), FOLLOWS)
        shown = time.monotonic() - stored_at
        # the count is read at most once a second (_board.Every): its own bound
        text_is(page, "#counts-rows tr:first-child td.num", str(total), FOLLOWS + 250)
        assert shown < FOLLOWS / 1000
    expect(page.locator("#wb-total")).to_have_text("0")
    expect(page.locator("#stored-rate")).not_to_have_text("0")  # a rate, set by a patch
    expect(count_row(page, "dash_note")).to_have_text("0")


def test_a_machines_state_counts_show(
    serve: Callable[..., tuple[statekeep.Store, str]], page: Page
) -> None:
    store, base = serve()
    orders = [store.save(DashOrder(item=f"item {n}")) for n in range(5)]
    for order in orders[:3]:
        store.send(order, "pay")
    store.send(orders[0], "ship")
    page.goto(f"{base}/")
    machine = page.locator("#machines-rows .machine")
    expect(machine.locator("h3")).to_have_text("DashOrder.state")
    bars = machine.locator(".bar")
    expect(bars.locator("span")).to_have_text(["placed", "paid", "shipped", "delivered"])
    expect(bars.locator("b")).to_have_text(["2", "2", "1", "0"])
    store.send(orders[0], "deliver")  # and it follows
    expect(bars.locator("b")).to_have_text(["2", "2", "0", "1"], timeout=2_000)
    expect(page.locator("#transitions-rows tr").first).to_contain_text("shipped → delivered")


def test_without_a_token_dead_letters_show_but_cannot_be_requeued(
    serve: Callable[..., tuple[statekeep.Store, str]], page: Page
) -> None:
    store, base = serve()
    dead_letter(store)
    page.goto(f"{base}/")
    expect(page.locator("#wb-dead")).to_have_text("1")
    letters = page.locator("#letters-rows tr")
    expect(letters).to_have_count(1)
    expect(letters.first).to_contain_text("dash_note")
    expect(letters.first).to_contain_text("ConflictError")
    expect(page.locator("button.requeue")).to_have_count(0)
    expect(page.locator("a.who")).to_have_count(0)  # no sign-in without a token
    answer = page.request.post(
        f"{base}/actions/requeue?collection=dash_note&id=late", data={"csrf": ""}
    )
    assert answer.status == 403
    assert len(store.writebehind.dead_letters()) == 1


def sign_in(page: Page, base: str) -> None:
    page.goto(f"{base}/")
    expect(page).to_have_url(f"{base}/login")  # sent to sign in first
    page.locator("input[name=token]").fill(TOKEN)
    page.get_by_role("button", name="sign in").click()
    expect(page).to_have_url(f"{base}/")
    expect(page.locator("a.who")).to_have_text("signed in · sign out")


def test_a_signed_in_page_requeues_a_dead_letter(
    serve: Callable[..., tuple[statekeep.Store, str]], page: Page
) -> None:
    store, base = serve(token=TOKEN)
    dead_letter(store)
    store.save(store.get(DashNote, "late"))  # now at version 2: the requeue can be stored
    sign_in(page, base)
    expect(page.locator("#wb-dead")).to_have_text("1")
    with page.expect_response(lambda r: "/actions/requeue" in r.url) as answered:
        page.locator("button.requeue").click()
    assert answered.value.status == 200, answered.value.text()
    expect(page.locator("#letters-rows tr")).to_have_count(0, timeout=2_000)
    expect(page.locator("#card-letters .empty")).to_be_visible()
    assert store.flush(timeout=10)
    assert store.get(DashNote, "late").text == "conditional"
    assert store.writebehind.dead_letters() == []


def test_requeue_refuses_forged_posts_with_a_token(
    serve: Callable[..., tuple[statekeep.Store, str]], page: Page
) -> None:
    store, base = serve(token=TOKEN)
    dead_letter(store)
    action = f"{base}/actions/requeue?collection=dash_note&id=late"
    # signed out: no cookie, no bearer header
    assert httpx.post(action, json={"csrf": "forged"}, timeout=10).status_code == 401
    assert page.request.post(action, data={"csrf": "forged"}).status == 401
    sign_in(page, base)
    expect(page.locator("button.requeue")).to_have_count(1)
    # signed in (the context has the cookie) but without the page's CSRF token
    assert page.request.post(action, data={"csrf": "forged"}).status == 403
    page.locator("a.who").click()  # sign out
    expect(page).to_have_url(f"{base}/login")
    assert page.request.post(action, data={"csrf": "forged"}).status == 401
    assert [letter.id for letter in store.writebehind.dead_letters()] == ["late"]


def test_a_screenshot_of_a_busy_dashboard(
    serve: Callable[..., tuple[statekeep.Store, str]], page: Page
) -> None:
    """docs/img/dashboard.png: stored and pending writes, counts, a machine,
    a dead letter (signed in: its requeue button shows)."""
    store, base = serve(token=TOKEN, window=3.0, low_max_age=60.0)
    orders = [DashOrder(item=f"item {n}") for n in range(40)]
    store.save_many(orders)
    for n, order in enumerate(orders[:25]):
        store.send(order, "pay")
        if n < 12:
            store.send(order, "ship")
        if n < 5:
            store.send(order, "deliver")
    dead_letter(store)
    page.set_viewport_size({"width": 1280, "height": 900})
    sign_in(page, base)
    for n in range(30):
        store.enqueue(DashNote(id=f"n{n}", text="later"), Priority.LOW)
    for n in range(7):
        store.enqueue(DashNote(id=f"m{n}", text="soon"))
    expect(page.locator("#wb-total")).not_to_have_text("0")
    expect(page.locator("#machines-rows .bar b")).to_have_text(["15", "13", "7", "5"])
    expect(page.locator("#wb-dead")).to_have_text("1")
    page.wait_for_timeout(400)  # one more frame: the sparklines and latencies
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))
    assert store.flush(timeout=10)
