"""WorkerAgent driven directly: the request it writes, the response parser and the pool, on
in-memory connections and a fake clock (no sockets, no real time)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.error import (
    ConnectionAborted,
    ConnectionDone,
    ConnectionLost,
    ConnectionRefusedError,
)
from twisted.internet.interfaces import (
    IConsumer,
    IProtocol,
    IProtocolFactory,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.testing import (
    MemoryReactorClock,
    StringTransport,
    StringTransportWithDisconnection,
)
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import ResponseDone, ResponseFailed, ResponseNeverReceived
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer, IResponse
from zope.interface import implementer

from fireworq.delivery.agent import MAX_HEAD, BytesProducer, ProtocolError, WorkerAgent

Key = tuple[bytes, bytes, int]

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
# Sizes in hex (upper and lower case), an extension, trailers after the last chunk.
CHUNKS = (
    b"5\r\nhello\r\n"
    b"A;name=value\r\n0123456789\r\n"
    b"1f\r\n" + b"x" * 31 + b"\r\n"
    b"0\r\nX-Trailer: t\r\nX-Other: u\r\n\r\n"
)
CHUNKED_BODY = b"hello0123456789" + b"x" * 31


def cause(failure: Failure | None, wrapper: type[Exception] = ResponseFailed) -> Failure:
    """The one reason a ResponseFailed (or ResponseNeverReceived) gives."""
    assert failure is not None
    failure.trap(wrapper)
    error = failure.value
    assert isinstance(error, (ResponseFailed, ResponseNeverReceived))
    [reason] = error.reasons
    assert isinstance(reason, Failure)
    return reason


class Transport(StringTransport):
    """Counts writes. Like a real transport, it calls connectionLost later, not from
    loseConnection or abortConnection: the test does, with L{Wire.close}."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        super().write(data)


class Wire:
    """One connection the agent opened, as the server sees it."""

    def __init__(self, key: Key, protocol: IProtocol, transport: StringTransport) -> None:
        self.key = key
        self.protocol = protocol
        self.transport = transport

    def sent(self) -> bytes:
        """Everything the agent wrote, and forget it."""
        data: bytes = self.transport.value()
        self.transport.clear()
        return data

    def feed(self, data: bytes, step: int | None = None) -> None:
        """Server bytes, in one call or ``step`` bytes a call (none when there are none: a
        transport never delivers empty data)."""
        if not data:
            return
        if step is None:
            self.protocol.dataReceived(data)
            return
        for start in range(0, len(data), step):
            self.protocol.dataReceived(data[start : start + step])

    @property
    def dropped(self) -> bool:
        return bool(self.transport.disconnecting)

    def close(self, reason: type[Exception] = ConnectionDone) -> None:
        """The connection is gone (the server closed it, or a drop completed)."""
        self.protocol.connectionLost(Failure(reason()))


@implementer(IStreamClientEndpoint)
class Endpoint:
    """Connects at once to an in-memory transport and records the connection."""

    def __init__(self, key: Key, wires: list[Wire],
                 transport: Callable[[], StringTransport]) -> None:
        self._key = key
        self._wires = wires
        self._transport = transport

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        protocol = factory.buildProtocol(None)  # type: ignore[arg-type]
        assert protocol is not None
        transport = self._transport()
        if isinstance(transport, StringTransportWithDisconnection):
            transport.protocol = protocol
        protocol.makeConnection(transport)
        self._wires.append(Wire(self._key, protocol, transport))
        return succeed(protocol)


@implementer(IStreamClientEndpoint)
class FixedEndpoint:
    """An endpoint whose connect attempt ends as ``result`` says."""

    def __init__(self, result: Callable[[], Deferred[IProtocol]]) -> None:
        self._result = result

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        return self._result()


