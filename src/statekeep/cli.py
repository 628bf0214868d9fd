"""The `statekeep` command."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .entity import Entity


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="statekeep", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the recording-sessions demo on a SQLite file")
    demo.add_argument("--path", help="database file (default: a new file in a temp folder)")
    demo.add_argument("--segments", type=int, default=100_000)
    demo.add_argument(
        "--meter-rate",
        type=int,
        default=1_000,
        help="level-meter writes a second at most, through the flow pipeline (default 1000)",
    )
    demo.add_argument(
        "--serve",
        action="store_true",
        help="then serve the live dashboard of the demo's database until Ctrl-C",
    )
    demo.add_argument(
        "--port", type=int, default=8000, help="the dashboard's port (default 8000, or a free one)"
    )
    serve = commands.add_parser(
        "serve", help="serve the live dashboard of a store (statekeep.web; the web extra)"
    )
    serve.add_argument(
        "url",
        nargs="?",
        default=os.environ.get("STATEKEEP_URL"),
        help="the store's URL, as given to statekeep.open() (default: $STATEKEEP_URL)",
    )
    serve.add_argument("--host", default="127.0.0.1", help="the address to bind (127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="the port (8000)")
    serve.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (1)")
    serve.add_argument(
        "--token",
        default=os.environ.get("STATEKEEP_TOKEN") or None,
        help="the dashboard's token, 16 characters or more (default: $STATEKEEP_TOKEN); "
        "needed to bind beyond loopback and to act",
    )
    serve.add_argument(
        "--title",
        default=os.environ.get("STATEKEEP_TITLE") or "statekeep",
        help="the dashboard's title (default: $STATEKEEP_TITLE or statekeep)",
    )
    listing = commands.add_parser(
        "subscriptions", help="list the durable subscriptions of a database (position, lag)"
    )
    listing.add_argument("url", help="the store's URL, as given to statekeep.open()")
    drop = commands.add_parser(
        "unsubscribe", help="drop a retired durable subscription, so the outbox can be pruned"
    )
    drop.add_argument("url", help="the store's URL, as given to statekeep.open()")
    drop.add_argument("name", help="the subscription's name")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return run_demo(args.path, args.segments, args.meter_rate, args.serve, args.port)
    if args.command == "serve":
        return run_serve(
            args.url,
            host=args.host,
            port=args.port,
            workers=args.workers,
            token=args.token,
            title=args.title,
        )
    if args.command in ("subscriptions", "unsubscribe"):
        return subscriptions(args.command, args.url, getattr(args, "name", None))
    return 2


def run_demo(
    path: str | None,
    segments: int,
    meter_rate: int = 1_000,
    serve: bool = False,
    port: int = 8000,
) -> int:
    """The demo, if its extra is installed (statekeep._demo); with serve, then
    its dashboard (the web extra) on 127.0.0.1:port, or a free port if taken."""
    from ._demo import load
    from .errors import ConfigurationError

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

    from ._demo import entities

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
    from .errors import ConfigurationError, StatekeepError

    try:
        from .web import serve
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
    from .errors import StatekeepError
    from .store import open as open_store

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


if __name__ == "__main__":
    sys.exit(main())
