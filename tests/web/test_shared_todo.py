"""examples/shared_todo/app.py in Debian's chromium: two pages (two browser
contexts, as two people) follow one list, each seeing the other's changes,
and the test process's own writes, within 2 s. Every row the pages show is
drawn by the Datastar client from signals the stream sent: without the
client running, the list stays empty."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Dialog, Error, Page, expect
from starlette.types import ASGIApp

import statekeep

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "shared_todo" / "app.py"
WITHIN = 2_000  # ms: a change shows in the other page within this
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "shared-todo.png"


def load_example() -> ModuleType:
    """The example as a module (imported once: it defines the Todo entity class)."""
    name = "statekeep_example_shared_todo"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def example() -> ModuleType:
    return load_example()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[statekeep.Store]:
    with statekeep.open(f"sqlite:///{tmp_path / 'todo.db'}") as opened:
        yield opened


@pytest.fixture
def base(store: statekeep.Store, example: ModuleType, serve_app: Callable[[ASGIApp], str]) -> str:
    """The example served on the test's store (the server stops before the store closes)."""
    return serve_app(example.make_app(store))


@pytest.fixture
def two_pages(browser: Browser, base: str) -> Iterator[tuple[Page, Page]]:
    """Two people's pages on the list, each in a context of its own; closed
    (their streams with them) before the server stops."""
    errors: list[Error] = []
    contexts = [browser.new_context(viewport={"width": 1280, "height": 900}) for _ in range(2)]
    try:
        pages = []
        for context in contexts:
            opened = context.new_page()
            opened.set_default_timeout(10_000)
            opened.on("pageerror", lambda error: errors.append(error))
            opened.goto(f"{base}/")
            # the stream's first frame sets todos_count: the client runs and follows it
            expect(opened.locator("#count")).to_have_text("0 to do or done")
            pages.append(opened)
        yield pages[0], pages[1]
    finally:
        for context in contexts:
            context.close()
    if errors:
        pytest.fail(f"uncaught JavaScript errors in the pages: {errors}", pytrace=False)


def titles(page: Page) -> Any:
    return page.locator("#todo-list li .title")


def add(page: Page, title: str) -> None:
    page.locator("#new-title").fill(title)
    page.get_by_role("button", name="add").click()


def row(page: Page, title: str) -> Any:
    return page.locator("#todo-list li").filter(has_text=title)


def test_two_pages_see_each_others_adds_toggles_and_deletes(
    two_pages: tuple[Page, Page], store: statekeep.Store, example: ModuleType
) -> None:
    one, two = two_pages
    add(one, "buy milk")
    expect(titles(two)).to_have_text(["buy milk"], timeout=WITHIN)
    expect(titles(one)).to_have_text(["buy milk"], timeout=WITHIN)
    expect(one.locator("#new-title")).to_have_value("", timeout=WITHIN)  # the answer's patch
    expect(two.locator("#count")).to_have_text("1 to do or done", timeout=WITHIN)
    (stored,) = store.find(example.Todo)
    assert stored.title == "buy milk" and not stored.done

    add(two, "  walk the dog  ")  # stripped by the entity's own constraint
    expect(titles(one)).to_have_text(["buy milk", "walk the dog"], timeout=WITHIN)

    row(two, "buy milk").get_by_role("checkbox").click()
    expect(row(one, "buy milk").get_by_role("checkbox")).to_be_checked(timeout=WITHIN)
    expect(row(one, "buy milk")).to_have_class("done", timeout=WITHIN)
    expect(row(one, "walk the dog").get_by_role("checkbox")).not_to_be_checked()
    assert store.get(example.Todo, stored.id).done

    row(one, "buy milk").get_by_role("checkbox").click()  # and back, from the other page
    expect(row(two, "buy milk").get_by_role("checkbox")).not_to_be_checked(timeout=WITHIN)
    expect(row(two, "buy milk")).not_to_have_class("done", timeout=WITHIN)

    row(one, "buy milk").get_by_role("checkbox").click()
    expect(row(two, "buy milk").get_by_role("checkbox")).to_be_checked(timeout=WITHIN)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    one.screenshot(path=str(SCREENSHOT))  # docs/img: two items, one done

    row(two, "buy milk").get_by_role("button", name="delete").click()
    expect(titles(one)).to_have_text(["walk the dog"], timeout=WITHIN)
    expect(titles(two)).to_have_text(["walk the dog"], timeout=WITHIN)
    expect(one.locator("#count")).to_have_text("1 to do or done", timeout=WITHIN)
    # the row left is drawn from the signals now at place 0: not done
    expect(row(one, "walk the dog").get_by_role("checkbox")).not_to_be_checked()
    assert [todo.title for todo in store.find(example.Todo)] == ["walk the dog"]


