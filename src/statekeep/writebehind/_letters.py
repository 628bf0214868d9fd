"""Dead letters as their files keep them, for operating a database from outside.

Every journal directory keeps its engine's dead letters in a file beside it
(_records.DeadLetterFile). A letter's short id is a hash of its journal
record's (run, sequence number): stable across listings and restarts, and
the same from every process.
"""

from __future__ import annotations

import zlib
from pathlib import Path

from ._claim import journal_directories
from ._options import DeadLetter
from ._records import DeadLetterFile


def letter_id(letter: DeadLetter) -> str:
    record = letter.journal_record
    key = f"{record['u']}:{record['s']}"
    return f"{zlib.crc32(key.encode()):08x}"


def letters_under(base: Path) -> list[tuple[Path, DeadLetter]]:
    """Every dead letter of every journal directory under base, with its directory."""
    return [
        (directory, letter)
        for directory in journal_directories(base)
        for letter in DeadLetterFile(directory).load()
    ]


def remove_letters(directory: Path, gone: set[str]) -> None:
    """Rewrites directory's dead-letter file without the letters of these ids
    (the caller holds the directory: _claim.holding)."""
    file = DeadLetterFile(directory)
    file.rewrite([letter for letter in file.load() if letter_id(letter) not in gone])
