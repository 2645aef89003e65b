"""The local channel between the processes of one node (``--processes N``, docs/performance.md,
"More than one core").

Process ``slot`` of ``count`` listens on a Linux abstract UNIX stream socket named after the
node's group (nothing is left in the file system however the processes end) and connects to
the others when it first has something to say. A message is a ``marshal``-encoded tuple in
a 32-bit length-prefixed frame (marshal: several times cheaper than JSON, bytes as they
are, and it builds nothing but plain values): a request ``(op, id, body)``, with id 0 when
it wants no answer; an answer ``("", id, ok, value or error text)``. Only processes of the
same user may connect (``SO_PEERCRED``): abstract sockets have no file permissions, and
marshal is not meant for data from anyone else.

Ops are registered by the composition root (``handle``): wake-ups of the dispatching
process, node-wide statistics, deliveries handed to other processes.
"""

from __future__ import annotations

import marshal
import os
import socket
import struct
from typing import Any, Callable, Coroutine, Mapping

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Factory, connectionDone
from twisted.logger import Logger
from twisted.protocols.basic import Int32StringReceiver
from twisted.python.failure import Failure

log = Logger()

#: Set in a child's environment: ``<group>:<slot>:<count>`` of its node's peer link.
PEERS_ENV = "FIREWORQ_PEERS"
#: Frames up to this size: a delivery carries its job's payload.
MAX_FRAME = 1 << 30
#: Seconds to connect to another process before its calls fail.
CONNECT_TIMEOUT = 2.0

Handler = Callable[[Any], Any]


class PeerError(Exception):
    """A call to another process failed: it is not there, went away, or its handler failed.
    ``sent``: whether the request may have reached it."""

    def __init__(self, message: str, sent: bool = True) -> None:
        super().__init__(message)
        self.sent = sent


def peer_address(group: str, slot: int) -> str:
    return "\0fireworq-peers-%s-%d" % (group, slot)


def _same_user(transport: Any) -> bool:
    handle = transport.getHandle()
    try:
        creds = handle.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (AttributeError, OSError):
        return False
    _, uid, _ = struct.unpack("3i", creds)
    return bool(uid == os.getuid())


class _Connection(Int32StringReceiver):
    MAX_LENGTH = MAX_FRAME

    def __init__(self, link: PeerLink, outgoing: bool) -> None:
        self._link = link
        self._outgoing = outgoing
        self._next_id = 0
        self._calls: dict[int, Deferred[Any]] = {}
        self.closed = False

    def connectionMade(self) -> None:
        if not self._outgoing and not _same_user(self.transport):
            log.warn("Refused a peer connection from another user")
            self.close()

    def send(self, op: str, body: Any, call_id: int = 0) -> None:
        self.sendString(marshal.dumps((op, call_id, body)))  # type: ignore[no-untyped-call]

    def answer(self, call_id: int, ok: bool, value: Any) -> None:
        if not self.closed:
            self.sendString(marshal.dumps(("", call_id, ok, value)))  # type: ignore[no-untyped-call]

    def call(self, op: str, body: Any) -> Deferred[Any]:
        self._next_id += 1
        call_id = self._next_id
        answer: Deferred[Any] = Deferred(lambda _: self._forget(call_id))
        self._calls[call_id] = answer
        self.send(op, body, call_id)
        return answer

    def _forget(self, call_id: int) -> None:
        self._calls.pop(call_id, None)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.loseConnection()

    def stringReceived(self, data: bytes) -> None:
        try:
            message = marshal.loads(data)
            op, call_id = message[0], message[1]
        except (ValueError, EOFError, TypeError, IndexError, KeyError):
            self.close()
            return
        if op == "":
            answer = self._calls.pop(call_id, None)
            if answer is not None:
                if message[2]:
                    answer.callback(message[3])
                else:
                    answer.errback(PeerError(str(message[3])))
            return
        self._link._received(self, op, call_id, message[2])

    def lengthLimitExceeded(self, length: int) -> None:
        self.close()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed = True
        calls, self._calls = self._calls, {}
        for answer in calls.values():
            answer.errback(PeerError("the other process went away: %s"
                                     % reason.getErrorMessage()))
        self._link._lost(self)


class _Listener(Factory):
    noisy = False

    def __init__(self, link: PeerLink) -> None:
        self._link = link

    def buildProtocol(self, addr: Any) -> _Connection:
        return _Connection(self._link, outgoing=False)