def test_the_test_processs_own_writes_reach_both_pages(
    two_pages: tuple[Page, Page], store: statekeep.Store, example: ModuleType
) -> None:
    one, two = two_pages
    first = store.save(example.Todo(title="from the store"))
    store.save(example.Todo(title="and another"))
    for page in (one, two):
        expect(titles(page)).to_have_text(["from the store", "and another"], timeout=WITHIN)
    first.done = True
    store.save(first)
    for page in (one, two):
        expect(row(page, "from the store").get_by_role("checkbox")).to_be_checked(timeout=WITHIN)
    store.delete(first)
    for page in (one, two):
        expect(titles(page)).to_have_text(["and another"], timeout=WITHIN)


HOSTILE = {
    "empty": "",
    "spaces only": "   ",
    "201 characters": "x" * 201,
    "10 kB": "<img src=x onerror=alert(1)>" * 360,
    "not text": 5,
}


PAGE = {"Datastar-Request": "true"}  # what the example's own page sends with a change


@pytest.mark.parametrize("title", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_bad_title_is_refused_with_400_and_nothing_is_stored(
    base: str, store: statekeep.Store, example: ModuleType, title: object
) -> None:
    answer = httpx.post(f"{base}/add", json={"newtitle": title}, headers=PAGE, timeout=10)
    assert answer.status_code == 400, answer.text
    assert "error" in answer.json()
    assert store.count(example.Todo) == 0


def test_a_title_with_markup_is_shown_as_text_never_run(
    two_pages: tuple[Page, Page], store: statekeep.Store, example: ModuleType
) -> None:
    one, two = two_pages
    dialogs: list[str] = []

    def alerted(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    for page in (one, two):
        page.on("dialog", alerted)
    hostile = "<img src=x onerror=alert(1)>"
    add(one, hostile)
    expect(titles(two)).to_have_text([hostile], timeout=WITHIN)  # as text
    assert two.locator("#todo-list img").count() == 0
    assert one.locator("#todo-list img").count() == 0
    two.wait_for_timeout(300)  # a broken image's onerror would have fired by now
    assert dialogs == []
    assert [todo.title for todo in store.find(example.Todo)] == [hostile]


def test_toggling_or_deleting_a_missing_todo_is_404(base: str) -> None:
    for action in ("toggle", "delete"):
        answer = httpx.post(f"{base}/{action}?id=nope", headers=PAGE, timeout=10)
        assert answer.status_code == 404


@pytest.mark.parametrize(
    "headers",
    [{}, {"Datastar-Request": "true", "Sec-Fetch-Site": "cross-site"}],
    ids=["a plain form", "another site's script"],
)
def test_a_change_from_another_site_is_refused(
    base: str, store: statekeep.Store, example: ModuleType, headers: dict[str, str]
) -> None:
    todo = store.save(example.Todo(title="kept"))
    for path in ("/add", f"/toggle?id={todo.id}", f"/delete?id={todo.id}"):
        answer = httpx.post(f"{base}{path}", json={"newtitle": "forged"}, headers=headers)
        assert answer.status_code == 403, path
    assert [(t.title, t.done) for t in store.find(example.Todo)] == [("kept", False)]