class Collector(Protocol):
    """A body protocol that keeps what it gets."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.reason: Failure | None = None

    @property
    def body(self) -> bytes:
        return b"".join(self.parts)

    def dataReceived(self, data: bytes) -> None:
        self.parts.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.reason = reason


@implementer(IBodyProducer)
class PiecesProducer:
    """Any other producer: writes its pieces and has no ``body``."""

    length = UNKNOWN_LENGTH

    def __init__(self, *pieces: bytes) -> None:
        self._pieces = pieces

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        for piece in self._pieces:
            consumer.write(piece)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class AgentTestCase(SynchronousTestCase):
    """An agent on a L{MemoryReactorClock} whose endpoints connect to in-memory transports.
    Each agent's idle connections are closed at the end of the test, which must leave no
    pending call on the clock."""

    transport: Callable[[], StringTransport] = Transport

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.wires: list[Wire] = []
        self.agent = self.make_agent()

    def make_agent(self, persistent: bool = True, max_idle_per_host: int = 2,
                   idle_timeout: float | None = None) -> WorkerAgent:
        agent = WorkerAgent(
            self.clock, self.endpoint_for, persistent=persistent,
            max_idle_per_host=max_idle_per_host, idle_timeout=idle_timeout,
        )
        self.addCleanup(self._close, agent)
        return agent

    def _close(self, agent: WorkerAgent) -> None:
        self.successResultOf(agent.closeCachedConnections())
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def endpoint_for(self, scheme: bytes, host: bytes, port: int) -> IStreamClientEndpoint:
        return Endpoint((scheme, host, port), self.wires, self.transport)

    def request(self, method: bytes = b"GET", uri: bytes = b"http://example.com/",
                headers: Headers | None = None, body: IBodyProducer | None = None,
                agent: WorkerAgent | None = None) -> Deferred[IResponse]:
        return (agent or self.agent).request(method, uri, headers, body)

    def sent_head(self, wire: Wire) -> list[bytes]:
        """The lines of the request head the agent wrote (and forget what it wrote)."""
        head, separator, _ = wire.sent().partition(b"\r\n\r\n")
        self.assertTrue(separator, "no end of head")
        return head.split(b"\r\n")

    def issue(self, method: bytes = b"GET", uri: bytes = b"http://example.com/",
              agent: WorkerAgent | None = None) -> tuple[Deferred[IResponse], Wire]:
        """A request, and the connection (new or reused) it was written on."""
        for wire in self.wires:
            wire.transport.clear()
        d = self.request(method, uri, agent=agent)
        [wire] = [wire for wire in self.wires if wire.transport.value()]
        return d, wire

    def exchange(self, answer: bytes, step: int | None = None,
                 uri: bytes = b"http://example.com/",
                 method: bytes = b"GET") -> tuple[IResponse, Collector, Wire]:
        """One request answered with ``answer``; the body goes to a Collector at once."""
        d, wire = self.issue(method, uri)
        wire.feed(answer, step)
        response = self.successResultOf(d)
        collector = Collector()
        response.deliverBody(collector)
        return response, collector, wire

    def assert_done(self, collector: Collector, body: bytes) -> None:
        self.assertEqual(collector.body, body)
        self.assertIsNotNone(collector.reason)
        assert collector.reason is not None
        collector.reason.trap(ResponseDone)

    def assert_reused(self, wire: Wire, uri: bytes = b"http://example.com/") -> None:
        """The next request to ``uri`` goes out on ``wire``, and is answered there."""
        connects = len(self.wires)
        _, collector, used = self.exchange(OK, uri=uri)
        self.assertEqual(len(self.wires), connects)
        self.assertIs(used, wire)
        self.assert_done(collector, b"ok")

    def assert_not_reused(self, wire: Wire, uri: bytes = b"http://example.com/") -> None:
        """The next request to ``uri`` goes out on a new connection."""
        connects = len(self.wires)
        before = wire.transport.value()
        d = self.request(uri=uri)
        self.assertEqual(len(self.wires), connects + 1)
        self.assertEqual(wire.transport.value(), before)
        self.wires[-1].feed(OK)
        self.successResultOf(d).deliverBody(Collector())

    def assert_protocol_error(self, d: Deferred[IResponse]) -> None:
        cause(self.failureResultOf(d), ResponseNeverReceived).trap(ProtocolError)


class RequestTests(AgentTestCase):
    """What the agent writes."""

    def test_request_line(self) -> None:
        """When a URI has a path, a query and a fragment, the request line names the path and
        the query, not the fragment."""
        self.request(uri=b"http://example.com/a/b?x=1&y=%20#frag")
        self.assertEqual(self.sent_head(self.wires[0])[0], b"GET /a/b?x=1&y=%20 HTTP/1.1")

    def test_empty_path(self) -> None:
        """When a URI has no path, the request target is ``/`` (before any query)."""
        for uri, target in [
            (b"http://example.com", b"/"),
            (b"http://example.com?x=1", b"/?x=1"),
            (b"http://example.com#top", b"/"),
            (b"http://example.com:8080", b"/"),
        ]:
            self.request(uri=uri)
            self.assertEqual(self.sent_head(self.wires[-1])[0], b"GET " + target + b" HTTP/1.1")

    def test_host_default_port(self) -> None:
        """When a URI names its scheme's default port, or none, Host is the bare host name."""
        for uri in [b"http://example.com/", b"http://example.com:80/",
                    b"https://example.com/", b"https://example.com:443/"]:
            self.request(uri=uri)
            self.assertEqual(self.sent_head(self.wires[-1])[1], b"Host: example.com")
        self.assertEqual(
            [wire.key for wire in self.wires],
            [(b"http", b"example.com", 80)] * 2 + [(b"https", b"example.com", 443)] * 2,
        )

    def test_host_other_port(self) -> None:
        """When a URI names a port that is not its scheme's default, Host keeps it."""
        for uri, host in [(b"http://example.com:8080/", b"example.com:8080"),
                          (b"https://example.com:80/", b"example.com:80"),
                          (b"http://user:pw@example.com:81/", b"example.com:81")]:
            self.request(uri=uri)
            self.assertEqual(self.sent_head(self.wires[-1])[1], b"Host: " + host)

    def test_host_ipv6(self) -> None:
        """When the host is an IPv6 literal, Host has it in brackets and the endpoint gets it
        without."""
        self.request(uri=b"http://[::1]:8080/x")
        self.request(uri=b"https://[2001:db8::1]/")
        self.assertEqual(self.sent_head(self.wires[0])[:2],
                         [b"GET /x HTTP/1.1", b"Host: [::1]:8080"])
        self.assertEqual(self.sent_head(self.wires[1])[1], b"Host: [2001:db8::1]")
        self.assertEqual([wire.key for wire in self.wires],
                         [(b"http", b"::1", 8080), (b"https", b"2001:db8::1", 443)])

    def test_given_headers(self) -> None:
        """When headers are given, each value is sent on a line of its own."""
        headers = Headers({b"User-Agent": [b"Fireworq/1"], b"X-Multi": [b"a", b"b"]})
        self.request(headers=headers)
        lines = self.sent_head(self.wires[0])
        self.assertIn(b"User-Agent: Fireworq/1", lines)
        index = lines.index(b"X-Multi: a")
        self.assertEqual(lines[index + 1], b"X-Multi: b")

    def test_body_content_length(self) -> None:
        """When there is a body, it follows the head, which announces its length."""
        self.request(b"POST", b"http://example.com/jobs", body=BytesProducer(b"hello"))
        self.assertEqual(
            self.wires[0].sent(),
            b"POST /jobs HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\nhello",
        )

    def test_body_from_any_producer(self) -> None:
        """When the producer has no ``body``, what it writes is the body."""
        self.request(b"PUT", body=PiecesProducer(b"abc", b"defg"))
        head, _, body = self.wires[0].sent().partition(b"\r\n\r\n")
        self.assertIn(b"\r\nContent-Length: 7", head)
        self.assertEqual(body, b"abcdefg")

    def test_post_without_body(self) -> None:
        """When a POST, PUT or PATCH has no body, ``Content-Length: 0`` says so."""
        for method in [b"POST", b"PUT", b"PATCH"]:
            self.request(method)
            data = self.wires[-1].sent()
            self.assertTrue(data.endswith(b"\r\nContent-Length: 0\r\n\r\n"), data)

    def test_get_without_body(self) -> None:
        """When a GET (or HEAD, DELETE) has no body, no length is sent."""
        for method in [b"GET", b"HEAD", b"DELETE"]:
            self.request(method)
            data = self.wires[-1].sent()
            self.assertNotIn(b"content-length", data.lower())
            self.assertTrue(data.endswith(b"\r\n\r\n"))
            self.assertEqual(data.count(b"\r\n\r\n"), 1)

    def test_connection_close_when_not_persistent(self) -> None:
        """When the agent is not persistent, every request says ``Connection: close``; when it
        is, none says anything about the connection."""
        agent = self.make_agent(persistent=False)
        self.request(agent=agent)
        self.assertIn(b"Connection: close", self.sent_head(self.wires[0]))
        self.request()
        self.assertNotIn(b"connection", self.wires[1].sent().lower())

    def test_one_write(self) -> None:
        """When a request is sent, head and body go in one write, on a new connection and on a
        reused one."""
        d = self.request(b"POST", body=BytesProducer(b"payload"))
        wire = self.wires[0]
        assert isinstance(wire.transport, Transport)
        self.assertEqual(wire.transport.writes, 1)
        wire.feed(OK)
        self.successResultOf(d).deliverBody(Collector())
        self.request(b"POST", body=PiecesProducer(b"a", b"b", b"c"),
                     headers=Headers({b"X-A": [b"1"]}))
        self.assertEqual(len(self.wires), 1)
        self.assertEqual(wire.transport.writes, 2)

    def test_unsupported_uri(self) -> None:
        """When the URI is not http(s), or its port is not a number, the request fails and
        nothing connects."""
        self.failureResultOf(self.request(uri=b"ftp://example.com/"), ProtocolError)
        self.failureResultOf(self.request(uri=b"example.com/"), ProtocolError)
        self.failureResultOf(self.request(uri=b"http://example.com:x/"), ValueError)
        self.assertEqual(self.wires, [])

    def test_connect_failure(self) -> None:
        """When the connection cannot be made, the request fails with ResponseNeverReceived
        naming why."""
        agent = WorkerAgent(
            self.clock, lambda *key: FixedEndpoint(lambda: fail(ConnectionRefusedError())),
            persistent=True, max_idle_per_host=2, idle_timeout=None,
        )
        failure = self.failureResultOf(self.request(agent=agent))
        cause(failure, ResponseNeverReceived).trap(ConnectionRefusedError)

    def test_endpoint_error(self) -> None:
        """When no endpoint can be made for the URI, the request fails with that error."""

        def refuse(scheme: bytes, host: bytes, port: int) -> IStreamClientEndpoint:
            raise ValueError("no endpoint")

        agent = WorkerAgent(self.clock, refuse, persistent=True, max_idle_per_host=2,
                            idle_timeout=None)
        self.failureResultOf(self.request(agent=agent), ValueError)


