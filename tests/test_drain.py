"""Draining the API's connections at shutdown (docs/operations.md, Graceful shutdown): a
request a client has already sent on a kept connection is answered, even when the daemon has
not read it yet when the connection's idle time runs out.

Real sockets on 127.0.0.1; the drain's own timing runs on a L{Clock}.
"""

from __future__ import annotations

import io
import socket

from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import Request

from e2e import eventually
from fireworq.api.site import FireworqChannel, FireworqSite
from fireworq.lifecycle import (
    DRAIN_STEP,
    IDLE_CLOSE_AFTER,
    drain_connections,
    receiving,
    unread_bytes,
)
from fireworq.logs import AccessLog, LineWriter

REQUEST = b"GET / HTTP/1.1\r\nHost: fireworq\r\n\r\n"


class Hello(Resource):
    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        return b"hello"


class DrainTests(TestCase):
    def setUp(self) -> None:
        writer = LineWriter(Clock(), "", io.StringIO())
        self.site = FireworqSite(Hello(), clock=reactor, access_log=AccessLog(writer, ""),
                                 max_request_body=1024, keep_alive=True)
        port = reactor.listenTCP(0, self.site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.client = socket.create_connection(("127.0.0.1", port.getHost().port))
        self.client.setblocking(False)
        self.addCleanup(self.client.close)
        self.received = b""

    async def _read_until(self, ending: bytes) -> None:
        async def arrived() -> bool:
            try:
                chunk = self.client.recv(65536)
            except BlockingIOError:
                return False
            self.received += chunk
            return chunk == b"" or self.received.endswith(ending)
        await eventually(arrived, 5, step=0.01, what="the daemon's answer")

    def _channel(self) -> FireworqChannel:
        [channel] = self.site.channels
        return channel

    async def _kept_connection_draining(self) -> None:
        """One request answered on the kept connection, then the drain started (its time
        on ``self.clock``)."""
        self.client.sendall(REQUEST)
        await self._read_until(b"hello")
        self.assertNotIn(b"connection: close", self.received.lower())
        self.received = b""
        self.clock = Clock()
        self.draining = ensureDeferred(drain_connections(self.site, self.clock, deadline=60.0))

    def _past_idle_time(self) -> None:
        for _ in range(int(IDLE_CLOSE_AFTER / DRAIN_STEP) + 5):
            self.clock.advance(DRAIN_STEP)

    async def _drained(self, what: str) -> None:
        async def no_channels() -> bool:
            return not self.site.channels
        await eventually(no_channels, 5, step=0.01, what=what)
        self.clock.advance(DRAIN_STEP)
        await self.draining

    async def _answered_and_closed(self) -> None:
        await self._read_until(b"hello")
        self.assertTrue(self.received.startswith(b"HTTP/1.1 200 "), self.received)
        self.assertIn(b"connection: close", self.received.lower())
        await self._drained("the connection closed after the answer")

    async def test_sent_but_unread_request_is_answered(self) -> None:
        """The reactor may be busy (a starved or blocked process) while the drain's timer
        comes due: a request waiting unread in the socket is not an idle connection."""
        await self._kept_connection_draining()
        # The daemon does not read (yet) what the client sends now.
        channel = self._channel()
        channel.transport.stopReading()  # type: ignore[union-attr]
        self.client.sendall(REQUEST)

        async def in_the_socket() -> bool:
            return unread_bytes(channel.transport) == len(REQUEST)
        await eventually(in_the_socket, 5, step=0.01, what="the request in the daemon's socket")
        self._past_idle_time()
        self.assertIn(channel, self.site.channels)
        channel.transport.startReading()  # type: ignore[union-attr]
        await self._answered_and_closed()

    async def test_request_line_in_progress_is_answered(self) -> None:
        """A slow client's request that has begun to arrive is a request in progress."""
        await self._kept_connection_draining()
        self.client.sendall(REQUEST[:7])

        async def read() -> bool:
            return receiving(self._channel()) and unread_bytes(self._channel().transport) == 0
        await eventually(read, 5, step=0.01, what="the start of the request read")
        self._past_idle_time()
        self.client.sendall(REQUEST[7:])
        await self._answered_and_closed()

    async def test_idle_connection_closed(self) -> None:
        await self._kept_connection_draining()
        self._past_idle_time()
        await self._read_until(b"\0never")
        self.assertEqual(self.received, b"")  # closed by the daemon, no answer to nothing
        await self._drained("the daemon's side closed")
