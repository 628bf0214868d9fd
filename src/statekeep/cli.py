"""The `statekeep` command."""

from __future__ import annotations

import argparse
import sys


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
        return run_demo(args.path, args.segments, args.meter_rate)
    if args.command in ("subscriptions", "unsubscribe"):
        return subscriptions(args.command, args.url, getattr(args, "name", None))
    return 2


def run_demo(path: str | None, segments: int, meter_rate: int = 1_000) -> int:
    """The demo, if its extra is installed (statekeep._demo)."""
    from ._demo import load
    from .errors import ConfigurationError

    try:
        run = load()
    except ConfigurationError as exc:
        print(f"statekeep demo: {exc}", file=sys.stderr)
        return 1
    return run(path, segments, meter_rate)


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