class ResponseHeadTests(AgentTestCase):
    """Reading the status line and headers."""

    def test_status_line(self) -> None:
        """When the head arrives, the response has its code, phrase and version."""
        response, collector, _ = self.exchange(
            b"HTTP/1.1 201 Created Just Now\r\nContent-Length: 0\r\n\r\n")
        self.assertEqual(response.code, 201)
        self.assertEqual(response.phrase, b"Created Just Now")
        self.assertEqual(response.version, (b"HTTP", 1, 1))
        self.assertEqual(response.length, 0)
        self.assert_done(collector, b"")

    def test_http_10_version(self) -> None:
        """When the status line says HTTP/1.0, so does the response's version."""
        response, _, _ = self.exchange(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
        self.assertEqual(response.version, (b"HTTP", 1, 0))

    def test_no_phrase(self) -> None:
        """When the status line has no reason phrase, the phrase is empty."""
        response, _, _ = self.exchange(b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n")
        self.assertEqual((response.code, response.phrase), (200, b""))

    def test_headers(self) -> None:
        """When headers arrive, they are readable by any case of their name, values trimmed
        and repeated ones in order."""
        response, _, _ = self.exchange(
            b"HTTP/1.1 200 OK\r\nX-A: 1\r\nx-a:  2 \r\nContent-Type: text/plain\r\n"
            b"Empty:\r\nContent-Length: 0\r\n\r\n")
        self.assertEqual(response.headers.getRawHeaders(b"x-a"), [b"1", b"2"])
        self.assertEqual(response.headers.getRawHeaders(b"CONTENT-TYPE"), [b"text/plain"])
        self.assertEqual(response.headers.getRawHeaders(b"empty"), [b""])
        self.assertIsNone(response.headers.getRawHeaders(b"location"))

    def test_informational_skipped(self) -> None:
        """When 100 and 103 responses come first, the response is the one after them."""
        answer = (b"HTTP/1.1 100 Continue\r\n\r\n"
                  b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n" + OK)
        for step in [None, 1]:
            response, collector, wire = self.exchange(answer, step)
            self.assertEqual(response.code, 200)
            self.assertIsNone(response.headers.getRawHeaders(b"link"))
            self.assert_done(collector, b"ok")
        self.assertEqual(len(self.wires), 1)

    def test_informational_limit(self) -> None:
        """When more than 5 informational responses come before the answer (Go's client allows
        as many), the request fails with a ProtocolError and the connection is dropped; 5
        are still skipped."""
        informational = b"HTTP/1.1 100 Continue\r\n\r\n"
        response, collector, _ = self.exchange(informational * 5 + OK)
        self.assert_done(collector, b"ok")
        for step in [None, 1]:
            d, wire = self.issue()
            wire.feed(informational * 6 + OK, step)
            self.assert_protocol_error(d)
            self.assertTrue(wire.dropped)
            wire.close(ConnectionAborted)

    def test_informational_count_per_request(self) -> None:
        """When each request of a kept connection gets informational responses, each request
        has its own allowance."""
        informational = b"HTTP/1.1 103 Early Hints\r\n\r\n"
        _, collector, wire = self.exchange(informational * 5 + OK)
        self.assert_done(collector, b"ok")
        _, collector, again = self.exchange(informational * 5 + OK)
        self.assertIs(again, wire)
        self.assert_done(collector, b"ok")

    def test_head_split(self) -> None:
        """When the head arrives a byte at a time, it is read the same, and the response comes
        only once it is whole."""
        d = self.request()
        wire = self.wires[0]
        head = b"HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 2\r\n\r\n"
        wire.feed(head[:-1], 1)
        self.assertNoResult(d)
        wire.feed(head[-1:] + b"ok")
        response = self.successResultOf(d)
        self.assertEqual(response.headers.getRawHeaders(b"x-a"), [b"1"])
        collector = Collector()
        response.deliverBody(collector)
        self.assert_done(collector, b"ok")

    def test_head_too_long(self) -> None:
        """When the head grows past MAX_HEAD without ending, the request fails and the
        connection is dropped."""
        d = self.request()
        wire = self.wires[0]
        start = b"HTTP/1.1 200 OK\r\nX-Long: "
        wire.feed(start)
        wire.feed(b"a" * (MAX_HEAD - len(start)))
        self.assertNoResult(d)
        wire.feed(b"a")
        self.assert_protocol_error(d)
        self.assertTrue(wire.dropped)

    def test_head_too_long_in_one_read(self) -> None:
        """When a head longer than MAX_HEAD arrives whole in one read, it fails the same."""
        d = self.request()
        wire = self.wires[0]
        wire.feed(b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * MAX_HEAD
                  + b"\r\nContent-Length: 0\r\n\r\n")
        self.assert_protocol_error(d)
        self.assertTrue(wire.dropped)

    def assert_bad_head(self, head: bytes) -> None:
        d = self.request()
        wire = self.wires[-1]
        wire.feed(head + b"\r\nContent-Length: 0\r\n\r\n")
        self.assert_protocol_error(d)
        self.assertTrue(wire.dropped, head)
        wire.close(ConnectionAborted)
        self.assert_not_reused(wire)

    def test_bad_status_line(self) -> None:
        """When the status line is not HTTP/1.x's, the request fails with a ProtocolError and
        the connection is dropped."""
        for line in [b"HTTP/2 200 OK", b"ICY 200 OK", b"HTTP/1.1", b"HTTP/1.10 200 OK",
                     b"HTTP/1.1200 OK", b"http/1.1 200 OK", b"", b"HTTP/1.x 200 OK"]:
            self.assert_bad_head(line)

    def test_non_digit_code(self) -> None:
        """When the status code is not three digits, the request fails with a ProtocolError
        and the connection is dropped."""
        for code in [b"20x", b"2000", b"+20", b"-20", b" 200", b"\xd9\xa2\xd9\xa0\xd9\xa0"]:
            self.assert_bad_head(b"HTTP/1.1 " + code + b" OK")

    def test_header_without_colon(self) -> None:
        """When a header line has no colon, or space before it, the request fails with a
        ProtocolError and the connection is dropped."""
        for line in [b"X-A 1", b": no name", b"X-A : 1", b" X-A: 1"]:
            self.assert_bad_head(b"HTTP/1.1 200 OK\r\n" + line)

    def test_folded_header(self) -> None:
        """When a header continues on a folded line, the continuation is ignored."""
        response, collector, _ = self.exchange(
            b"HTTP/1.1 200 OK\r\nX-A: 1\r\n  more\r\nContent-Length: 2\r\n\r\nok")
        self.assertEqual(response.headers.getRawHeaders(b"x-a"), [b"1"])
        self.assert_done(collector, b"ok")


class BodyTests(AgentTestCase):
    """Finding where a body ends, and handing it over."""

    def test_content_length(self) -> None:
        """When the body has a Content-Length, it ends after that many bytes, however they
        arrive, and the connection is reused."""
        d = self.request()
        wire = self.wires[0]
        wire.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01")
        response = self.successResultOf(d)
        self.assertEqual(response.length, 10)
        collector = Collector()
        response.deliverBody(collector)
        wire.feed(b"234")
        wire.feed(b"5678", 1)
        self.assertIsNone(collector.reason)
        wire.feed(b"9")
        self.assert_done(collector, b"0123456789")
        self.assert_reused(wire)

    def test_content_length_extra_bytes(self) -> None:
        """When more bytes than announced follow the body, the body is what was announced and
        the connection is not reused."""
        for extra in [b"9junk", b"9\r\n"]:
            d = self.request()
            wire = self.wires[-1]
            wire.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n012345678")
            collector = Collector()
            self.successResultOf(d).deliverBody(collector)
            wire.feed(extra)
            self.assert_done(collector, b"0123456789")
            self.assertTrue(wire.dropped)
            self.assert_not_reused(wire)

    def test_extra_bytes_while_idle(self) -> None:
        """When bytes arrive on a pooled connection that nobody asked for, it is dropped and
        not handed out again, even before its connectionLost."""
        _, collector, wire = self.exchange(OK)
        self.assert_done(collector, b"ok")
        wire.feed(b"HTTP/1.1 200 OK\r\n")
        self.assertTrue(wire.dropped)
        self.assert_not_reused(wire)
        wire.close(ConnectionAborted)

    def test_chunked(self) -> None:
        """When the body is chunked, sizes are hex, extensions and trailers are skipped, the
        last chunk ends it and the connection is reused."""
        response, collector, wire = self.exchange(CHUNKED_HEAD + CHUNKS)
        self.assertEqual(response.length, UNKNOWN_LENGTH)
        self.assert_done(collector, CHUNKED_BODY)
        self.assertIsNone(response.headers.getRawHeaders(b"x-trailer"))
        self.assert_reused(wire)

    def test_chunked_byte_by_byte(self) -> None:
        """When a chunked body arrives a byte at a time, it is read the same, and ends only
        with the last byte."""
        _, collector, wire = self.exchange(CHUNKED_HEAD)
        wire.feed(CHUNKS[:-1], 1)
        self.assertEqual(collector.body, CHUNKED_BODY)
        self.assertIsNone(collector.reason)
        wire.feed(CHUNKS[-1:])
        self.assert_done(collector, CHUNKED_BODY)
        self.assert_reused(wire)

    def test_chunked_split_anywhere(self) -> None:
        """When a chunked response is split in two at any byte, it is read the same, and the
        connection is reused for the next one."""
        answer = CHUNKED_HEAD + CHUNKS
        for split in range(len(answer) + 1):
            d = self.request()
            wire = self.wires[0]
            wire.feed(answer[:split])
            if split < len(CHUNKED_HEAD):
                self.assertNoResult(d)
                wire.feed(answer[split:])
                collector = Collector()
                self.successResultOf(d).deliverBody(collector)
            else:
                collector = Collector()
                self.successResultOf(d).deliverBody(collector)
                wire.feed(answer[split:])
            self.assert_done(collector, CHUNKED_BODY)
        self.assertEqual(len(self.wires), 1)

    def test_chunked_no_trailers(self) -> None:
        """When the last chunk has no trailers, the blank line after it ends the body."""
        _, collector, wire = self.exchange(CHUNKED_HEAD + b"2\r\nok\r\n0\r\n\r\n")
        self.assert_done(collector, b"ok")
        self.assert_reused(wire)

    def test_chunked_extra_bytes(self) -> None:
        """When bytes follow the end of a chunked body, the connection is not reused."""
        _, collector, wire = self.exchange(CHUNKED_HEAD + b"2\r\nok\r\n0\r\n\r\nHTTP/1.1")
        self.assert_done(collector, b"ok")
        self.assertTrue(wire.dropped)
        self.assert_not_reused(wire)

    def assert_bad_body(self, head: bytes, body: bytes) -> Collector:
        _, collector, wire = self.exchange(head)
        wire.feed(body)
        self.assertIsNotNone(collector.reason)
        assert collector.reason is not None
        collector.reason.trap(ResponseFailed)
        self.assertTrue(wire.dropped)
        wire.close(ConnectionAborted)
        self.assert_not_reused(wire)
        return collector

    def test_bad_chunk_size(self) -> None:
        """When a chunk size is not hex, the body fails with a ProtocolError and the connection
        is dropped."""
        for size in [b"zz\r\n", b"\r\n", b"-1\r\n", b"0x2\r\n", b"+2\r\n", b"1_0\r\n",
                     b"1" * 2000]:
            collector = self.assert_bad_body(CHUNKED_HEAD, b"2\r\nok\r\n" + size)
            self.assertEqual(collector.body, b"ok")
            cause(collector.reason).trap(ProtocolError)

    def test_chunk_without_crlf(self) -> None:
        """When a chunk's data is not followed by CRLF, the body fails with a ProtocolError."""
        collector = self.assert_bad_body(CHUNKED_HEAD, b"2\r\nokX\r\n0\r\n\r\n")
        cause(collector.reason).trap(ProtocolError)

    def test_chunked_wins_over_content_length(self) -> None:
        """When a response is chunked and has a Content-Length too, the chunks frame it, and
        the connection is closed after it (RFC 9112 section 6.3: a sign of smuggling)."""
        for head in [b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked",
                     b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2"]:
            response, collector, wire = self.exchange(
                head + b"\r\n\r\n2\r\nok\r\n0\r\n\r\n")
            self.assertEqual(response.length, UNKNOWN_LENGTH)
            self.assert_done(collector, b"ok")
            self.assertTrue(wire.dropped)
            self.assert_not_reused(wire)

    def assert_until_close(self, head: bytes) -> None:
        response, collector, wire = self.exchange(head + b"\r\n\r\nabc")
        self.assertEqual(response.length, UNKNOWN_LENGTH)
        wire.feed(b"defgh", 2)
        self.assertEqual(collector.body, b"abcdefgh")
        self.assertIsNone(collector.reason)
        wire.close(ConnectionDone)
        assert collector.reason is not None
        collector.reason.trap(PotentialDataLoss)
        self.assert_not_reused(wire)

    def test_other_transfer_encoding(self) -> None:
        """When the last transfer coding is not chunked, the body lasts until the connection
        closes, which ends it with PotentialDataLoss; the connection is not reused."""
        self.assert_until_close(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip")
        self.assert_until_close(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip")

    def test_other_transfer_encoding_with_length(self) -> None:
        """When a transfer coding other than chunked comes with a Content-Length, before or
        after it, the body still lasts until the connection closes."""
        self.assert_until_close(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 3")
        self.assert_until_close(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: gzip")

    def test_no_length(self) -> None:
        """When a response has neither length nor chunks, the body lasts until the connection
        closes."""
        self.assert_until_close(b"HTTP/1.1 200 OK\r\nX-A: 1")

    def test_until_close_cut(self) -> None:
        """When a body read until close ends with a lost (not closed) connection, it fails."""
        _, collector, wire = self.exchange(b"HTTP/1.1 200 OK\r\n\r\nabc")
        wire.close(ConnectionLost)
        assert collector.reason is not None
        collector.reason.trap(ResponseFailed)
        self.assertEqual(collector.body, b"abc")

    def test_no_body_codes(self) -> None:
        """When the status is 204 or 304, there is no body whatever the headers say, and the
        connection is reused."""
        for code in [b"204 No Content", b"304 Not Modified"]:
            response, collector, wire = self.exchange(
                b"HTTP/1.1 " + code + b"\r\nContent-Length: 10\r\n\r\n")
            self.assertEqual(response.length, 0)
            self.assert_done(collector, b"")
            self.assert_reused(wire)

    def test_head_request(self) -> None:
        """When the request is a HEAD, the response has no body whatever its headers say, and
        the connection is reused."""
        for header in [b"Content-Length: 10", b"Transfer-Encoding: chunked"]:
            response, collector, wire = self.exchange(
                b"HTTP/1.1 200 OK\r\n" + header + b"\r\n\r\n", method=b"HEAD")
            self.assertEqual(response.length, 0)
            self.assert_done(collector, b"")
            self.assert_reused(wire)

    def test_no_body_extra_bytes(self) -> None:
        """When bytes follow a response that has no body, the connection is not reused."""
        _, collector, wire = self.exchange(b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK")
        self.assert_done(collector, b"")
        self.assertTrue(wire.dropped)
        self.assert_not_reused(wire)

    def test_duplicate_content_length(self) -> None:
        """When Content-Length is repeated with the same value, that is the length."""
        response, collector, wire = self.exchange(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok")
        self.assertEqual(response.length, 2)
        self.assert_done(collector, b"ok")
        self.assert_reused(wire)

    def test_conflicting_content_length(self) -> None:
        """When Content-Length values differ, or one is not a number, the request fails with
        a ProtocolError and the connection is dropped."""
        for lengths in [[b"2", b"3"], [b"-1"], [b"1e3"], [b""], [b"2, 2"], [b"0x10"]]:
            d = self.request()
            wire = self.wires[-1]
            wire.feed(b"HTTP/1.1 200 OK\r\n"
                      + b"".join(b"Content-Length: " + n + b"\r\n" for n in lengths)
                      + b"\r\nok")
            self.assert_protocol_error(d)
            self.assertTrue(wire.dropped)

    def test_body_buffered(self) -> None:
        """When deliverBody is called after the whole body arrived, the protocol gets it all,
        then the end."""
        d = self.request()
        wire = self.wires[0]
        wire.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nab")
        wire.feed(b"cd")
        wire.feed(b"ef")
        collector = Collector()
        self.successResultOf(d).deliverBody(collector)
        self.assert_done(collector, b"abcdef")

    def test_connection_lost_mid_body(self) -> None:
        """When the connection is lost before the body's end, the body protocol gets
        ResponseFailed naming why."""
        for head, part in [(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", b"01234"),
                           (CHUNKED_HEAD, b"a\r\n01234")]:
            _, collector, wire = self.exchange(head + part)
            wire.close(ConnectionDone)
            self.assertEqual(collector.body, b"01234")
            cause(collector.reason).trap(ConnectionDone)
            self.assert_not_reused(wire)

    def test_connection_lost_before_head(self) -> None:
        """When the connection is lost before the head ends, the request fails with
        ResponseNeverReceived."""
        d = self.request()
        wire = self.wires[0]
        wire.feed(b"HTTP/1.1 200 OK\r\n")
        wire.close(ConnectionLost)
        cause(self.failureResultOf(d), ResponseNeverReceived).trap(ConnectionLost)

    def test_connection_close_response(self) -> None:
        """When the response says ``Connection: close`` (in any case, among other tokens), the
        connection is dropped after it."""
        for value in [b"close", b"Keep-Alive, CLOSE"]:
            _, collector, wire = self.exchange(
                b"HTTP/1.1 200 OK\r\nConnection: " + value + b"\r\nContent-Length: 2\r\n\r\nok")
            self.assert_done(collector, b"ok")
            self.assertTrue(wire.dropped)
            self.assert_not_reused(wire)

    def test_http_10_response(self) -> None:
        """When the response is HTTP/1.0, the connection is dropped after it, even with
        ``Connection: keep-alive``."""
        _, collector, wire = self.exchange(
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok")
        self.assert_done(collector, b"ok")
        self.assertTrue(wire.dropped)
        self.assert_not_reused(wire)

    def test_not_persistent(self) -> None:
        """When the agent is not persistent, a connection is dropped after its response."""
        agent = self.make_agent(persistent=False)
        d = self.request(agent=agent)
        wire = self.wires[0]
        wire.feed(OK)
        collector = Collector()
        self.successResultOf(d).deliverBody(collector)
        self.assert_done(collector, b"ok")
        self.assertTrue(wire.dropped)
        self.request(agent=agent)
        self.assertEqual(len(self.wires), 2)


class CostTests(AgentTestCase):
    """Answers shaped to make parsing expensive cost about what a plain answer of the same
    size costs when it arrives in as many reads as they have pieces to parse (bytes of a head,
    chunks, informational responses): the parser's work per piece is bounded, it does not grow
    with what came before. CPU time (``time.process_time``), as a ratio, with a generous bound
    (about 3 is measured): before parsing was linear, the ratios were 36 to 50, and
    informational responses were read without end."""

    BOUND = 10.0

    def cpu_seconds(self, answer: bytes, step: int | None,
                    check: Callable[[Deferred[IResponse], Collector], None]) -> float:
        """The CPU time the agent takes to read ``answer`` fed ``step`` bytes a read, the body
        going to a Collector as it comes: the least of three tries, each one checked."""
        least = math.inf
        for _ in range(3):
            d, wire = self.issue()
            collector = Collector()

            def read(response: IResponse, collector: Collector = collector) -> IResponse:
                response.deliverBody(collector)
                return response

            d.addCallback(read)
            started = time.process_time()
            wire.feed(answer, step)
            least = min(least, time.process_time() - started)
            check(d, collector)
            if wire.dropped:
                wire.close(ConnectionAborted)
        return least

    def answered(self, body: bytes) -> Callable[[Deferred[IResponse], Collector], None]:
        def check(d: Deferred[IResponse], collector: Collector) -> None:
            self.assertEqual(self.successResultOf(d).code, 200)
            self.assert_done(collector, body)
        return check

    def failed(self, d: Deferred[IResponse], collector: Collector) -> None:
        self.assert_protocol_error(d)

    def assert_cost(self, answer: bytes, step: int | None, pieces: int,
                    check: Callable[[Deferred[IResponse], Collector], None]) -> None:
        """Reading ``answer`` (fed ``step`` bytes a read) costs less than BOUND times reading a
        plain answer of the same size in ``pieces`` reads."""
        plain_body = b"x" * len(answer)
        plain = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(plain_body) + plain_body
        baseline = self.cpu_seconds(plain, max(1, len(plain) // pieces),
                                    self.answered(plain_body))
        cost = self.cpu_seconds(answer, step, check)
        ratio = cost / baseline
        print(f"\n{self.id()}: {cost * 1000:.1f} ms against {baseline * 1000:.1f} ms,"
              f" ratio {ratio:.2f}")
        self.assertLess(ratio, self.BOUND, f"{cost:.4f} s against {baseline:.4f} s")

    def test_long_head_byte_by_byte(self) -> None:
        """When a head of almost MAX_HEAD bytes arrives one byte a read, reading it costs about
        what a body of that size costs one byte a read (the buffer was re-joined and searched
        from its start at every byte: 1.5 s of CPU)."""
        lines = [b"HTTP/1.1 200 OK\r\n"]
        size = len(lines[0]) + len(b"Content-Length: 2\r\n\r\n")
        while size + 100 < MAX_HEAD:
            lines.append(b"X-Pad-%04d: %s\r\n" % (len(lines), b"a" * 86))
            size += len(lines[-1])
        answer = b"".join(lines) + b"Content-Length: 2\r\n\r\nok"
        self.assert_cost(answer, 1, len(answer), self.answered(b"ok"))

    def test_one_byte_chunks(self) -> None:
        """When a 64 KiB body comes in chunks of one byte, all in one read, reading it costs
        about what a plain answer of the same size costs in as many reads as there are chunks
        (the buffer was copied at every chunk)."""
        chunks = 65536
        answer = CHUNKED_HEAD + b"1\r\nx\r\n" * chunks + b"0\r\n\r\n"
        self.assert_cost(answer, None, chunks, self.answered(b"x" * chunks))

    def test_many_informational(self) -> None:
        """When 64 KiB of informational responses come in one read, the request fails after the
        first few, at a cost below that of a plain answer of the same size in as many reads
        as there were informational responses (they were all read, copying the buffer after
        each)."""
        informational = b"HTTP/1.1 100 Continue\r\n\r\n"
        count = 65536 // len(informational)
        self.assert_cost(informational * count + OK, None, count, self.failed)


class CancelTests(AgentTestCase):
    """Giving up on a request, or on a body."""

    def test_cancel_before_head(self) -> None:
        """When the request is cancelled before the head, it fails with CancelledError, the
        connection is aborted, and its connectionLost changes nothing."""
        d = self.request()
        wire = self.wires[0]
        wire.feed(b"HTTP/1.1 200 OK\r\n")
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertTrue(wire.transport.disconnected)  # StringTransport's mark of an abort
        wire.feed(b"Content-Length: 2\r\n\r\nok")
        wire.close(ConnectionAborted)
        self.assert_not_reused(wire)

    def test_cancel_with_immediate_connection_lost(self) -> None:
        """When the transport calls connectionLost from abortConnection, cancelling still
        fails the request with CancelledError only."""
        self.transport = StringTransportWithDisconnection
        d = self.request()
        wire = self.wires[0]
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertFalse(wire.transport.connected)
        self.assert_not_reused(wire)

    def test_cancel_reused_connection(self) -> None:
        """When a request on a pooled connection is cancelled, that connection is dropped and
        the next request connects anew."""
        _, _, wire = self.exchange(OK)
        d = self.request()
        self.assertEqual(len(self.wires), 1)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertTrue(wire.dropped)
        self.assert_not_reused(wire)
        wire.close(ConnectionAborted)

    def test_cancel_while_connecting(self) -> None:
        """When the request is cancelled while connecting, it fails with CancelledError."""
        attempts: list[Deferred[IProtocol]] = []

        def connecting() -> Deferred[IProtocol]:
            attempts.append(Deferred())
            return attempts[-1]

        agent = WorkerAgent(self.clock, lambda *key: FixedEndpoint(connecting),
                            persistent=True, max_idle_per_host=2, idle_timeout=None)
        d = self.request(agent=agent)
        self.assertNoResult(d)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(len(attempts), 1)

    def test_body_protocol_drops(self) -> None:
        """When the body protocol calls loseConnection, the connection is dropped, no more of
        the body reaches it, it fails once the connection is lost, and the connection is not
        reused."""

        class Dropper(Collector):
            def dataReceived(self, data: bytes) -> None:
                super().dataReceived(data)
                assert self.transport is not None
                self.transport.loseConnection()

        for head, part in [(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", b"01234"),
                           (CHUNKED_HEAD, b"2\r\n01\r\n2\r\n23\r\n")]:
            d = self.request()
            wire = self.wires[-1]
            wire.feed(head)
            dropper = Dropper()
            self.successResultOf(d).deliverBody(dropper)
            wire.feed(part)
            self.assertTrue(wire.dropped)
            # The chunks of one read reach the body protocol together.
            self.assertIn(dropper.body, (b"01234", b"0123"))
            wire.feed(b"56789")
            self.assertIn(dropper.body, (b"01234", b"0123"))
            self.assertIsNone(dropper.reason)
            wire.close(ConnectionAborted)
            assert dropper.reason is not None
            dropper.reason.trap(ResponseFailed)
            self.assert_not_reused(wire)

    def test_body_protocol_drops_at_the_end(self) -> None:
        """When the body protocol calls loseConnection once its body ended, the connection,
        back in the pool, is not dropped."""

        class Tidy(Collector):
            def connectionLost(self, reason: Failure = connectionDone) -> None:
                super().connectionLost(reason)
                assert self.transport is not None
                self.transport.loseConnection()

        d = self.request()
        wire = self.wires[0]
        wire.feed(OK)
        tidy = Tidy()
        self.successResultOf(d).deliverBody(tidy)
        self.assert_done(tidy, b"ok")
        self.assertFalse(wire.dropped)
        self.assert_reused(wire)

    def test_late_body_protocol_cannot_drop_the_next_exchange(self) -> None:
        """When deliverBody is called after the connection went on to the next request, its
        protocol's loseConnection does not touch that request."""
        first = self.request()
        wire = self.wires[0]
        wire.feed(OK)
        second = self.request()
        self.assertEqual(len(self.wires), 1)
        late = Collector()
        self.successResultOf(first).deliverBody(late)
        self.assert_done(late, b"ok")
        assert late.transport is not None
        late.transport.loseConnection()
        self.assertFalse(wire.dropped)
        wire.feed(OK)
        collector = Collector()
        self.successResultOf(second).deliverBody(collector)
        self.assert_done(collector, b"ok")


class PoolTests(AgentTestCase):
    """Keeping connections for the next request."""

    def test_reuse(self) -> None:
        """When a persistent exchange ends, the next request to the same host and port goes on
        the same connection."""
        _, collector, wire = self.exchange(OK)
        self.assert_done(collector, b"ok")
        for _ in range(3):
            self.assert_reused(wire)
        self.assertEqual(len(self.wires), 1)

    def test_keys_not_shared(self) -> None:
        """When requests go to different schemes, hosts or ports, they don't share connections,
        and each connection is reused for its own."""
        uris = [b"http://a.example/", b"http://b.example/", b"http://a.example:81/",
                b"https://a.example/", b"http://[::1]/"]
        for uri in uris:
            self.exchange(OK, uri=uri)
        self.assertEqual(len(self.wires), len(uris))
        for uri, wire in zip(uris, list(self.wires)):
            self.assert_reused(wire, uri)
        self.assertEqual(len(self.wires), len(uris))

    def answer_all(self, count: int, agent: WorkerAgent | None = None) -> list[Wire]:
        """``count`` requests at once, then their answers: the connections they leave idle."""
        issued = [self.issue(agent=agent) for _ in range(count)]
        wires = [wire for _, wire in issued]
        for d, wire in issued:
            wire.feed(OK)
            collector = Collector()
            self.successResultOf(d).deliverBody(collector)
            self.assert_done(collector, b"ok")
        return wires

    def test_max_idle(self) -> None:
        """When more connections than max_idle_per_host become idle, the extra ones close
        after a second of idleness and the first ones stay."""
        wires = self.answer_all(4)
        self.clock.advance(0.999)
        self.assertEqual([wire.dropped for wire in wires], [False] * 4)
        self.clock.advance(0.001)
        self.assertEqual([wire.dropped for wire in wires], [False, False, True, True])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        for wire in wires[2:]:
            wire.close(ConnectionAborted)
        self.clock.advance(3600)
        self.assertEqual([wire.dropped for wire in wires], [False, False, True, True])
        self.assertEqual(len([self.request(), self.request()]), 2)
        self.assertEqual(len(self.wires), 4)
        self.request()
        self.assertEqual(len(self.wires), 5)

    def test_max_idle_after_reuse(self) -> None:
        """When a burst left extra connections lingering and one connection is used again,
        max_idle_per_host connections still stay idle after the linger."""
        wires = self.answer_all(3)
        self.answer_all(1)
        self.clock.advance(1)
        self.assertEqual(sum(not wire.dropped for wire in wires), 2)
        self.assertEqual(len(self.wires), 3)

    def test_idle_timeout(self) -> None:
        """When a connection stays idle for idle_timeout seconds, it is dropped and the next
        request connects anew, even before its connectionLost."""
        agent = self.make_agent(idle_timeout=5)
        [wire] = self.answer_all(1, agent)
        self.clock.advance(4.999)
        self.assertFalse(wire.dropped)
        self.clock.advance(0.001)
        self.assertTrue(wire.dropped)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        connects = len(self.wires)
        d = self.request(agent=agent)
        self.assertEqual(len(self.wires), connects + 1)
        self.wires[-1].feed(OK)
        self.successResultOf(d).deliverBody(Collector())
        wire.close(ConnectionAborted)

    def test_idle_timeout_restarts(self) -> None:
        """When a pooled connection is used again, its idle timer stops while it is in use and
        starts over when it is idle again."""
        agent = self.make_agent(idle_timeout=5)
        [wire] = self.answer_all(1, agent)
        self.clock.advance(4)
        d = self.request(agent=agent)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(10)
        wire.feed(OK)
        self.successResultOf(d).deliverBody(Collector())
        self.clock.advance(4.9)
        self.assertFalse(wire.dropped)
        self.clock.advance(0.1)
        self.assertTrue(wire.dropped)

    def test_linger_within_idle_timeout(self) -> None:
        """When idle_timeout is shorter than the linger, extra connections close after
        idle_timeout."""
        agent = self.make_agent(max_idle_per_host=1, idle_timeout=0.5)
        wires = self.answer_all(2, agent)
        self.clock.advance(0.5)
        self.assertEqual([wire.dropped for wire in wires], [True, True])

    def test_server_closes_idle(self) -> None:
        """When the server closes a pooled connection, it is forgotten (with its timer) and the
        next request connects anew."""
        agent = self.make_agent(idle_timeout=30)
        [wire] = self.answer_all(1, agent)
        wire.close(ConnectionDone)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        connects = len(self.wires)
        self.request(agent=agent)
        self.assertEqual(len(self.wires), connects + 1)

    def test_close_cached_connections(self) -> None:
        """When closeCachedConnections is called, every idle connection is dropped, no timer is
        left, connections in use are untouched, and the next request connects anew."""
        agent = self.make_agent(idle_timeout=30)
        idle = self.answer_all(3, agent) + self.answer_all(2)
        busy, busy_wire = self.issue(agent=agent)
        self.assertEqual(len(self.wires), 5)
        self.successResultOf(agent.closeCachedConnections())
        self.successResultOf(self.agent.closeCachedConnections())
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual([wire.dropped for wire in idle], [wire is not busy_wire for wire in idle])
        busy_wire.feed(OK)
        collector = Collector()
        self.successResultOf(busy).deliverBody(collector)
        self.assert_done(collector, b"ok")
        self.request()
        self.assertEqual(len(self.wires), 6)

    def test_put_back_before_body_ends(self) -> None:
        """When the body protocol's connectionLost makes the next request, that request reuses
        the connection the body came on."""
        later: list[Deferred[IResponse]] = []
        agent = self.agent

        class Chain(Collector):
            def connectionLost(self, reason: Failure = connectionDone) -> None:
                super().connectionLost(reason)
                later.append(agent.request(b"GET", b"http://example.com/next"))

        def read(response: IResponse) -> None:
            response.deliverBody(Chain())

        for answer in [OK, CHUNKED_HEAD + b"2\r\nok\r\n0\r\n\r\n",
                       b"HTTP/1.1 204 No Content\r\n\r\n"]:
            d, wire = self.issue()
            d.addCallback(read)  # the body protocol is there before the body ends
            wire.sent()
            wire.feed(answer)
            self.assertEqual(len(self.wires), 1)
            self.assertTrue(wire.sent().startswith(b"GET /next HTTP/1.1\r\n"))
            wire.feed(OK)
            collector = Collector()
            self.successResultOf(later.pop()).deliverBody(collector)
            self.assert_done(collector, b"ok")


class StaleConnectionTests(AgentTestCase):
    """A kept connection that the worker closed as the request went out."""

    def test_retriedOnNewConnection(self) -> None:
        """When a reused connection closes before any byte of an answer, the request is sent
        once more on a new connection, and its answer is the result."""
        _, collector, first = self.exchange(OK)
        self.assert_done(collector, b"ok")
        d, wire = self.issue(b"POST")
        self.assertIs(wire, first)
        sent = first.transport.value()
        first.close(ConnectionDone)
        [_, second] = self.wires
        self.assertEqual(second.sent(), sent)
        second.feed(OK)
        response = self.successResultOf(d)
        self.assertEqual(response.code, 200)
        response.deliverBody(Collector())

    def test_notRetriedAfterAnswerBegan(self) -> None:
        """When part of an answer came before the connection closed, the request fails."""
        self.exchange(OK)
        d, wire = self.issue(b"POST")
        wire.feed(b"HTTP/1.1 200")
        wire.close(ConnectionDone)
        self.assertEqual(len(self.wires), 1)
        cause(self.failureResultOf(d), ResponseNeverReceived)

    def test_newConnectionNotRetried(self) -> None:
        """When a new connection closes before answering, there is no second try."""
        d, wire = self.issue(b"POST")
        wire.close(ConnectionDone)
        self.assertEqual(len(self.wires), 1)
        cause(self.failureResultOf(d), ResponseNeverReceived)


class ShutdownTests(AgentTestCase):
    def test_lateExchangeNotKept(self) -> None:
        """When an exchange ends after closeCachedConnections, its connection is dropped
        instead of kept."""
        d, wire = self.issue()
        self.successResultOf(self.agent.closeCachedConnections())
        wire.feed(OK)
        collector = Collector()
        self.successResultOf(d).deliverBody(collector)
        self.assert_done(collector, b"ok")
        self.assertTrue(wire.dropped)
