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
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    wrapClientTLS,
)
from twisted.internet.error import DNSLookupError
from twisted.internet.interfaces import (
    IAddress,
    IHostnameResolver,
    IHostResolution,
    IOpenSSLClientConnectionCreator,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IResolutionReceiver,
    IStreamClientEndpoint,
)
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from twisted.web.client import BrowserLikePolicyForHTTPS
from twisted.web.error import SchemeNotSupported
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from fireworq.delivery.agent import BytesProducer, WorkerAgent
from fireworq.destinations import DestinationDenied, DestinationPolicy, as_address

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
    destinations: DestinationPolicy | None = None,
    resolver: IHostnameResolver | None = None,
) -> tuple[HTTPClient, WorkerAgent]:
    """The client a Deliverer needs, and its agent (whose idle connections are closed on
    shutdown).

    ``reactor`` must provide TCP, time and name resolution.
    ``handshake_clock`` (default: the reactor) runs the TLS handshake deadlines.
    ``destinations``: where connections may go (docs/configuration.md, Delivery to workers);
    when it can deny anything, every connection resolves its host with ``resolver`` (default:
    the reactor's), checks the addresses and connects to a checked one.
    """
    # Without this policy wrapper a server that stalls the handshake would hold a job with
    # timeout 0 forever; the default policy checks certificates against the system's CAs.
    policy = _HandshakeDeadlinePolicy(
        BrowserLikePolicyForHTTPS(), handshake_clock or reactor, TLS_HANDSHAKE_TIMEOUT
    )
    # No proxy: HTTP_PROXY and friends are deliberately not used.
    agent = WorkerAgent(
        reactor,
        _Endpoints(reactor, policy, destinations or DestinationPolicy(),
                   resolver or getattr(reactor, "nameResolver", None)).endpoint_for,
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
    _destinations: DestinationPolicy
    #: None only for a reactor without name resolution, when destinations deny nothing.
    _resolver: IHostnameResolver | None
    _made: dict[tuple[bytes, bytes, int], IStreamClientEndpoint] = attrs.field(factory=dict)

    def endpoint_for(self, scheme: bytes, host: bytes, port: int) -> IStreamClientEndpoint:
        key = (scheme, host, port)
        endpoint = self._made.get(key)
        if endpoint is None:
            if scheme not in (b"http", b"https"):
                raise SchemeNotSupported(f"unsupported scheme {scheme!r}")
            text = host.decode("ascii")
            checked = self._destinations.active
            if checked and as_address(text) is not None:
                # A literal address is what is reached: checked once, here (a denied one is
                # not kept, so every attempt to reach it is refused the same way).
                self._destinations.check_resolved(text, [text])
                checked = False
            creator = self._policy.creatorForNetloc(host, port) if scheme == b"https" else None
            if checked:
                assert self._resolver is not None, "destination checks need a resolver"
                endpoint = _CheckedEndpoint(self._reactor, self._resolver, self._destinations,
                                            text, port, creator)
            else:
                endpoint = _endpoint(self._reactor, text, port)
                if creator is not None:
                    endpoint = wrapClientTLS(creator, endpoint)
            if len(self._made) >= _MAX_ENDPOINTS:
                self._made.clear()
            self._made[key] = endpoint
        return endpoint


@implementer(IStreamClientEndpoint)
@attrs.frozen
class _CheckedEndpoint:
    """For a host name: resolve, check every address against the destination policy, then
    connect to a checked address (never to the name again: what is checked is what is
    reached, so a name that resolves elsewhere the second time cannot slip through). The
    addresses are tried in the order the resolver gave them."""

    _reactor: Any
    _resolver: IHostnameResolver
    _destinations: DestinationPolicy
    _host: str
    _port: int
    _creator: IOpenSSLClientConnectionCreator | None

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        return Deferred.fromCoroutine(self._connect(factory))

    async def _connect(self, factory: IProtocolFactory) -> IProtocol:
        host = self._host
        if self._destinations.name_decision(host) is False:
            raise DestinationDenied(host.rstrip("."))
        resolving = _resolve(self._resolver, host, self._port)
        addresses = await resolving.addTimeout(CONNECT_TIMEOUT, self._reactor)
        checked = self._destinations.check_resolved(host, addresses)
        failure: Exception = DNSLookupError(f"no address for {host}")
        for address in dict.fromkeys(checked):
            endpoint = _endpoint(self._reactor, address, self._port)
            if self._creator is not None:
                endpoint = wrapClientTLS(self._creator, endpoint)
            try:
                protocol: IProtocol = await endpoint.connect(factory)
                return protocol
            except CancelledError:
                raise
            except Exception as e:
                failure = e
        raise failure


@implementer(IResolutionReceiver)
class _Addresses:
    def __init__(self, done: Deferred[list[str]]) -> None:
        self._done = done
        self._addresses: list[str] = []

    def resolutionBegan(self, resolutionInProgress: IHostResolution) -> None:
        pass

    def addressResolved(self, address: IAddress) -> None:
        host = getattr(address, "host", None)
        if isinstance(host, str):
            self._addresses.append(host)

    def resolutionComplete(self) -> None:
        if not self._done.called:
            self._done.callback(self._addresses)


def _resolve(resolver: IHostnameResolver, host: str, port: int) -> Deferred[list[str]]:
    """The addresses ``host`` resolves to (a late answer after a cancel is ignored)."""
    done: Deferred[list[str]] = Deferred(lambda _: None)
    resolver.resolveHostName(_Addresses(done), host, port)
    return done


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
