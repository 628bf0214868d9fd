"""Breaking the commands with the URLs they are given: secrets, malformed
URLs, stores that do not outlive the command, targets made by a failure.

Each test reproduces one break found by a hostile new user; each fails today."""

from __future__ import annotations

import pytest

import statekeep
from statekeep import ops

from .conftest import Cli, MakeUrl, one_line, run_process
from .models import Note

SECRET = "hunter2sekrit"


def test_a_password_given_in_the_query_string_is_never_printed(make_url: MakeUrl, cli: Cli) -> None:
    """libpq takes the password as a query parameter too
    (`postgresql://app@db/app?password=...`); redacted() only hides the one
    in `user:password@`, so `inspect` printed the password in its first line
    and in `--json`'s "url"."""
    url = f"{make_url('postgresql')}&password={SECRET}"
    with statekeep.open(url) as store:
        store.save(Note(id="n1"))
    for args in (("inspect", url), ("inspect", "--json", url), ("export", url, "-c", "typo")):
        ran = cli(*args)
        assert SECRET not in ran.out + ran.err, args


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://postgres:{SECRET}@127.0.0.1:notaport/test",
        f"postgresql://postgres:{SECRET}@[::1/test",
    ],
    ids=["bad-port", "bad-ipv6-host"],
)
def test_a_malformed_url_fails_with_one_line(url: str) -> None:
    """A typo in the port, or an unclosed [ of an IPv6 host, printed a
    ValueError traceback from urllib (exit 1, but not the documented one
    line naming the command)."""
    ran = run_process("inspect", url)
    assert ran.returncode in (1, 2)
    line = one_line(ran.stderr)
    assert line.startswith("statekeep"), line
    assert SECRET not in ran.stderr


@pytest.mark.parametrize("target", ["memory://", "sqlite://:memory:"])
def test_importing_into_a_store_that_dies_with_the_command_is_refused(
    make_url: MakeUrl, cli: Cli, target: str
) -> None:
    """`statekeep import memory:// < app.jsonl` and `statekeep copy FROM
    memory://` said `imported 3 rows` / `copied 3 rows ... verified yes`
    and exit 0; the rows went away with the process. Nothing a user can
    mean: a usage error (or exit 1) saying that the store does not outlive
    the command."""
    source = make_url("sqlite-file")
    with statekeep.open(source) as store:
        store.save_many([Note(id=f"n{n}") for n in range(3)])
    dump = cli("export", source).out
    assert cli("import", target, stdin=dump).code != 0
    assert cli("copy", source, target).code != 0


def test_a_failed_copy_makes_no_target_database(make_url: MakeUrl, cli: Cli) -> None:
    """`statekeep copy sqlite:///app.db sqlite:///typo.db -c nosuch` fails
    (no collection nosuch) but has made typo.db first: "A command that fails
    changes nothing stored"."""
    source, target = make_url("sqlite-file"), make_url("sqlite-file")
    with statekeep.open(source) as store:
        store.save(Note(id="n1"))
    ran = cli("copy", source, target, "-c", "nosuch")
    assert ran.code == 1
    path = ops.local_path(target)
    assert path is not None
    assert not path.exists(), f"{path} was made by a copy that failed"


def test_copy_into_a_store_with_rows_suggests_only_options_copy_has(
    make_url: MakeUrl, cli: Cli
) -> None:
    """copy into a non-empty target says `... or choose merge (--merge) or
    resume (--resume, for a run cut short)`, but `statekeep copy` has no
    --resume (`No such option: --resume`)."""
    source = make_url("sqlite-file")
    with statekeep.open(source) as store:
        store.save(Note(id="n1"))
    ran = cli("copy", source, source)
    assert ran.code == 1
    assert "--resume" not in ran.err, ran.err
