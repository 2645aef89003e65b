"""The HTTP server around the Klein app: limits, keep-alive, draining and the access log.

Everything here happens before or after routing: the body size limit (413, checked before
the body is read), ``Connection: close`` when keep-alive is off or the server is
draining, and one access-log line per request.
"""

from __future__ import annotations

from typing import Any, Sequence
from urllib.parse import unquote_to_bytes as unquote

from twisted.internet.address import IPv6Address
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http, server
from twisted.web.resource import IResource

from fireworq import jsontext
from fireworq.logs import AccessLog

log = Logger()


def too_large_response(limit: int) -> bytes:
    body = jsontext.encode(
        {"code": 413, "error": "Request Entity Too Large",
         "message": "Request body exceeds %d bytes" % limit}
    )
    return (
        b"HTTP/1.1 413 Request Entity Too Large\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
    )


def peer_text(address: Any) -> str:
    host, port = getattr(address, "host", None), getattr(address, "port", None)
    if host is None:
        return str(getattr(address, "name", "") or "")
    if isinstance(address, IPv6Address):
        return "[%s]:%s" % (host, port)
    return "%s:%s" % (host, port)


class FireworqRequest(server.Request):
    site: FireworqSite
    _saved_content_type: Sequence[bytes] | None = None
    _received = 0
    _refused = False
    #: The scope of the request's API token, once checked (docs/api.md, Authentication).
    token_scope: str | None = None

    def __init__(self, channel: http.HTTPChannel, queued: object = None) -> None:
        server.Request.__init__(self, channel)
        self._site: FireworqSite = channel.site  # type: ignore[attr-defined]
        self.started = self._site.clock.seconds()

    # Body limit: an announced length is refused before any of the body is read, a
    # chunked body as soon as it crosses the limit; the connection is closed after a 413.

    def gotLength(self, length: int | None) -> None:
        limit = self._site.max_request_body
        if length is not None and length > limit:
            self._refuse()
            return
        server.Request.gotLength(self, length)

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            return
        self._received += len(data)
        if self._received > self._site.max_request_body:
            self._refuse()
            return
        server.Request.handleContentChunk(self, data)

    def _refuse(self) -> None:
        channel = self.channel
        site = self._site
        self._refused = True
        self.content = None
        transport = channel.transport
        assert transport is not None
        transport.write(too_large_response(site.max_request_body))
        channel.loseConnection()
        command = getattr(channel, "_command", b"")
        path = getattr(channel, "_path", b"")
        user_agent = self.requestHeaders.getRawHeaders(b"user-agent")
        site.access_log.log(
            peer_text(transport.getPeer()),
            None if not user_agent else user_agent[0].decode("utf-8", "replace"),
            command.decode("latin-1"), path.decode("latin-1"), 413,
            (site.clock.seconds() - self.started) * 1000, site.clock.seconds(),
        )

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self._refused:
            return
        # Twisted parses Content-Type with the email package on every request (costly) only
        # to find form bodies, which no route reads: hide it while the request is parsed.
        content_type = self.requestHeaders.getRawHeaders(b"content-type")
        if content_type is not None:
            self._saved_content_type = content_type
            self.requestHeaders.removeHeader(b"content-type")
        server.Request.requestReceived(self, command, path, version)

    def process(self) -> None:
        if self._saved_content_type is not None:
            self.requestHeaders.setRawHeaders(b"content-type", self._saved_content_type)
        site = self._site
        self.site = site
        if site.draining or not site.keep_alive:
            self.close_after_response()
        # server.Request.process, less what the API does not use: no Server header, the
        # Date header rendered once a second, and the root resource (a leaf) directly.
        self.responseHeaders.setRawHeaders(b"date", [site.http_date()])
        self.prepath = []
        self.postpath = list(map(unquote, self.path[1:].split(b"/")))
        self.sitepath: list[bytes] = []
        if self.path == b"*":
            self._handleStar()
            return
        try:
            self.render(site.resource)  # type: ignore[no-untyped-call]
        except BaseException:
            self.processingFailed(Failure())

    def _handleStar(self) -> None:
        # Twisted answers a "*" target itself (200 for OPTIONS, else a bare 405 with
        # "Allow: OPTIONS"); no route is named "*", so it gets the JSON 404 of any other path.
        server.Request.render(self, server.Site.getResourceFor(self.site, self))

    def processingFailed(self, reason: Failure) -> Failure:
        # Twisted's own answer is a text/html page; errors are JSON (docs/api.md, Errors).
        log.failure("Unexpected error answering {method} {uri}", reason,
                    method=self.method, uri=self.uri)
        body = jsontext.encode(
            {"code": 500, "error": "Internal Server Error",
             "message": "Unexpected server error; details are in the error log"}
        )
        if self.startedWriting:
            # Too late for a status: cut the response short rather than corrupt it.
            if self.channel is not None:
                self.channel.loseConnection()
            return reason
        self.setResponseCode(500)
        self.responseHeaders.setRawHeaders(b"content-type", [b"application/json"])
        self.responseHeaders.setRawHeaders(b"content-length", [b"%d" % len(body)])
        server.Request.write(self, body)
        server.Request.finish(self)
        return reason

    def close_after_response(self) -> None:
        if self.channel is not None:
            self.channel.persistent = False
        if not self.startedWriting:
            self.responseHeaders.setRawHeaders(b"connection", [b"close"])


