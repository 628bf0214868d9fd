"""`statekeep demo`, `serve`, `subscriptions` and `unsubscribe`: running a store."""

from __future__ import annotations

import signal
import sys
from types import FrameType
from typing import TYPE_CHECKING

import click

from ._console import SETTINGS

if TYPE_CHECKING:
    from ..entity import Entity


def run_demo(
    path: str | None,
    segments: int,
    meter_rate: int = 1_000,
    serve: bool = False,
    port: int = 8000,
) -> int:
    """The demo, if its extra is installed (statekeep._demo); with serve, then
    its dashboard (the web extra) on 127.0.0.1:port, or a free port if taken."""
    from .._demo import load
    from ..errors import ConfigurationError

    try:
        run = load()
    except ConfigurationError as exc:
        print(f"statekeep demo: {exc}", file=sys.stderr)
        return 1
    if not serve:
        return run(path, segments, meter_rate)
    try:
        import statekeep.web  # noqa: F401  # before the demo runs: the web extra is there
    except ModuleNotFoundError as exc:
        print(f"statekeep demo --serve: {_no_web(exc)}", file=sys.stderr)
        return 1

    from .._demo import entities

    def then(db_path: str) -> int:
        return run_serve(
            f"sqlite:///{db_path}",
            host="127.0.0.1",
            port=port,
            any_port=True,
            command="demo",
            entities=entities(),
        )

    return run(path, segments, meter_rate, then=then)


class _StoppedError(Exception):
    """SIGINT or SIGTERM reached `statekeep serve` (once the server has shut down)."""


def _stop(signum: int, frame: FrameType | None) -> None:
    raise _StoppedError


def run_serve(
    url: str | None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    token: str | None = None,
    title: str = "statekeep",
    any_port: bool = False,
    command: str = "serve",
    entities: tuple[type[Entity], ...] | None = None,
) -> int:
    """`statekeep serve`: 0 once stopped by Ctrl-C or SIGTERM (after a clean
    shutdown), 2 for a configuration it refuses, 1 without the web extra."""
    from ..errors import ConfigurationError, StatekeepError

    try:
        from ..web import serve
    except ModuleNotFoundError as exc:
        print(f"statekeep {command}: {_no_web(exc)}", file=sys.stderr)
        return 1
    if not url:
        print(
            f"statekeep {command}: give the store's URL (or set STATEKEEP_URL), "
            "e.g. statekeep serve sqlite:///app.db",
            file=sys.stderr,
        )
        return 2
    # uvicorn shuts down on SIGINT or SIGTERM, then raises it again: that ends here, in
    # _StoppedError (not in asyncio's own SIGINT handler, which would cancel the app's tasks)
    handlers = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        serve(
            url,
            host=host,
            port=port,
            workers=workers,
            token=token,
            title=title,
            any_port=any_port,
            entities=entities,
            announce=lambda where: print(f"dashboard: {where}", flush=True),
        )
    except ConfigurationError as exc:
        print(f"statekeep {command}: {exc}", file=sys.stderr)
        return 2
    except StatekeepError as exc:
        print(f"statekeep {command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, _StoppedError):
        return 0
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    return 0


def _no_web(exc: ModuleNotFoundError) -> str:
    return (
        f"the dashboard needs {exc.name}, which the web extra installs: "
        "pip install 'statekeep[web]'"
    )


def subscriptions(command: str, url: str, name: str | None) -> int:
    from ..errors import StatekeepError
    from ..store import open as open_store

    try:
        with open_store(url) as store:
            if command == "unsubscribe":
                assert name is not None
                store.unsubscribe(name)
                print(f"unsubscribed {name!r}: the outbox no longer keeps events for it")
                return 0
            infos = store.subscriptions()
            if not infos:
                print("no durable subscriptions")
            for info in infos:
                moved = "never" if info.advanced_at is None else info.advanced_at.isoformat()
                state = "stalled" if info.stalled else "behind" if info.behind else "caught up"
                holder = "running" if info.active else "not running"
                print(f"{info.name}\tposition {info.position}\t{state}\t{holder}\tadvanced {moved}")
            return 0
    except StatekeepError as exc:
        print(f"statekeep {command}: {exc}", file=sys.stderr)
        return 1


_URL_HELP = "The store's URL, as given to statekeep.open()"
QUICK_SEGMENTS = 2_000


@click.command(context_settings=SETTINGS)
@click.option("--path", help="Database file (default: a new file in a temp folder).")
@click.option("--segments", type=click.IntRange(min=0), default=100_000, show_default=True)
@click.option(
    "--meter-rate",
    type=click.IntRange(min=1),
    default=1_000,
    show_default=True,
    help="Level-meter writes a second at most, through the flow pipeline.",
)
@click.option("--quick", is_flag=True, help=f"A short run: {QUICK_SEGMENTS:,} segments.")
@click.option("--serve", is_flag=True, help="Then serve the demo's live dashboard until Ctrl-C.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="The port."
)
def demo(
    path: str | None, segments: int, meter_rate: int, quick: bool, serve: bool, port: int
) -> int:
    """Run the recording-sessions demo on a SQLite file.

    \b
    Example: statekeep demo --quick --path /tmp/demo.db
    """
    return run_demo(path, QUICK_SEGMENTS if quick else segments, meter_rate, serve, port)


@click.command(context_settings=SETTINGS)
@click.argument("url", required=False, envvar="STATEKEEP_URL")
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to bind.")
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--workers", type=int, default=1, show_default=True)
@click.option(
    "--token",
    envvar="STATEKEEP_TOKEN",
    help="The dashboard's token, 16 characters or more (default: $STATEKEEP_TOKEN); "
    "needed to bind beyond loopback and to act.",
)
@click.option(
    "--title",
    envvar="STATEKEEP_TITLE",
    default="statekeep",
    show_default=True,
    help="The dashboard's title (default: $STATEKEEP_TITLE).",
)
def serve(
    url: str | None, host: str, port: int, workers: int, token: str | None, title: str
) -> int:
    """Serve the live dashboard of a store (the web extra).

    URL defaults to $STATEKEEP_URL.

    \b
    Example: statekeep serve sqlite:///app.db --port 8000
    """
    return run_serve(
        url, host=host, port=port, workers=workers, token=token or None, title=title or "statekeep"
    )


@click.command("subscriptions", context_settings=SETTINGS)
@click.argument("url")
def list_subscriptions(url: str) -> int:
    """List the durable subscriptions of a database (position, lag).

    \b
    Example: statekeep subscriptions sqlite:///app.db
    """
    return subscriptions("subscriptions", url, None)


@click.command(context_settings=SETTINGS)
@click.argument("url")
@click.argument("name")
def unsubscribe(url: str, name: str) -> int:
    """Drop a retired durable subscription, so the outbox can be pruned.

    \b
    Example: statekeep unsubscribe sqlite:///app.db mailer
    """
    return subscriptions("unsubscribe", url, name)


COMMANDS = (demo, serve, list_subscriptions, unsubscribe)
