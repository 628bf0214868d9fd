"""The `statekeep` command: run a store, look into it, move its data.

Built on click (parsing, help, exit codes: the common ground of Python
command lines, and there already through uvicorn) with rich for tables and
progress bars, imported only when a command draws one. Each command is a thin
layer over statekeep.ops, where the work is, as functions.

Exit codes: 0 done, 1 failed (one line on stderr, naming the command; the
traceback too with --debug), 2 a usage error (a bad option or argument),
130 interrupted by Ctrl-C.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from .. import __version__
from . import _dumping, _inspecting, _running

_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=_SETTINGS)
@click.version_option(__version__, "--version", "-V", prog_name="statekeep")
@click.option("--debug", is_flag=True, help="On a failure, show the traceback too.")
def cli(debug: bool) -> None:
    """Keep an application's state: run, inspect and move a statekeep store.

    \b
    Examples:
      statekeep demo --quick
      statekeep inspect sqlite:///app.db
      statekeep copy sqlite:///app.db postgresql://localhost/app
    """


for command in (
    *_running.COMMANDS,
    *_inspecting.COMMANDS,
    *_dumping.COMMANDS,
):
    cli.add_command(command)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns its exit code (see the module docstring)."""
    from ..errors import StatekeepError

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    name = next((arg for arg in args if not arg.startswith("-")), "")
    try:
        code = cli.main(args=args, prog_name="statekeep", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:  # a usage error: 2
        exc.show()
        return exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo(f"statekeep {name}: interrupted", err=True)
        return 130
    except StatekeepError as exc:
        if debug:
            raise
        click.echo(f"statekeep {name}: {_described(exc)}", err=True)
        return 1
    except BrokenPipeError:  # `statekeep export ... | head`: the reader left
        sys.stderr.close()  # nothing more can be said, not even at exit
        return 1
    return code if isinstance(code, int) else 0


def _described(exc: Exception) -> str:
    from ..errors import ConfigurationError, DumpError

    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, ConfigurationError | DumpError):
        return text
    return f"{type(exc).__name__}: {text}"
