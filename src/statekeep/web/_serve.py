"""Serving the dashboard: `from_env()` for a server that imports an app
factory (uvicorn --factory, gunicorn with uvicorn-worker, granian), and
`serve(url)`, what `statekeep serve` runs.

    STATEKEEP_URL=sqlite:///app.db uvicorn statekeep.web:from_env --factory
    STATEKEEP_URL=... STATEKEEP_TOKEN=... gunicorn -k uvicorn_worker.UvicornWorker \\
        -w 4 -b 0.0.0.0:8000 'statekeep.web:from_env()'

Each process (each worker) opens the store itself and closes it when its app
shuts down, so writes still waiting in write-behind are stored first.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import socket
from collections.abc import Callable, Iterable, Iterator

from starlette.applications import Starlette

from ..entity import Entity
from ..errors import ConfigurationError
from ._app import app
from ._security import check_bind, check_token

URL = "STATEKEEP_URL"
TOKEN = "STATEKEEP_TOKEN"
TITLE = "STATEKEEP_TITLE"
HOST = "STATEKEEP_HOST"
MODELS = "STATEKEEP_MODELS"
DEFAULT_TITLE = "statekeep"
FACTORY = "statekeep.web:from_env"


def import_models(names: str) -> None:
    """Imports the modules $STATEKEEP_MODELS names (comma-separated), so that the
    dashboard counts their entity classes and shows their machines."""
    for name in filter(None, (part.strip() for part in names.split(","))):
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ConfigurationError(
                f"statekeep.web: {MODELS} names {name!r}, which cannot be imported: {exc}"
            ) from exc


def from_env() -> Starlette:
    """The dashboard of the store at $STATEKEEP_URL (required), with the token
    $STATEKEEP_TOKEN and the title $STATEKEEP_TITLE, counting the entity classes
    of the modules $STATEKEEP_MODELS names (comma-separated); $STATEKEEP_HOST, the
    address the server binds, is checked against the bind rule (beyond
    loopback only with a token). The app closes the store when it shuts down."""
    url = os.environ.get(URL, "").strip()
    if not url:
        raise ConfigurationError(
            f"statekeep.web.from_env: set {URL} to the store's URL (e.g. sqlite:///app.db)"
        )
    token = os.environ.get(TOKEN) or None
    check_token(token)
    host = os.environ.get(HOST, "").strip()
    if host:
        check_bind(host, token)
    title = os.environ.get(TITLE) or DEFAULT_TITLE
    import_models(os.environ.get(MODELS, ""))
    from ..store import open as open_store

    store = open_store(url)
    try:
        return app(store, token=token, title=title, close_store=True)
    except BaseException:
        store.close()
        raise


def serve(
    url: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    token: str | None = None,
    *,
    title: str = DEFAULT_TITLE,
    any_port: bool = False,
    announce: Callable[[str], None] | None = None,
    entities: Iterable[type[Entity]] | None = None,
) -> None:
    """Serves the dashboard of the store at url with uvicorn until stopped
    (Ctrl-C: KeyboardInterrupt once the server has shut down).

    any_port takes a free port when port is taken; announce gets the
    dashboard's URL once the port is bound; entities, the classes counted
    (with one worker only: workers count the classes of STATEKEEP_MODELS).
    ConfigurationError, before anything is bound: a host beyond loopback
    without a token, a token under 16 characters, a port not in 1-65535,
    workers below 1, a port that cannot be bound."""
    check_options(url, host, port, workers, token)
    import uvicorn

    sock = listen(host, port, any_port=any_port)
    port = sock.getsockname()[1]
    if announce is not None:
        announce(dashboard_url(host, port))
    if workers == 1:
        with sock:
            from ..store import open as open_store

            import_models(os.environ.get(MODELS, ""))
            store = open_store(url)
            try:
                application = app(
                    store, token=token, title=title, entities=entities, close_store=True
                )
            except BaseException:
                store.close()
                raise
            config = uvicorn.Config(application, lifespan="on", timeout_graceful_shutdown=10)
            uvicorn.Server(config).run(sockets=[sock])
        return
    sock.close()  # uvicorn's supervisor binds it again, for its workers to share
    environment = {URL: url, TITLE: title, HOST: host}
    if token is not None:
        environment[TOKEN] = token
    with _environment(environment):
        uvicorn.run(
            FACTORY,
            factory=True,
            host=host,
            port=port,
            workers=workers,
            lifespan="on",
            timeout_graceful_shutdown=10,
        )


def check_options(url: object, host: object, port: object, workers: object, token: object) -> None:
    if not isinstance(url, str) or not url.strip():
        raise ConfigurationError(f"statekeep serve: the store's URL is needed, not {url!r}")
    if not isinstance(host, str) or not host.strip():
        raise ConfigurationError(f"statekeep serve: host must be an address, not {host!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigurationError(f"statekeep serve: port must be 1 to 65535, not {port!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigurationError(f"statekeep serve: workers must be 1 or more, not {workers!r}")
    if token is not None and not isinstance(token, str):
        raise ConfigurationError("statekeep serve: a token must be a string")
    check_token(token)
    check_bind(host, token)


def listen(host: str, port: int, *, any_port: bool = False) -> socket.socket:
    """A socket bound to host:port (or, with any_port, to a free port when that one is taken)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    address = host.strip("[]")
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError:
            if not any_port:
                raise
            sock.bind((address, 0))
        sock.set_inheritable(True)
    except OSError as exc:
        sock.close()
        raise ConfigurationError(
            f"statekeep serve: cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from exc
    return sock


def dashboard_url(host: str, port: int) -> str:
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/"


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    before = {name: os.environ.get(name) for name in (URL, TOKEN, TITLE, HOST)}
    for name in before:
        os.environ.pop(name, None)
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
