"""A TCP proxy in front of MariaDB that counts the commands one client sends.

``SHOW GLOBAL STATUS LIKE 'Questions'`` counts every client of the server, and other test
runs may share it. The idle scenario points the daemon at this proxy instead, so the
daemon's own statements are counted exactly. Only the client-to-server direction is parsed:
MySQL packets are ``<3-byte length><sequence id><payload>``; a command starts a new
exchange, so it is exactly a packet with sequence id 0 (the handshake answer has id 1, a
continuation of a >16 MB packet id > 0). TLS would hide them: the daemon's DSN default is
``tls=false``.
"""

from __future__ import annotations

import asyncio
import collections
import re
import threading
from typing import Any

COM_QUERY = 0x03
# What the server's Questions counter leaves out (MariaDB documentation of Questions).
NOT_QUESTIONS = {0x0E: "COM_PING", 0x09: "COM_STATISTICS", 0x16: "COM_STMT_PREPARE",
                 0x19: "COM_STMT_CLOSE", 0x1A: "COM_STMT_RESET"}
_NUMBERS = re.compile(rb"\b\d+\b")
_SPACES = re.compile(rb"\s+")


def statement_shape(sql: bytes) -> str:
    """A statement's first 90 bytes with numbers and string literals replaced."""
    text = _SPACES.sub(b" ", sql[:400]).strip()
    text = re.sub(rb"'(?:[^'\\]|\\.)*'", b"'?'", text)
    text = _NUMBERS.sub(b"N", text)
    return text[:90].decode("utf-8", "replace")


class CountingProxy:
    """Forwards 127.0.0.1:<port> to the server, counting commands; runs in its own thread."""

    def __init__(self, host: str, port: int) -> None:
        self._upstream = (host, port)
        self._lock = threading.Lock()
        self._questions = 0
        self._commands: collections.Counter[str] = collections.Counter()
        self._shapes: collections.Counter[str] = collections.Counter()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="mysql-proxy",
                                        daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.port = 0

    def start(self) -> int:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._client, "127.0.0.1", 0), self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def stop(self) -> None:
        if not self._thread.is_alive():
            return

        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.sleep(0)

        try:
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def snapshot(self) -> dict[str, Any]:
        """Counters so far: ``questions`` (what Questions would count) and details."""
        with self._lock:
            return {"questions": self._questions, "commands": dict(self._commands),
                    "shapes": dict(self._shapes)}

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self._upstream)
            await asyncio.gather(self._forward_commands(reader, upstream_writer),
                                 self._copy(upstream_reader, writer))
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            for stream in (writer, upstream_writer):
                if stream is not None:
                    stream.close()

    async def _copy(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    async def _forward_commands(self, reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter) -> None:
        pending = b""
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
            pending += data
            while len(pending) >= 4:
                length = int.from_bytes(pending[:3], "little")
                if len(pending) < 4 + length:
                    break
                sequence, payload = pending[3], pending[4:4 + length]
                pending = pending[4 + length:]
                if sequence == 0 and payload:
                    self._count(payload)
        writer.close()

    def _count(self, payload: bytes) -> None:
        command = payload[0]
        with self._lock:
            if command not in NOT_QUESTIONS:
                self._questions += 1
            if command == COM_QUERY:
                self._commands["COM_QUERY"] += 1
                self._shapes[statement_shape(payload[1:])] += 1
            else:
                self._commands[NOT_QUESTIONS.get(command, "0x%02x" % command)] += 1
