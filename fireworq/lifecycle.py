"""Process lifetime: where to listen, signals, and draining API connections at shutdown."""

from __future__ import annotations

import fcntl
import gc
import os
import signal
import socket
import stat
import sys
import termios
from types import FrameType
from typing import Any, Callable, Sequence

from twisted.internet import tcp, unix
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.interfaces import (
    IListeningPort,
    IReactorTime,
    IStreamServerEndpoint,
)
from twisted.internet.task import deferLater
from twisted.logger import Logger

from fireworq.api.site import FireworqChannel, FireworqSite
from fireworq.config import Config
from fireworq.inherited import InheritedSocket

log = Logger()

#: While draining, an idle keep-alive connection is closed once idle for this long; a
#: request a client already sent on it gets its answer (with ``Connection: close``) first.
IDLE_CLOSE_AFTER = 0.5
DRAIN_STEP = 0.02


async def listen(
    reactor: Any, config: Config, factory: Any, sockets: Sequence[InheritedSocket]
) -> list[IListeningPort]:
    """Serve on the inherited sockets when there are any (systemd, Server::Starter),
    else on ``bind``."""
    if not sockets:
        host, port = config.bind_host, config.bind_port
        endpoint: IStreamServerEndpoint
        if ":" in host:
            endpoint = TCP6ServerEndpoint(reactor, port, backlog=1024, interface=host)
        else:
            endpoint = TCP4ServerEndpoint(reactor, port, backlog=1024, interface=host)
        return [await endpoint.listen(factory)]  # type: ignore[no-untyped-call]
    ports = []
    for inherited in sockets:
        probe = socket.socket(fileno=inherited.fd)
        family = probe.family
        probe.detach()
        os.set_blocking(inherited.fd, False)  # inherited sockets usually come blocking
        if family == socket.AF_UNIX:
            port = _AdoptedUNIXPort._fromListeningDescriptor(  # type: ignore[no-untyped-call]
                reactor, inherited.fd, factory)
            port.startListening()
            ports.append(port)
        else:
            ports.append(reactor.adoptStreamPort(inherited.fd, family, factory))
        # The port listens on a duplicate; closing ours leaves it the only one here, so
        # stopListening() really lets go (the supervisor keeps its own copy).
        os.close(inherited.fd)
        log.info("Serving on the inherited socket {name}", name=inherited.name)
    return ports


class _AdoptedUNIXPort(unix.Port):
    """A unix socket handed down by a supervisor: its file belongs to the supervisor.

    Twisted would make the file world-writable on start and delete it on stop, which breaks
    the supervisor's SocketMode and the next generation listening on the same path.
    """

    def startListening(self) -> None:
        path = self._bindPath
        if isinstance(path, (bytes, str)) and path[:1] not in (b"\0", "\0"):
            self.mode = stat.S_IMODE(os.stat(path).st_mode)  # so Twisted's chmod is a no-op
        unix.Port.startListening(self)

    # shutdown() would end the socket for the other generations sharing it (Twisted's
    # adopted TCP ports skip it too).
    _shouldShutdown = False

    def connectionLost(self, reason: Any) -> None:
        tcp.Port.connectionLost(self, reason)  # without unlinking the path


async def drain_connections(site: FireworqSite, clock: IReactorTime, deadline: float) -> None:
    """Answer the requests in progress with ``Connection: close``, then close every
    connection; gives up at ``deadline``."""
    site.draining = True
    while site.channels and clock.seconds() < deadline:
        now = clock.seconds()
        for channel in list(site.channels):
            if channel.requests:
                channel.idle_since = None
                for request in channel.requests:
                    request.close_after_response()
            elif channel.idle_since is None or receiving(channel):
                channel.idle_since = now
            elif now - channel.idle_since >= IDLE_CLOSE_AFTER:
                channel.loseConnection()  # type: ignore[no-untyped-call]
        await deferLater(clock, DRAIN_STEP, lambda: None)
    for channel in list(site.channels):
        channel.transport.abortConnection()  # type: ignore[union-attr]


def receiving(channel: FireworqChannel) -> bool:
    """Whether a request has begun to arrive on a connection without a request yet: the
    start of its first line read (a slow client), or bytes still waiting in the socket that
    the reactor has not read (it was busy, or the process starved). Closing the connection
    now would lose that request."""
    # LineReceiver keeps what it read of a line that is not complete in _buffer.
    return bool(getattr(channel, "_buffer", b"")) or unread_bytes(channel.transport) > 0


def unread_bytes(transport: Any) -> int:
    """How many received bytes wait in a connection's socket (0 when that cannot be told)."""
    get_handle = getattr(transport, "getHandle", None)
    if get_handle is None:
        return 0
    try:
        waiting = bytearray(4)
        fcntl.ioctl(get_handle().fileno(), termios.FIONREAD, waiting)
    except (OSError, ValueError, AttributeError):
        return 0
    return int.from_bytes(waiting, sys.byteorder)


async def within(clock: IReactorTime, waited: Deferred[Any], deadline: float) -> bool:
    """Waits for ``waited`` until ``deadline``: whether it fired in time (it is left
    running otherwise)."""
    expired = Deferred[None]()
    timer = clock.callLater(max(0.0, deadline - clock.seconds()), expired.callback, None)
    fired = await DeferredList([waited, expired], fireOnOneCallback=True, consumeErrors=True)
    if timer.active():
        timer.cancel()
    return bool(fired[1] == 0)


def tune_garbage_collector() -> None:
    """Every request allocates thousands of objects, and CPython's cyclic collector ran
    every 700 allocations, scanning the start-up objects too (4 % of a push). Objects live
    on: reference counting frees nearly all of them; the collector now runs far less often
    and skips what exists at start."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


class SignalHandling:
    """SIGTERM, SIGINT and SIGHUP stop gracefully, a second one at once; SIGUSR1 reopens
    the log files. Handlers only hand over to the reactor thread."""

    def __init__(self, reactor: Any, reopen_logs: Callable[[], None]) -> None:
        self._reactor = reactor
        self._reopen_logs = reopen_logs
        self._stopping = False

    def install(self) -> None:
        for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(number, self._on_stop_signal)
        signal.signal(signal.SIGUSR1, self._on_reopen_signal)

    def _on_stop_signal(self, number: int, frame: FrameType | None) -> None:
        if self._stopping:
            sys.__stderr__.write("fireworq: second signal, stopping at once\n")  # type: ignore[union-attr]
            os._exit(1)
        self._stopping = True
        self._reactor.callFromThread(self._stop, number)

    def _stop(self, number: int) -> None:
        log.info("Received {signal}; stopping gracefully", signal=signal.Signals(number).name)
        if self._reactor.running:
            self._reactor.stop()

    def _on_reopen_signal(self, number: int, frame: FrameType | None) -> None:
        self._reactor.callFromThread(self._reopen_logs)
