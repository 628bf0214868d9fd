"""SSE clients for the web benchmark and tests/web/test_sse_load.py: raw asyncio sockets speaking
just enough HTTP/1.1 (one GET, a chunked or plain body), each keeping the
signals a Datastar page would hold: every `datastar-merge-signals` patch
merged into a dict, every `datastar-remove-signals` path removed."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any


def merge(into: dict[str, Any], patch: dict[str, Any]) -> None:
    """Datastar's merge: nested objects merge key by key; any other value replaces."""
    for key, value in patch.items():
        if isinstance(value, dict) and value and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = value


def remove(signals: dict[str, Any], path: str) -> None:
    *parents, last = path.split(".")
    node: Any = signals
    for key in parents:
        node = node.get(key) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(last, None)


def lookup(signals: dict[str, Any], path: str) -> Any:
    node: Any = signals
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


class Client:
    """One page's stream: frames counted, bytes counted, signals kept."""

    def __init__(self, port: int, path: str = "/events", rcvbuf: int | None = None) -> None:
        self.port, self.path, self.rcvbuf = port, path, rcvbuf
        self.signals: dict[str, Any] = {}
        self.frames = 0
        self.bytes = 0
        self.paused = asyncio.Event()  # set: read nothing until cleared
        self.changed = asyncio.Event()  # set after every frame
        self.error: BaseException | None = None
        self.connected = asyncio.Event()
        self.on_frame: Any = None  # called with (client, arrival time.time()) after a frame

    async def run(self) -> None:
        try:
            await self._run()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - kept for the test to report
            self.error = exc
            self.connected.set()

    async def _run(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if self.rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, ("127.0.0.1", self.port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
        try:
            writer.write(
                f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Accept: text/event-stream\r\n\r\n".encode()
            )
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise AssertionError(f"{self.path}: {head[:200]!r}")
            chunked = b"transfer-encoding: chunked" in head.lower()
            self.connected.set()
            pending = b""
            while True:
                while self.paused.is_set():
                    await asyncio.sleep(0.05)
                data = await self._chunk(reader) if chunked else await reader.read(65536)
                if not data:
                    return
                self.bytes += len(data)
                pending += data
                *frames, pending = pending.split(b"\n\n")
                for frame in frames:
                    self._apply(frame)
        finally:
            writer.close()

    @staticmethod
    async def _chunk(reader: asyncio.StreamReader) -> bytes:
        size = int((await reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
        if size == 0:
            return b""
        data = await reader.readexactly(size + 2)
        return data[:-2]

    def _apply(self, frame: bytes) -> None:
        event, lines = "", []
        for line in frame.decode().split("\n"):
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                lines.append(line[6:])
        if event == "datastar-merge-signals":
            for line in lines:
                if line.startswith("signals "):
                    merge(self.signals, json.loads(line[8:]))
        elif event == "datastar-remove-signals":
            for line in lines:
                if line.startswith("paths "):
                    remove(self.signals, line[6:])
        else:
            return  # a comment (ping), fragments
        self.frames += 1
        if self.on_frame is not None:
            self.on_frame(self, time.time())
        self.changed.set()