class PeerLink:
    """This process's end of the node's local channel."""

    def __init__(self, reactor: Any, group: str, slot: int, count: int) -> None:
        self._reactor = reactor
        self.group = group
        self.slot = slot
        self.count = count
        self._handlers: dict[str, Handler] = {}
        self._outgoing: dict[int, _Connection] = {}
        self._connecting: dict[int, list[Deferred[_Connection]]] = {}
        self._incoming: set[_Connection] = set()
        self._port: Any = None
        self._stopped = False

    @classmethod
    def from_environment(cls, reactor: Any, environ: Mapping[str, str]) -> PeerLink | None:
        group, _, rest = environ.get(PEERS_ENV, "").partition(":")
        slot, _, count = rest.partition(":")
        if not group or not slot.isdigit() or not count.isdigit():
            return None
        return cls(reactor, group, int(slot), int(count))

    def environment_for(self, slot: int) -> str:
        return "%s:%d:%d" % (self.group, slot, self.count)

    @property
    def others(self) -> list[int]:
        return [slot for slot in range(self.count) if slot != self.slot]

    def handle(self, op: str, handler: Handler) -> None:
        """``handler(message)`` answers requests of ``op``: a value, a Deferred or a
        coroutine of one; what it returns must be JSON."""
        self._handlers[op] = handler

    def start(self) -> None:
        self._port = self._reactor.listenUNIX(peer_address(self.group, self.slot),
                                              _Listener(self))

    # Sending

    def _connection(self, slot: int) -> Deferred[_Connection]:
        existing = self._outgoing.get(slot)
        if existing is not None and not existing.closed:
            return succeed(existing)
        waiter: Deferred[_Connection] = Deferred()
        waiting = self._connecting.setdefault(slot, [])
        waiting.append(waiter)
        if len(waiting) == 1:
            self._connect(slot)
        return waiter

    def _connect(self, slot: int) -> None:
        link = self

        class _Outgoing(Factory):
            noisy = False

            def buildProtocol(self, addr: Any) -> _Connection:
                return _Connection(link, outgoing=True)

        def connected(connection: _Connection) -> None:
            self._outgoing[slot] = connection
            for waiter in self._connecting.pop(slot, []):
                waiter.callback(connection)

        def failed(reason: Failure) -> None:
            error = PeerError("cannot reach process %d: %s"
                              % (slot + 1, reason.getErrorMessage()), sent=False)
            for waiter in self._connecting.pop(slot, []):
                waiter.errback(error)

        endpoint = UNIXClientEndpoint(self._reactor, peer_address(self.group, slot),
                                      timeout=CONNECT_TIMEOUT)
        endpoint.connect(_Outgoing()).addCallbacks(connected, failed)

    def tell(self, slot: int, op: str, body: Any) -> None:
        """Sends ``op`` to process ``slot`` without waiting for an answer; lost if that
        process is not there."""
        if self._stopped:
            return
        existing = self._outgoing.get(slot)
        if existing is not None and not existing.closed:
            existing.send(op, body)
            return
        self._connection(slot).addCallbacks(lambda c: c.send(op, body), lambda _: None)

    def call(self, slot: int, op: str, body: Any, timeout: float) -> Deferred[Any]:
        """Asks process ``slot``: the value its handler answered, or ``PeerError`` (whose
        ``sent`` says whether the request may have reached it)."""
        if self._stopped:
            return fail(PeerError("stopping", sent=False))
        existing = self._outgoing.get(slot)
        if existing is not None and not existing.closed:
            return self._timed(existing.call(op, body), slot, timeout)
        return self._connection(slot).addCallback(
            lambda connection: self._timed(connection.call(op, body), slot, timeout))

    def _timed(self, answer: Deferred[Any], slot: int, timeout: float) -> Deferred[Any]:
        timer: IDelayedCall = self._reactor.callLater(timeout, answer.cancel)

        def settled(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            elif isinstance(result, Failure) and result.check(CancelledError):
                return Failure(PeerError("process %d did not answer in %g s"
                                         % (slot + 1, timeout)))
            return result

        return answer.addBoth(settled)

    # Receiving

    def _received(self, connection: _Connection, op: str, call_id: int, body: Any) -> None:
        if not connection._outgoing:
            self._incoming.add(connection)
        handler = self._handlers.get(op)
        if handler is None:
            if call_id:
                connection.answer(call_id, False, "unknown op %r" % (op,))
            return
        try:
            result = handler(body)
        except Exception:
            failure = Failure()
            if call_id:
                connection.answer(call_id, False, failure.getErrorMessage())
            else:
                log.failure("Peer message {op} failed", failure, op=op)
            return
        if isinstance(result, Coroutine):
            result = Deferred.fromCoroutine(result)
        if not isinstance(result, Deferred):
            if call_id:
                connection.answer(call_id, True, result)
            return
        if not call_id:
            result.addErrback(lambda f: log.failure("Peer message {op} failed", f, op=op))
            return
        result.addCallbacks(lambda value: connection.answer(call_id, True, value),
                            lambda reason: connection.answer(call_id, False,
                                                             reason.getErrorMessage()))

    def _lost(self, connection: _Connection) -> None:
        self._incoming.discard(connection)
        for slot, known in list(self._outgoing.items()):
            if known is connection:
                del self._outgoing[slot]

    async def stop(self) -> None:
        self._stopped = True
        for connection in [*self._outgoing.values(), *self._incoming]:
            connection.close()
        if self._port is not None:
            port, self._port = self._port, None
            stopped = port.stopListening()
            if stopped is not None:
                await stopped
