"""`statekeep dead-letters`: list, show, requeue and drop dead-lettered writes.

The letters are read from the files beside the journals (see writebehind's
_letters), whoever wrote them. Requeue and drop change a journal
directory's letters, so they hold that directory (as an engine would) while
they do, and refuse one a running store holds: that store keeps its letters
in memory and would write its own list back over ours.

A requeued write goes through a write-behind engine of the command's own (a
journal in a temporary folder), and leaves the dead-letter file only once
stored: a crash in between leaves it there to requeue again. One that fails
again stays a dead letter, with its new error reported.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigurationError, StatekeepError
from ..store import Store
from ..writebehind import (
    DeadLetter,
    WriteBehindOptions,
    held,
    holding,
    journal_dir,
    letter_id,
    letters_under,
    remove_letters,
)
from ._stores import open_quietly, plain


@dataclass(frozen=True, slots=True)
class Letter:
    id: str  # short and stable: see writebehind's letter_id
    directory: Path  # the journal directory whose file keeps it
    held: bool  # a running store holds that directory
    letter: DeadLetter


def dead_letters(store: Store) -> list[Letter]:
    """Every dead letter of the database's journals."""
    base = journal_dir(WriteBehindOptions(), plain(store).backend.location)
    if base is None:
        return []
    holders: dict[Path, bool] = {}
    found = []
    for directory, letter in letters_under(base):
        if directory not in holders:
            holders[directory] = held(directory)
        found.append(Letter(letter_id(letter), directory, holders[directory], letter))
    return found


def pick(letters: Sequence[Letter], ids: Sequence[str]) -> list[Letter]:
    """The letters named by ids (or by a unique start of one, as git does)."""
    chosen: dict[str, Letter] = {}
    for wanted in ids:
        matches = [one for one in letters if one.id.startswith(wanted.lower())] if wanted else []
        if not matches:
            raise ConfigurationError(f"no dead letter {wanted!r}; `dead-letters list` shows them")
        if len({one.id for one in matches}) > 1:
            raise ConfigurationError(f"{wanted!r} names several dead letters; give more of its id")
        for one in matches:
            chosen[one.id + str(one.directory)] = one
    return list(chosen.values())


def requeue(
    url: str, chosen: Sequence[Letter], *, timeout: float = 60.0
) -> list[tuple[Letter, StatekeepError | None]]:
    """Stores the chosen letters' writes again (over whatever is stored, as
    WriteBehind.requeue does); each with None once stored, or its new error."""
    outcomes: list[tuple[Letter, StatekeepError | None]] = []
    by_directory: dict[Path, list[Letter]] = {}
    for one in chosen:
        by_directory.setdefault(one.directory, []).append(one)
    with tempfile.TemporaryDirectory(prefix="statekeep-requeue-") as journal:
        store = open_quietly(url, writebehind={"journal": journal})
        try:
            for directory, letters in by_directory.items():
                with holding(directory):
                    stored: set[str] = set()
                    for one in letters:
                        error = _store_again(store, one.letter, timeout)
                        outcomes.append((one, error))
                        if error is None:
                            stored.add(one.id)
                    remove_letters(directory, stored)
        finally:
            store.close()
    return outcomes


def _store_again(store: Store, letter: DeadLetter, timeout: float) -> StatekeepError | None:
    try:
        receipt = store.writebehind.requeue(letter)
        if not receipt.wait_stored(timeout):
            return StatekeepError(f"not stored within {timeout:g} s; it stays a dead letter")
    except StatekeepError as exc:
        return exc
    return None


def drop(chosen: Sequence[Letter]) -> None:
    """Gives the chosen letters up for good (their writes are never stored)."""
    by_directory: dict[Path, set[str]] = {}
    for one in chosen:
        by_directory.setdefault(one.directory, set()).add(one.id)
    for directory, ids in by_directory.items():
        with holding(directory):
            remove_letters(directory, ids)
