"""What a files store looks like on disk: names, documents and the outbox.

    <root>/
      .statekeep/format.json   {"format": "statekeep-files", "version": 1, "names": ...}
      .statekeep/lock          the writers' lock (flock)
      .statekeep/staging/      the documents of the transaction being committed
      .statekeep/outbox/       events: <first position>.jsonl per transaction, and
                               `last`, the last position ever given
      .statekeep/subscriptions/ a lock file per durable subscription name (_claims.py)
      <collection>/<id>.json   one document per entity

A name is its text with the characters a file name cannot or should not hold
percent-encoded as UTF-8 (`/` is %2F, `%` is %25, a leading `.` is %2E, a space
%20, control characters, `\\` `:` `*` `?` `"` `<` `>` `|` `~` too); letters,
digits and `-_.+@=,` stay as they are, and so does printable non-ASCII text.
A name longer than NAME_BYTES is cut and ends in `~` and the SHA-256 of the
text (the id is then read from the document). A store made on a file system
that folds case or Unicode normalisation (macOS by default) says
"names": "folded" in format.json and escapes upper-case letters and all
non-ASCII text as well, so that two ids never share one file.

A document is `{"id": ..., "version": n, "body": <the entity's JSON>}` and a
newline, written in that order with no spaces, so a reader takes the body
text out of it without parsing it; anything else that is valid JSON of that
shape (a file edited by hand) is read through `json.loads`.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import re
import secrets
import unicodedata
from urllib.parse import unquote

FORMAT = "statekeep-files"
VERSION = 1
META = ".statekeep"
OUTBOX = f"{META}/outbox"  # relative to the root, as a commit's manifest names folders
LAST = "last"
SUFFIX = ".json"
EVENTS = ".jsonl"
NAME_BYTES = 200  # longer names are cut and hashed (file systems allow 255 bytes)
_KEEP = 120  # bytes of the text kept in front of a hashed name's hash
_READ = 65536

_ASCII_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.+@=,")
_PLAIN = re.compile(r"[A-Za-z0-9_\-+@=,][A-Za-z0-9_.\-+@=,]{0,199}")
_FOLDED = re.compile(r"[a-z0-9_\-+@=,][a-z0-9_.\-+@=,]{0,199}")
_DOCUMENT = re.compile(r'\{"id":"((?:[^"\\]|\\.)*)","version":([1-9][0-9]*),"body":')
_SIMPLE_ID = re.compile(r'[^"\\\x00-\x1f\x7f]*')


def _escaped(char: str) -> str:
    return "".join(f"%{byte:02X}" for byte in char.encode())


class Names:
    """Folder names for collections and file names for ids, both ways."""

    def __init__(self, *, folded: bool) -> None:
        self.folded = folded
        self._simple = _FOLDED if folded else _PLAIN

    def _piece(self, char: str, first: bool) -> str:
        if char in _ASCII_SAFE:
            if (first and char == ".") or (self.folded and char.isupper()):
                return _escaped(char)
            return char
        if char.isascii() or self.folded or not char.isprintable():
            return _escaped(char)
        return char

    def encode(self, text: str) -> str:
        """The text as a name (without the .json of a file)."""
        if self._simple.fullmatch(text):
            return text
        pieces = [self._piece(char, n == 0) for n, char in enumerate(text)]
        name = "".join(pieces)
        if len(name.encode()) <= NAME_BYTES:
            return name
        kept, size = [], 0
        for piece in pieces:
            size += len(piece.encode())
            if size > _KEEP:
                break
            kept.append(piece)
        return "".join(kept) + "~" + hashlib.sha256(text.encode()).hexdigest()

    @staticmethod
    def decode(name: str) -> str | None:
        """The text of a name, or None for a hashed name (its text is not in it)."""
        if "~" in name:
            return None
        try:
            return unquote(name, errors="strict") if "%" in name else name
        except UnicodeDecodeError:  # not a name this module made
            return None

    def file(self, id: str) -> str:
        return self.encode(id) + SUFFIX


def probe_folding(directory: str) -> bool:
    """Whether the file system under directory treats names that differ in
    case, or in Unicode normalisation, as one name."""
    name = unicodedata.normalize("NFC", f"probe-{secrets.token_hex(8)}-\u00c5")
    probe = os.path.join(directory, name)
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT, 0o666)
    os.close(fd)
    try:
        twins = (name[:-1] + "\u00e5", unicodedata.normalize("NFD", name))
        return any(os.path.exists(os.path.join(directory, twin)) for twin in twins)
    finally:
        os.unlink(probe)


def format_text(*, folded: bool) -> bytes:
    names = "folded" if folded else "plain"
    return json.dumps({"format": FORMAT, "version": VERSION, "names": names}).encode() + b"\n"


def read_format(data: bytes) -> bool:
    """Whether names are folded, from format.json; ValueError if it is not ours."""
    try:
        fields = json.loads(data)
    except ValueError as exc:
        raise ValueError(f"format.json is not JSON ({exc})") from None
    if not isinstance(fields, dict) or fields.get("format") != FORMAT:
        raise ValueError("format.json does not describe a statekeep files store")
    if fields.get("version") != VERSION:
        raise ValueError(f"format version {fields.get('version')!r}; this statekeep reads 1")
    if fields.get("names") not in ("plain", "folded"):
        raise ValueError(f"unknown names {fields.get('names')!r} in format.json")
    return bool(fields["names"] == "folded")


def read_file(path: str) -> bytes | None:
    """A file's bytes, or None if there is no such file (OSError otherwise)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        data = os.read(fd, _READ)
        if len(data) < _READ:  # the whole file: short reads happen at the end only
            return data
        parts = [data]
        while part := os.read(fd, _READ):
            parts.append(part)
        return b"".join(parts)
    finally:
        os.close(fd)


