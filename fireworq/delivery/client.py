"""The HTTP client that deliveries go through (docs/worker-protocol.md, The request: connections,
TLS, limits)."""

from __future__ import annotations

import ipaddress
from http.client import HTTPResponse
from http.cookiejar import Cookie
from typing import Any
from urllib.request import Request

import attrs
from OpenSSL import SSL
from treq.client import HTTPClient
from treq.cookies import IndexableCookieJar
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    wrapClientTLS,
)
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from twisted.web.client import BrowserLikePolicyForHTTPS
from twisted.web.error import SchemeNotSupported
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from fireworq.delivery.agent import BytesProducer, WorkerAgent

__all__ = ["CONNECT_TIMEOUT", "TLS_HANDSHAKE_TIMEOUT", "DeliverySettings", "make_http_client"]

#: Seconds after which connecting to a worker is given up, whatever the job's timeout.
CONNECT_TIMEOUT = 30
#: Seconds after which a TLS handshake with a worker is given up, whatever the job's timeout.
TLS_HANDSHAKE_TIMEOUT = 10
# Bounds the endpoint cache against URLs naming ever new hosts.
_MAX_ENDPOINTS = 1000


@attrs.frozen
class DeliverySettings:
    user_agent: str
    """``User-Agent`` of every worker request (FIREWORQ_DISPATCH_USER_AGENT)."""
    keep_alive: bool
    """Reuse connections to workers (FIREWORQ_DISPATCH_KEEP_ALIVE)."""
    max_conns_per_host: int
    """Idle connections kept per host; 0 means 2 (FIREWORQ_DISPATCH_MAX_CONNS_PER_HOST)."""
    idle_conn_timeout: int
    """Seconds before an idle kept connection is closed; 0 means never."""
    max_response_body: int
    """Longest response body read, in bytes (FIREWORQ_DISPATCH_MAX_RESPONSE_BODY)."""


def _endpoint(reactor: Any, host: str, port: int) -> IStreamClientEndpoint:
    # HostnameEndpoint reports a refused connection only after its 0.3 s attempt delay,
    # even for a single address: an IP literal needs no name resolution nor racing.
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return HostnameEndpoint(reactor, host, port, timeout=CONNECT_TIMEOUT)
    if address.version == 6:
        return TCP6ClientEndpoint(reactor, str(address), port, timeout=CONNECT_TIMEOUT)
    return TCP4ClientEndpoint(reactor, str(address), port, timeout=CONNECT_TIMEOUT)


def make_http_client(
    reactor: Any,
    settings: DeliverySettings,
    *,
    handshake_clock: IReactorTime | None = None,
) -> tuple[HTTPClient, WorkerAgent]:
    """The client a Deliverer needs, and its agent (whose idle connections are closed on
    shutdown).

    ``reactor`` must provide TCP, time and name resolution.
    ``handshake_clock`` (default: the reactor) runs the TLS handshake deadlines.
    """
    # Without this policy wrapper a server that stalls the handshake would hold a job with
    # timeout 0 forever; the default policy checks certificates against the system's CAs.
    policy = _HandshakeDeadlinePolicy(
        BrowserLikePolicyForHTTPS(), handshake_clock or reactor, TLS_HANDSHAKE_TIMEOUT
    )
    # No proxy: HTTP_PROXY and friends are deliberately not used.
    agent = WorkerAgent(
        reactor, _Endpoints(reactor, policy).endpoint_for,
        persistent=settings.keep_alive,
        max_idle_per_host=settings.max_conns_per_host or 2,
        idle_timeout=settings.idle_conn_timeout or None,
    )
    client = HTTPClient(agent, cookiejar=_NoCookies(), data_to_body_producer=BytesProducer)
    return client, agent


@attrs.define
class _Endpoints:
    """The endpoints Agent would make, made once per scheme, host and port. Agent asks for one
    on every request, even when the pool has a connection ready, and building it costs an IDNA
    encoding of the host and, for https, a new TLS context: tens of µs a delivery."""

    _reactor: Any
    _policy: IPolicyForHTTPS
    _made: dict[tuple[bytes, bytes, int], IStreamClientEndpoint] = attrs.field(factory=dict)

    def endpoint_for(self, scheme: bytes, host: bytes, port: int) -> IStreamClientEndpoint:
        key = (scheme, host, port)
        endpoint = self._made.get(key)
        if endpoint is None:
            endpoint = _endpoint(self._reactor, host.decode("ascii"), port)
            if scheme == b"https":
                endpoint = wrapClientTLS(self._policy.creatorForNetloc(host, port), endpoint)
            elif scheme != b"http":
                raise SchemeNotSupported(f"unsupported scheme {scheme!r}")
            if len(self._made) >= _MAX_ENDPOINTS:
                self._made.clear()
            self._made[key] = endpoint
        return endpoint


class _NoCookies(IndexableCookieJar):
    """Go's client without a jar: cookies that workers set are never kept nor sent back.
    The no-op lookup also spares the standard cookie machinery on every request."""

    def add_cookie_header(self, request: Request) -> None:
        pass

    def extract_cookies(self, response: HTTPResponse, request: Request) -> None:
        pass

    def set_cookie(self, cookie: Cookie) -> None:
        pass


@implementer(IPolicyForHTTPS)
@attrs.frozen
class _HandshakeDeadlinePolicy:
    _policy: IPolicyForHTTPS
    _clock: IReactorTime
    _timeout: float

    def creatorForNetloc(self, hostname: bytes, port: int) -> IOpenSSLClientConnectionCreator:
        return _HandshakeDeadline(
            self._policy.creatorForNetloc(hostname, port), self._clock, self._timeout
        )


@implementer(IOpenSSLClientConnectionCreator)
@attrs.frozen
class _HandshakeDeadline:
    _creator: IOpenSSLClientConnectionCreator
    _clock: IReactorTime
    _timeout: float

    def clientConnectionForTLS(self, tlsProtocol: TLSMemoryBIOProtocol) -> SSL.Connection:
        connection = self._creator.clientConnectionForTLS(tlsProtocol)
        deadline = self._clock.callLater(
            self._timeout, _abort_handshake, tlsProtocol, self._timeout
        )

        def handshake_progress(_connection: SSL.Connection, where: int, _ret: int) -> None:
            if where & SSL.SSL_CB_HANDSHAKE_DONE and deadline.active():
                deadline.cancel()

        # Twisted verifies certificates in the verify callback; the info callback is free.
        connection.set_info_callback(handshake_progress)
        return connection


class TLSHandshakeTimeout(Exception):
    def __init__(self, timeout: float) -> None:
        super().__init__(f"TLS handshake not completed within {timeout:g} s")


def _abort_handshake(tls: TLSMemoryBIOProtocol, timeout: float) -> None:
    # A connection that failed or closed during the handshake is already gone.
    if tls.connected and not tls.disconnecting:
        # failVerification is TLSMemoryBIOProtocol's "abort with this reason".
        tls.failVerification(Failure(TLSHandshakeTimeout(timeout)))  # type: ignore[no-untyped-call]
