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
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import run

        return run(args.path, args.segments)
    return 2


if __name__ == "__main__":
    sys.exit(main())