def document(id: str, version: int, body: str) -> bytes:
    """The file content for one stored entity."""
    quoted = f'"{id}"' if _SIMPLE_ID.fullmatch(id) else json.dumps(id, ensure_ascii=False)
    return f'{{"id":{quoted},"version":{version},"body":{body}}}\n'.encode()


def parse(data: bytes) -> tuple[str, int, str]:
    """(id, version, body) of a document; ValueError if it is not one."""
    text = data.decode()
    match = _DOCUMENT.match(text)
    if match is not None and text.endswith("}\n"):  # as written by document()
        raw = match.group(1)
        id = json.loads(f'"{raw}"') if "\\" in raw else raw
        return id, int(match.group(2)), text[match.end() : -2]
    fields = json.loads(text)
    if not isinstance(fields, dict) or not {"id", "version", "body"} <= fields.keys():
        raise ValueError('a document is {"id": ..., "version": ..., "body": {...}}')
    id, version = fields["id"], fields["version"]
    if not isinstance(id, str) or type(version) is not int or version < 1:
        raise ValueError("a document's id is text and its version an int >= 1")
    return id, version, json.dumps(fields["body"], ensure_ascii=False, separators=(",", ":"))


def events_name(first: int) -> str:
    return f"{first:020d}{EVENTS}"


def events_text(bodies: list[str]) -> bytes:
    """A transaction's events, a line each (JSON holds no newline but as blank space)."""
    return "".join(body.replace("\n", " ") + "\n" for body in bodies).encode()


def event_files(folder: str) -> list[tuple[int, str]]:
    """(first position, file name) of every events file, in position order."""
    try:
        names = [name for name in os.listdir(folder) if name.endswith(EVENTS)]
    except FileNotFoundError:  # removed by hand: no events
        return []
    return sorted((int(name[: -len(EVENTS)]), name) for name in names)


def read_events(
    folder: str, after: int, limit: int, last: int
) -> tuple[list[tuple[int, str]], bool] | None:
    """Up to limit (position, body) after `after` and up to `last`, and
    whether they run on from after + 1 without a gap; None if a file went
    away while reading (pruned: list again).

    `last` is the committed last position, read before listing: a commit
    moves its events file into place before `last`, so every file up to it
    was there when the listing began and the listing holds it -- unless a
    prune removed it. Later files a listing may hold or miss at random (a
    folder listing is no snapshot), so they wait for the next read."""
    files = event_files(folder)
    start = max(0, bisect.bisect_right(files, (after, "~")) - 1)  # the file holding after + 1
    found: list[tuple[int, str]] = []
    expected, whole = after + 1, True
    for first, name in files[start:]:
        if first > last or len(found) == limit:
            break
        data = read_file(f"{folder}/{name}")
        if data is None:
            return None
        for position, body in enumerate(data.decode().split("\n")[:-1], first):
            if position < expected:  # before after, or held twice while a prune rewrites
                continue
            if position > last or len(found) == limit:
                break
            whole = whole and position == expected
            found.append((position, body))
            expected = position + 1
    return found, whole
