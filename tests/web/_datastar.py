"""A model of what Datastar's browser client does with the events statekeep.web
sends (datastar 1.0.0-beta.11: engine/signals.js mergeNested and remove), and an
SSE reader that keeps a page's signals from a stream, for tests without a browser."""

from __future__ import annotations

import codecs
import contextlib
import json
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit


def merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """mergeNested: an object merges key by key (a key with "__" is refused); any other value
    replaces."""
    for key, value in patch.items():
        assert "__" not in key, f"Datastar refuses the key {key!r}"
        if isinstance(value, dict):
            inner = target.get(key)
            if not isinstance(inner, dict):
                assert key not in target, f"merging an object into the leaf {key!r}"
                inner = target[key] = {}
            merge(inner, value)
        else:
            target[key] = value


def remove(target: dict[str, Any], path: str) -> None:
    *parents, last = path.split(".")
    for part in parents:
        target = target.get(part, {})
    target.pop(last, None)


def parse(block: str) -> tuple[str, list[str]]:
    """(event, data lines) of one SSE event block."""
    event, data = "message", []
    for line in block.split("\n"):
        if line.startswith("event: "):
            event = line[len("event: ") :]
        elif line.startswith("data: "):
            data.append(line[len("data: ") :])
    return event, data


class Page:
    """A page's signals and fragments as a stream leaves them; reads on a thread."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.signals: dict[str, Any] = {}
        self.fragments: list[str] = []
        self.events: list[str] = []
        self.frames = 0
        self._changed = threading.Condition()
        self._errors: queue.Queue[BaseException] = queue.Queue()
        self._stop = threading.Event()
        self._socket: socket.socket | None = None
        self._thread = threading.Thread(target=self._read, args=(url, headers or {}), daemon=True)
        self._thread.start()

    def _read(self, url: str, headers: dict[str, str]) -> None:
        """A plain HTTP/1.1 client on a socket of its own, so close() can hang up at once."""
        try:
            parts = urlsplit(url)
            sock = socket.create_connection((parts.hostname, parts.port or 80), timeout=60)
            self._socket = sock
            lines = [
                f"GET {parts.path or '/'}{'?' + parts.query if parts.query else ''} HTTP/1.1",
                f"Host: {parts.netloc}",
                "Accept: text/event-stream",
            ]
            lines += [f"{name}: {value}" for name, value in headers.items()]
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            stream = sock.makefile("rb")
            status = stream.readline().decode()
            assert status.split()[1] == "200", status
            chunked = False
            while (line := stream.readline().decode().strip()) != "":
                chunked |= line.lower() == "transfer-encoding: chunked"
            buffer, decoder = "", codecs.getincrementaldecoder("utf-8")()
            while not self._stop.is_set():
                if chunked:
                    size = int(stream.readline().strip() or b"0", 16)
                    if size == 0:
                        return
                    data = stream.read(size)
                    stream.readline()
                else:
                    data = stream.read1(65536)
                    if not data:
                        return
                buffer += decoder.decode(data).replace("\r\n", "\n")
                *blocks, buffer = buffer.split("\n\n")
                with self._changed:
                    for block in blocks:
                        self._apply(block)
                    self._changed.notify_all()
        except BaseException as exc:  # noqa: BLE001 - raised in the test's thread
            if not self._stop.is_set():
                self._errors.put(exc)

    def _apply(self, block: str) -> None:
        event, data = parse(block)
        if not data:
            return  # a comment: a heartbeat
        self.events.append(event)
        self.frames += 1
        if event == "datastar-merge-signals":
            for line in data:
                if line.startswith("signals "):
                    merge(self.signals, json.loads(line[len("signals ") :]))
        elif event == "datastar-remove-signals":
            for line in data:
                if line.startswith("paths "):
                    remove(self.signals, line[len("paths ") :])
        elif event == "datastar-merge-fragments":
            self.fragments.append("\n".join(line.removeprefix("fragments ") for line in data))

    def wait(self, check: Callable[[dict[str, Any]], bool], timeout: float = 5.0) -> float:
        """Seconds until check(signals) holds; AssertionError after timeout."""
        start = time.monotonic()
        with self._changed:
            while True:
                if not self._errors.empty():
                    raise self._errors.get()
                try:
                    if check(self.signals):
                        return time.monotonic() - start
                except (KeyError, TypeError, AttributeError):
                    pass
                left = start + timeout - time.monotonic()
                assert left > 0, f"timed out; the page's signals: {self.signals}"
                self._changed.wait(min(left, 0.1))

    def ended(self, timeout: float = 5.0) -> None:
        """Waits for the server to end the stream; AssertionError after timeout."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the stream did not end"
        if not self._errors.empty():
            raise self._errors.get()

    def close(self) -> None:
        """Hangs up (the server sees the page go) and waits for the reader."""
        self._stop.set()
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)
            self._socket.close()
        self._thread.join(10)


def rows(signals: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """A live selection's rows in order, from its index-keyed signals."""
    found = signals.get(name, {})
    return [found[key] for key in sorted(found, key=int)]


def pages(url: str, n: int) -> Iterator[Page]:
    for _ in range(n):
        yield Page(url)