class FireworqChannel(http.HTTPChannel):
    idle_since: float | None = None
    #: The client as the access log writes it; it does not change during a connection.
    peer = ""
    _host: Any = None

    def connectionMade(self) -> None:
        http.HTTPChannel.connectionMade(self)
        self.site.channels.add(self)  # type: ignore[attr-defined]
        if self.transport is not None:
            self.peer = peer_text(self.transport.getPeer())
            self._host = self.transport.getHost()

    def getHost(self) -> Any:
        # Every request asks (twisted.web.http.Request.__init__); it is a syscall each time.
        return self._host

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.site.channels.discard(self)  # type: ignore[attr-defined]
        http.HTTPChannel.connectionLost(self, reason)

    def checkPersistence(self, request: http.Request, version: bytes) -> bool:
        site: FireworqSite = self.site  # type: ignore[attr-defined]
        if site.draining or not site.keep_alive:
            request.responseHeaders.setRawHeaders(b"connection", [b"close"])
            return False
        persistent: bool = http.HTTPChannel.checkPersistence(self, request, version)
        return persistent


class FireworqSite(server.Site):
    """``Site`` with the request and channel above and the JSON access log."""

    requestFactory = FireworqRequest  # type: ignore[assignment]
    protocol = FireworqChannel  # type: ignore[assignment]
    noisy = False

    def __init__(
        self,
        resource: IResource,
        *,
        clock: IReactorTime,
        access_log: AccessLog,
        max_request_body: int,
        keep_alive: bool,
    ) -> None:
        # The clock also runs the channels' idle timeouts, so tests can see and drive them.
        server.Site.__init__(self, resource, reactor=clock)
        self.clock = clock
        self.access_log = access_log
        self.max_request_body = max_request_body
        self.keep_alive = keep_alive
        self.draining = False
        self.displayTracebacks = False
        self.channels: set[FireworqChannel] = set()
        self._date_second = -1
        self._date = b""

    def http_date(self) -> bytes:
        second = int(self.clock.seconds())
        if second != self._date_second:
            self._date_second, self._date = second, http.datetimeToString(second)
        return self._date

    def log(self, request: http.Request) -> None:
        now = self.clock.seconds()
        started = getattr(request, "started", now)
        user_agent = request.getHeader(b"user-agent")
        channel = request.channel
        self.access_log.log(
            channel.peer if isinstance(channel, FireworqChannel) else
            peer_text(request.getClientAddress()),
            None if user_agent is None else user_agent.decode("utf-8", "replace"),
            request.method.decode("latin-1"), request.uri.decode("latin-1"), request.code,
            (now - started) * 1000, now, getattr(request, "token_scope", None),
        )
