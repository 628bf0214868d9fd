"""Real-browser tests of statekeep.web: playwright's sync API drives Debian's
chromium (the apt package `chromium`), never a browser of playwright's own:
nothing here runs `playwright install`, and PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
keeps playwright from fetching one.

- `chromium_executable` (session): $STATEKEEP_CHROMIUM, else `chromium` on PATH,
  else /usr/bin/chromium. Where none is found, and we are root with apt-get, the
  run installs Debian's package first (once, after collection, so the download
  does not count against a test's timeout). Still none: the test fails under CI
  (CI=true), and is skipped elsewhere.
- `browser` (module): one headless chromium per test module. Not longer: while
  playwright's sync API is started, the main thread has a running event loop
  (playwright marks its own loop running between calls), so `asyncio.run` and
  async tests fail. Keep async tests out of a module that uses `browser` or
  `page`; every other module runs with no browser up.
- `page`: a fresh context and page per test; an uncaught error in the page's
  JavaScript fails the test at teardown.
- `serve_app`: `serve_app(app)` serves an ASGI app with uvicorn on a free
  127.0.0.1 port in a thread (lifespan on) and returns its base URL; every
  server it started is stopped when the test ends. `serving(app)` is the same as
  a context manager.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Browser, Error, Page, sync_playwright
from starlette.types import ASGIApp

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")

CHROMIUM_ENV = "STATEKEEP_CHROMIUM"
DEBIAN_CHROMIUM = Path("/usr/bin/chromium")
APT_INSTALL = ["apt-get", "install", "-y", "chromium"]
STARTUP_SECONDS = 10.0
SHUTDOWN_SECONDS = 10


def pytest_collection_finish(session: pytest.Session) -> None:
    if any("chromium_executable" in getattr(item, "fixturenames", ()) for item in session.items):
        _chromium(session.config)


@functools.cache
def _chromium(config: pytest.Config) -> tuple[Path | None, str]:
    """chromium's path, or None and why not; installs Debian's where it can."""
    override = os.environ.get(CHROMIUM_ENV)
    if override:
        path = Path(override)
        if path.is_file() and os.access(path, os.X_OK):
            return path, ""
        return None, f"{CHROMIUM_ENV}={override} is not an executable file"
    found = _find_chromium()
    if found is not None:
        return found, ""
    if os.name != "posix" or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return None, "chromium is not installed (Debian: apt-get install chromium)"
    say = _say(config)
    say(f"tests/web: chromium not found; installing Debian's: {' '.join(APT_INSTALL)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = _run(APT_INSTALL, env)
    if done.returncode != 0:
        say("tests/web: that failed; apt-get update, then install again")
        _run(["apt-get", "update"], env)
        done = _run(APT_INSTALL, env)
    found = _find_chromium()
    if found is not None:
        say(f"tests/web: installed {found}")
        return found, ""
    tail = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
    return None, f"chromium is not installed, and `{' '.join(APT_INSTALL)}` failed:\n{tail}"


def _find_chromium() -> Path | None:
    on_path = shutil.which("chromium")
    if on_path is not None:
        return Path(on_path)
    return DEBIAN_CHROMIUM if DEBIAN_CHROMIUM.is_file() else None


def _run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
    )


def _say(config: pytest.Config) -> Callable[[str], None]:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return lambda line: None
    return lambda line: reporter.write_line(line)


@pytest.fixture(scope="session")
def chromium_executable(pytestconfig: pytest.Config) -> Path:
    path, why = _chromium(pytestconfig)
    if path is not None:
        return path
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"browser tests need chromium: {why}", pytrace=False)
    pytest.skip(f"browser tests need chromium: {why}; or set {CHROMIUM_ENV}=/path/to/chromium")


@pytest.fixture(scope="module")
def browser(chromium_executable: Path) -> Iterator[Browser]:
    playwright = sync_playwright().start()
    try:
        launched = playwright.chromium.launch(
            executable_path=chromium_executable, headless=True, args=["--no-sandbox"]
        )
        try:
            yield launched
        finally:
            launched.close()
    finally:
        playwright.stop()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    errors: list[Error] = []
    context = browser.new_context()
    try:
        opened = context.new_page()
        opened.set_default_timeout(10_000)
        opened.on("pageerror", lambda error: errors.append(error))
        yield opened
    finally:
        context.close()
    if errors:
        pytest.fail(f"uncaught JavaScript errors in the page: {errors}", pytrace=False)


@contextlib.contextmanager
def serving(app: ASGIApp) -> Iterator[str]:
    """Serves `app` on 127.0.0.1 until the block ends; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            log_config=None,  # the test process's logging stays as pytest set it up
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=SHUTDOWN_SECONDS // 2,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn:{port}", daemon=True
        )
        thread.start()
        try:
            deadline = time.monotonic() + STARTUP_SECONDS
            while not server.started:
                if not thread.is_alive():
                    raise RuntimeError("uvicorn stopped before it served (its log says why)")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"uvicorn did not start within {STARTUP_SECONDS} s")
                time.sleep(0.005)
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            thread.join(SHUTDOWN_SECONDS)
            if thread.is_alive():
                server.force_exit = True
                thread.join(SHUTDOWN_SECONDS)
            if thread.is_alive():
                raise RuntimeError(f"uvicorn on port {port} did not stop")


@pytest.fixture
def serve_app() -> Iterator[Callable[[ASGIApp], str]]:
    with contextlib.ExitStack() as servers:
        yield lambda app: servers.enter_context(serving(app))
