"""The local channel between the processes of one node (``--processes N``, docs/performance.md,
"More than one core").

Process ``slot`` of ``count`` listens on a Linux abstract UNIX stream socket named after the
node's group (nothing is left in the file system however the processes end) and connects to
the others when it first has something to say. A message is a JSON object in a 32-bit
length-prefixed frame: a request names an ``op`` and, when it wants an answer, an ``id``;
the answer carries ``re`` (that id) and either ``value`` or ``error``. Only processes of the
same user may connect (``SO_PEERCRED``): abstract sockets have no file permissions.

Ops are registered by the composition root (``handle``): wake-ups of the dispatching
process, node-wide statistics, deliveries handed to other processes.
"""

from __future__ import annotations

import json
import os
import socket
import struct
from typing import Any, Callable, Mapping

from twisted.internet.defer import CancelledError, Deferred, maybeDeferred, succeed
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

Message = dict[str, Any]
Handler = Callable[[Message], Any]


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

    def send(self, message: Message) -> None:
        self.sendString(json.dumps(message, separators=(",", ":"),  # type: ignore[no-untyped-call]
                                   ensure_ascii=False).encode("utf-8"))

    def call(self, message: Message) -> Deferred[Any]:
        self._next_id += 1
        call_id = message["id"] = self._next_id
        answer: Deferred[Any] = Deferred(lambda _: self._forget(call_id))
        self._calls[call_id] = answer
        self.send(message)
        return answer

    def _forget(self, call_id: int) -> None:
        self._calls.pop(call_id, None)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.loseConnection()

    def stringReceived(self, data: bytes) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            self.close()
            return
        if "re" in message:
            answer = self._calls.pop(message["re"], None)
            if answer is not None:
                if "error" in message:
                    answer.errback(PeerError(message["error"]))
                else:
                    answer.callback(message.get("value"))
            return
        self._link._received(self, message)

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

    def tell(self, slot: int, message: Message) -> None:
        """Sends ``message`` to process ``slot`` without waiting for an answer; lost if
        that process is not there."""
        if self._stopped:
            return
        existing = self._outgoing.get(slot)
        if existing is not None and not existing.closed:
            existing.send(message)
            return
        self._connection(slot).addCallbacks(lambda c: c.send(message), lambda _: None)

    def call(self, slot: int, message: Message, timeout: float) -> Deferred[Any]:
        """Asks process ``slot``; the value its handler answered, or ``PeerError``."""
        return Deferred.fromCoroutine(self._call(slot, message, timeout))

    async def _call(self, slot: int, message: Message, timeout: float) -> Any:
        if self._stopped:
            raise PeerError("stopping", sent=False)
        connection = await self._connection(slot)
        answer = connection.call(message)
        timer: IDelayedCall = self._reactor.callLater(timeout, answer.cancel)
        try:
            return await answer
        except CancelledError:
            raise PeerError("process %d did not answer in %g s" % (slot + 1, timeout))
        finally:
            if timer.active():
                timer.cancel()

    # Receiving

    def _received(self, connection: _Connection, message: Message) -> None:
        if not connection._outgoing:
            self._incoming.add(connection)
        handler = self._handlers.get(str(message.get("op")))
        call_id = message.get("id")
        if handler is None:
            if call_id is not None:
                connection.send({"re": call_id, "error": "unknown op %r" % message.get("op")})
            return
        result = maybeDeferred(handler, message)
        if call_id is None:
            result.addErrback(lambda f: log.failure("Peer message {op} failed", f,
                                                    op=message.get("op")))
            return

        def answered(value: Any) -> None:
            if not connection.closed:
                connection.send({"re": call_id, "value": value})

        def failed(reason: Failure) -> None:
            if not connection.closed:
                connection.send({"re": call_id, "error": reason.getErrorMessage()})

        result.addCallbacks(answered, failed)

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
