"""A lean HTTP/1.1 client under treq, for worker requests.

treq is the delivery client, on an ``IAgent`` of its own. Twisted's ``Agent`` spends about
150 µs of CPU per request here (a dozen Deferred hops, header objects built and rebuilt,
the transport paused and resumed around every body); this agent writes each request in one
write and parses the response in one pass: about 25 µs. It does only what worker requests
need: one request at a time per connection, ``Content-Length``, chunked and
close-delimited bodies, informational (1xx) responses skipped, persistent connections
pooled per host with an idle limit and timeout. TLS, connect timeouts and name resolution
come from the endpoints it is given.

Parsing is linear in the bytes received however they are cut into reads: a worker that
sends its head a byte at a time, or its body in one-byte chunks, costs about what a plain
answer of the same size costs.
"""

from __future__ import annotations

import re
from collections import deque
from typing import Any, Callable

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IConsumer, IDelayedCall, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone, ResponseFailed, ResponseNeverReceived
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IAgent, IBodyProducer, IResponse
from zope.interface import implementer

__all__ = ["BytesProducer", "ProtocolError", "WorkerAgent"]

#: Longest response head (status line and headers) accepted.
MAX_HEAD = 65536
#: Informational (1xx) responses skipped before an answer; one more fails the request. The
#: same bound as Go's client (Fireworq's), so that a worker cannot hold a delivery with them.
MAX_INFORMATIONAL = 5
#: Longest chunk-size line (with its extensions) accepted.
MAX_CHUNK_LINE = 1024
_DEFAULT_PORTS = {b"http": 80, b"https": 443}
_NO_BODY_CODES = frozenset({204, 304})
_BODY_METHODS = frozenset({b"POST", b"PUT", b"PATCH"})
_HEX_DIGITS = b"0123456789abcdefABCDEF"
# The usual chunk-size line, read without slicing; anything else takes the general path.
_PLAIN_CHUNK_SIZE = re.compile(rb"([0-9a-fA-F]{1,16})\r\n")
# Chunked-body states.
_SIZE, _DATA, _CRLF, _TRAILERS = range(4)

Key = tuple[bytes, bytes, int]


class ProtocolError(Exception):
    """The worker's answer is not HTTP/1.x as this client reads it."""


def split_uri(uri: bytes) -> tuple[bytes, bytes, int, bytes]:
    """(scheme, host, port, request target) of an absolute http(s) URI."""
    scheme, separator, rest = uri.partition(b"://")
    if not separator or scheme.lower() not in _DEFAULT_PORTS:
        raise ProtocolError("unsupported URL %r" % uri[:100])
    scheme = scheme.lower()
    end = len(rest)
    for mark in b"/?#":
        found = rest.find(bytes((mark,)))
        if found != -1 and found < end:
            end = found
    authority, target = rest[:end], rest[end:]
    target = target.partition(b"#")[0]
    if not target.startswith(b"/"):
        target = b"/" + target
    host_port = authority.rpartition(b"@")[2]
    if host_port.startswith(b"["):
        host, _, after = host_port[1:].partition(b"]")
        port_text = after[1:] if after.startswith(b":") else b""
    else:
        host, _, port_text = host_port.partition(b":")
    port = int(port_text) if port_text else _DEFAULT_PORTS[scheme]
    return scheme, host.lower(), port, target


def _host_header(scheme: bytes, host: bytes, port: int) -> bytes:
    name = b"[" + host + b"]" if b":" in host else host
    if port == _DEFAULT_PORTS[scheme]:
        return name
    return name + b":%d" % port


@implementer(IBodyProducer)
class BytesProducer:
    """A payload in memory, written at once (treq's default for bytes writes from a
    cooperator task on the global reactor, a reactor turn later). WorkerAgent reads ``body``
    directly."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.length = len(body)

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        consumer.write(self.body)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


@implementer(IConsumer)
class _Collector:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.parts.append(data)

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        pass

    def unregisterProducer(self) -> None:
        pass


def _body_of(producer: IBodyProducer | None) -> Deferred[bytes | None]:
    if producer is None:
        return succeed(None)
    if isinstance(producer, BytesProducer):
        return succeed(producer.body)
    collector = _Collector()
    done: Deferred[Any] = producer.startProducing(collector)
    return done.addCallback(lambda _: b"".join(collector.parts))


@implementer(IResponse)
class _Response:
    """The response to one request; its body goes to whoever ``deliverBody`` names."""

    request = None
    previousResponse = None

    def __init__(self, connection: _Connection, version: tuple[bytes, int, int], code: int,
                 phrase: bytes, headers: Headers, length: int | object) -> None:
        self._connection = connection
        self.version = version
        self.code = code
        self.phrase = phrase
        self.headers = headers
        self.length = length
        self._protocol: Protocol | None = None
        self._transport: _BodyTransport | None = None
        self._buffered: list[bytes] = []
        self._end: Failure | None = None

    def setPreviousResponse(self, response: IResponse) -> None:
        self.previousResponse = response

    def deliverBody(self, protocol: Protocol) -> None:
        self._protocol = protocol
        # Once the body has ended the connection is no longer this response's to drop: it may
        # already carry the next request.
        self._transport = _BodyTransport(self._connection if self._end is None else None)
        protocol.makeConnection(self._transport)
        buffered, self._buffered = self._buffered, []
        for data in buffered:
            protocol.dataReceived(data)
        if self._end is not None:
            protocol.connectionLost(self._end)

    def data(self, data: bytes) -> None:
        if self._protocol is None:
            self._buffered.append(data)
        else:
            self._protocol.dataReceived(data)

    def end(self, reason: Failure) -> None:
        if self._end is not None:
            return
        self._end = reason
        if self._transport is not None:
            self._transport.detach()
        if self._protocol is not None:
            self._protocol.connectionLost(reason)


class _BodyTransport:
    """What a body protocol may do with the connection: drop it (it is not reused then), until
    its body has ended."""

    def __init__(self, connection: _Connection | None) -> None:
        self._connection = connection

    def detach(self) -> None:
        self._connection = None

    def loseConnection(self) -> None:
        if self._connection is not None:
            self._connection.abandon()

    stopProducing = loseConnection

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass


def _chunk_size(line: bytes) -> int:
    """The size a chunk-size line gives (extensions ignored)."""
    size_text = line.split(b";", 1)[0].strip()
    # int() alone would take "0x1f", "+1f", "1_f" too.
    if not size_text or size_text.strip(_HEX_DIGITS) or len(size_text) > 16:
        raise ProtocolError("bad chunk size %r" % size_text[:20])
    return int(size_text, 16)


class _Connection(Protocol):
    """One HTTP/1.1 connection to a worker, one request at a time."""

    def __init__(self, agent: WorkerAgent, key: Key) -> None:
        self._agent = agent
        self.key = key
        #: Whether any byte of an answer came for the current request.
        self.answered = False
        # Lost, or being dropped: never handed out again, and what arrives on it is ignored.
        self.closed = False
        self._waiter: Deferred[IResponse] | None = None
        self._response: _Response | None = None
        # Bytes received and not yet parsed: _buffer[_start:]. A read that finds it empty is
        # parsed in place (most answers come in one read); bytes that must wait for more are
        # kept in a bytearray. What was parsed is dropped once per read (``_compact``).
        self._buffer: bytes | bytearray = b""
        self._start = 0
        # Where the search for the end of the current head or line resumes (``_find``).
        self._scanned = 0
        #: Informational responses received for the current request.
        self._informational = 0
        self._head_request = False
        self._reusable = False
        # Body framing: remaining Content-Length, or chunked state, or until close.
        self._remaining = 0
        self._chunked = False
        self._chunk_state = _SIZE
        self._until_close = False

    # Sending

    def send(self, data: bytes, head_request: bool, persistent: bool) -> Deferred[IResponse]:
        self.answered = False
        self._informational = 0
        self._waiter = Deferred(self._cancel)
        self._head_request = head_request
        self._reusable = persistent
        assert self.transport is not None
        self.transport.write(data)
        return self._waiter

    def _cancel(self, waiter: Deferred[IResponse]) -> None:
        if self._waiter is waiter:
            self._waiter = None  # cancel() itself answers it
        self.abandon()

    def abandon(self) -> None:
        """Drop the connection now (cancelled, timed out, or the body is not wanted)."""
        self._reusable = False
        if self.closed:
            return
        # connectionLost comes later (a reactor turn, for TCP): until then an idle connection
        # must not be taken from the pool, nor its late bytes read as an answer.
        self.closed = True
        self._agent.forget(self)
        if self.transport is not None:
            abort = getattr(self.transport, "abortConnection", None)
            if abort is not None:
                abort()
            else:
                self.transport.loseConnection()

    # Receiving

    def dataReceived(self, data: bytes) -> None:
        if self.closed:
            return
        if self._response is None and self._waiter is None:
            # Nothing asked for this: a server that talks out of turn cannot be reused.
            self.abandon()
            return
        self.answered = True
        response = self._response
        if not self._buffer and response is not None:
            # The bulk of a long body is passed on without a copy.
            if not self._chunked:
                self._body(data)
                return
            if self._chunk_state == _DATA and len(data) < self._remaining:
                self._remaining -= len(data)
                response.data(data)
                return
        if not self._buffer:
            self._buffer = data
        else:
            if not isinstance(self._buffer, bytearray):
                self._buffer = bytearray(self._buffer)
            self._buffer += data
        try:
            self._parse()
        except ProtocolError as error:
            self._fail(Failure(error))
        finally:
            self._compact()

    def _compact(self) -> None:
        # Once per read, so that every byte is moved a bounded number of times.
        if self.closed or self._start >= len(self._buffer):
            self._buffer = b""
            self._start = self._scanned = 0
        elif self._start:
            if isinstance(self._buffer, bytearray):
                del self._buffer[: self._start]
            else:
                self._buffer = self._buffer[self._start:]
            self._scanned = max(0, self._scanned - self._start)
            self._start = 0

    def _find(self, marker: bytes, start: int) -> int:
        """Where ``marker`` is at or after ``start`` in the buffer, or -1. A search resumes
        where the last one that failed stopped: a head or line that arrives a byte a read is
        searched once in all, not once per read."""
        found = self._buffer.find(marker, max(start, self._scanned - len(marker) + 1))
        if found == -1:
            self._scanned = len(self._buffer)
        return found

    def _parse(self) -> None:
        while self._start < len(self._buffer) and not self.closed:
            # (a body protocol may drop the connection)
            if self._response is None:
                if self._waiter is None:
                    # Bytes after a complete answer, unasked for: the connection is unusable.
                    self.abandon()
                    return
                if not self._parse_head():
                    return
            elif self._chunked:
                self._parse_chunks()
                return
            else:
                data = bytes(self._buffer[self._start:])
                self._start = len(self._buffer)
                self._body(data)
                return

    def _parse_head(self) -> bool:
        start = self._start
        end = self._find(b"\r\n\r\n", start)
        if end == -1 or end - start > MAX_HEAD:  # the same limit however the head arrives
            if len(self._buffer) - start > MAX_HEAD:
                raise ProtocolError("response headers longer than %d bytes" % MAX_HEAD)
            return False
        head = bytes(self._buffer[start:end])
        self._start = end + 4
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        version = parts[0]
        if (len(parts) < 2 or not version.startswith(b"HTTP/1.") or len(version) != 8
                or not version[7:8].isdigit()):
            raise ProtocolError("not an HTTP/1.x status line: %r" % lines[0][:100])
        if len(parts[1]) != 3 or not parts[1].isdigit():
            raise ProtocolError("bad status code %r" % parts[1][:20])
        code = int(parts[1])
        headers = Headers()
        length: int | None = None
        chunked = False
        encoded = False
        close = version == b"HTTP/1.0"
        previous: bytes | None = None
        for line in lines[1:]:
            if line[:1] in (b" ", b"\t") and previous is not None:
                continue  # obsolete line folding: nothing we read spans lines
            name, colon, value = line.partition(b":")
            if not colon or not name or name != name.strip():
                raise ProtocolError("bad header line %r" % line[:100])
            value = value.strip()
            headers.addRawHeader(name, value)
            previous = name
            lowered = name.lower()
            if lowered == b"content-length":
                if not value.isdigit() or (length is not None and int(value) != length):
                    raise ProtocolError("bad Content-Length %r" % value[:40])
                length = int(value)
            elif lowered == b"transfer-encoding":
                chunked = value.lower().rsplit(b",", 1)[-1].strip() == b"chunked"
                encoded = True
                if not chunked:
                    close = True  # an encoding we don't frame: read until close
            elif lowered == b"connection":
                if b"close" in (token.strip().lower() for token in value.split(b",")):
                    close = True
        if 100 <= code < 200:
            # Informational: the real answer follows, unless a worker sends them on and on.
            self._informational += 1
            if self._informational > MAX_INFORMATIONAL:
                raise ProtocolError(
                    "more than %d informational (1xx) responses" % MAX_INFORMATIONAL)
            return True
        if encoded:
            # Transfer-Encoding overrides Content-Length, before or after it; both at once may
            # be a smuggling attempt, so the connection is not trusted with another request
            # (RFC 9112 section 6.3).
            if length is not None:
                close = True
            length = None
        self._reusable = self._reusable and not close
        if self._head_request or code in _NO_BODY_CODES:
            length = 0
            chunked = False
        response = _Response(self, (b"HTTP", 1, int(version[7:8])), code,
                             parts[2] if len(parts) > 2 else b"", headers,
                             UNKNOWN_LENGTH if length is None else length)
        self._response = response
        self._chunked = chunked
        self._chunk_state = _SIZE
        if not chunked:
            if length is None:
                self._until_close = True
                self._reusable = False
            else:
                self._remaining = length
        waiter, self._waiter = self._waiter, None
        assert waiter is not None
        waiter.callback(response)
        if not chunked and length == 0:
            if self._start < len(self._buffer):
                self._reusable = False  # bytes after an answer without body: unasked for
            self._finish()
        return True

    def _body(self, data: bytes) -> None:
        """Bytes of a body framed by Content-Length or by the end of the connection."""
        response = self._response
        assert response is not None
        if self._until_close:
            response.data(data)
            return
        if len(data) < self._remaining:
            self._remaining -= len(data)
            response.data(data)
            return
        body, extra = data[: self._remaining], data[self._remaining:]
        self._remaining = 0
        if body:
            response.data(body)
        if extra:
            self._reusable = False  # more than was announced
        self._finish()

    def _parse_chunks(self) -> None:
        """Every piece of a chunked body the buffer holds. The data of all the chunks read
        goes to the response at once, so a body of tiny chunks costs one call, not one per
        chunk."""
        response = self._response
        assert response is not None
        buffer = self._buffer
        position, state, remaining = self._start, self._chunk_state, self._remaining
        pieces: list[bytes | bytearray] = []
        ended = False
        try:
            # One pass per chunk: each state falls through to the next when its bytes are
            # there; a state whose bytes are not all there yet breaks out to wait for more.
            while True:
                if state == _SIZE:
                    plain = _PLAIN_CHUNK_SIZE.match(buffer, position)
                    if plain is not None:
                        remaining = int(plain.group(1), 16)
                        position = plain.end()
                    else:
                        end = self._find(b"\r\n", position)
                        if end == -1:
                            if len(buffer) - position > MAX_CHUNK_LINE:
                                raise ProtocolError("chunk size line too long")
                            break
                        remaining = _chunk_size(bytes(buffer[position:end]))
                        position = end + 2
                    state = _DATA if remaining else _TRAILERS
                if state == _DATA:
                    piece = buffer[position:position + remaining]
                    pieces.append(piece)
                    position += len(piece)
                    remaining -= len(piece)
                    if remaining:
                        break
                    state = _CRLF
                if state == _CRLF:
                    if len(buffer) - position < 2:
                        break
                    if buffer[position:position + 2] != b"\r\n":
                        raise ProtocolError("chunk not followed by CRLF")
                    position += 2
                    state = _SIZE
                    continue
                # Trailers: header lines up to an empty line, ignored.
                end = self._find(b"\r\n", position)
                if end == -1:
                    if len(buffer) - position > MAX_HEAD:
                        raise ProtocolError("trailers too long")
                    break
                ended = end == position
                position = end + 2
                if ended:
                    break
        finally:
            # What was read before an error still reaches the body protocol, before the error.
            self._start, self._chunk_state, self._remaining = position, state, remaining
            if pieces:
                response.data(b"".join(pieces))
        if ended and not self.closed:  # (the body protocol may have dropped the connection)
            if position < len(buffer):
                self._reusable = False
            self._finish()

    def _finish(self) -> None:
        response, self._response = self._response, None
        assert response is not None
        # Back to the pool before the body ends: whoever reads it may ask again at once.
        reusable = self._reusable and not self.closed
        if reusable:
            self._agent.put(self)
        response.end(Failure(ResponseDone()))
        if not reusable:
            self.abandon()

    def _fail(self, reason: Failure) -> None:
        self._reusable = False
        waiter, self._waiter = self._waiter, None
        response, self._response = self._response, None
        if waiter is not None:
            waiter.errback(Failure(ResponseNeverReceived([reason])))
        elif response is not None:
            response.end(Failure(ResponseFailed([reason])))
        self.abandon()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed = True
        self._agent.forget(self)
        if self._response is not None and self._until_close and reason.check(ConnectionDone):
            response, self._response = self._response, None
            response.end(Failure(PotentialDataLoss()))
            return
        if self._waiter is not None or self._response is not None:
            self._fail(reason)


class _ConnectionFactory(Factory):
    noisy = False

    def __init__(self, agent: WorkerAgent, key: Key) -> None:
        self._agent = agent
        self._key = key

    def buildProtocol(self, addr: Any) -> _Connection:
        return _Connection(self._agent, self._key)


@implementer(IAgent)
class WorkerAgent:
    """Requests over pooled persistent connections (or one connection per request).

    At most ``max_idle_per_host`` idle connections are kept per host, each closed after
    ``idle_timeout`` seconds (``None``: never); connections beyond the limit linger
    ``linger`` seconds before closing, so that a burst of deliveries to one worker keeps
    reusing its connections.
    """

    def __init__(
        self, reactor: Any, endpoint_for: Callable[[bytes, bytes, int], IStreamClientEndpoint],
        *, persistent: bool, max_idle_per_host: int, idle_timeout: float | None,
        linger: float = 1.0,
    ) -> None:
        self._reactor = reactor
        self._endpoint_for = endpoint_for
        self.persistent = persistent
        self.max_idle_per_host = max_idle_per_host
        self.idle_timeout = idle_timeout
        self._linger = linger
        self._idle: dict[Key, deque[_Connection]] = {}
        self._timers: dict[_Connection, IDelayedCall] = {}
        self._closed = False

    def request(self, method: bytes, uri: bytes, headers: Headers | None = None,
                bodyProducer: IBodyProducer | None = None) -> Deferred[IResponse]:
        try:
            scheme, host, port, target = split_uri(uri)
        except (ProtocolError, ValueError) as error:
            return fail(error)
        key = (scheme, host, port)
        lines = [method, b" ", target, b" HTTP/1.1\r\nHost: ",
                 _host_header(scheme, host, port), b"\r\n"]
        if headers is not None:
            for name, values in headers.getAllRawHeaders():
                for value in values:
                    lines += [name, b": ", value, b"\r\n"]
        if not self.persistent:
            lines.append(b"Connection: close\r\n")
        head_request = method == b"HEAD"

        def send(body: bytes | None) -> Deferred[IResponse]:
            if body is None and method in _BODY_METHODS:
                body = b""  # treq gives no producer for an empty payload; say "0" anyway
            if body is not None:
                lines.append(b"Content-Length: %d\r\n\r\n" % len(body))
                lines.append(body)
            else:
                lines.append(b"\r\n")
            data = b"".join(lines)
            connection = self._take(key)
            if connection is None:
                return self._connect(key, data, head_request)
            sent = connection.send(data, head_request, self.persistent)
            return sent.addErrback(self._retry_if_stale, connection, key, data, head_request)

        return _body_of(bodyProducer).addCallback(send)

    def _connect(self, key: Key, data: bytes, head_request: bool) -> Deferred[IResponse]:
        try:
            endpoint = self._endpoint_for(*key)
        except Exception as error:
            return fail(error)
        connecting = endpoint.connect(_ConnectionFactory(self, key))

        def connected(connection: _Connection) -> Deferred[IResponse]:
            return connection.send(data, head_request, self.persistent)

        def not_connected(reason: Failure) -> Failure:
            if reason.check(CancelledError):
                return reason  # the caller's own cancel is not a failure to explain
            return Failure(ResponseNeverReceived([reason]))

        return connecting.addCallbacks(connected, not_connected)

    def _retry_if_stale(self, reason: Failure, connection: _Connection, key: Key, data: bytes,
                        head_request: bool) -> Any:
        # A kept connection the worker closed just as the request went out (its keep-alive
        # timeout ran out): nothing came back, so send it once more on a new connection, as
        # Go's client does. The worker may have seen it; delivery is at least once anyway.
        error = reason.value
        stale = isinstance(error, ResponseNeverReceived) and not connection.answered and all(
            cause.check(ConnectionDone, ConnectionLost) for cause in error.reasons)
        if not stale:
            return reason
        return self._connect(key, data, head_request)

    # The pool

    def _take(self, key: Key) -> _Connection | None:
        idle = self._idle.get(key)
        while idle:
            # The most recently used first, as Go's client does: it is the least likely to have
            # been closed by the server's own keep-alive timeout, and the connections beyond
            # max_idle_per_host (the last put back, lingering) go before the kept ones.
            connection = idle.pop()
            timer = self._timers.pop(connection, None)
            if timer is not None and timer.active():
                timer.cancel()
            if not connection.closed:
                return connection
        return None

    def put(self, connection: _Connection) -> None:
        """A connection whose exchange is over and that may be reused."""
        if self._closed:  # shutting down: an exchange that ended late is not kept
            connection.abandon()
            return
        idle = self._idle.setdefault(connection.key, deque())
        if len(idle) < self.max_idle_per_host:
            timeout = self.idle_timeout
        else:
            timeout = self._linger if self.idle_timeout is None else min(
                self._linger, self.idle_timeout)
        idle.append(connection)
        if timeout is not None:
            self._timers[connection] = self._reactor.callLater(timeout, connection.abandon)

    def forget(self, connection: _Connection) -> None:
        """A connection closed: it must not be handed out again."""
        timer = self._timers.pop(connection, None)
        if timer is not None and timer.active():
            timer.cancel()
        idle = self._idle.get(connection.key)
        if idle is not None:
            try:
                idle.remove(connection)
            except ValueError:
                pass
            if not idle:
                del self._idle[connection.key]

    def closeCachedConnections(self) -> Deferred[None]:
        """Close every idle connection, and those that become idle later (at shutdown)."""
        self._closed = True
        for idle in list(self._idle.values()):
            for connection in list(idle):
                connection.abandon()
        self._idle.clear()
        for timer in self._timers.values():
            if timer.active():
                timer.cancel()
        self._timers.clear()
        return succeed(None)
