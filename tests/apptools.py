"""A harness for the HTTP API: the whole daemon in memory on a L{task.Clock}.

L{ApiHarness} wires what L{fireworq.service.FireworqService} wires (a L{MemoryStore} behind a
L{SwitchableStore}, L{MemoryLocks} under a L{QueueOwnership}, a L{QueueManager} with a L{FakeDeliverer}, the
L{FireworqAPI} and the L{FireworqSite}) from a configuration made by C{load_config}, and
offers two ways to talk to it:

  - L{ApiHarness.request}: raw HTTP/1.x bytes into a channel of the real site over a
    L{StringTransport}, the response parsed from what the site wrote (413, keep-alive, HEAD,
    raw paths and arbitrary methods and headers go through the real server);
  - L{ApiHarness.treq}: a L{StubTreq} over C{api.resource()} (StubTreq brings its own
    C{Site}, so the site-level behaviour is not seen through it).

Nothing touches the global reactor: every timer, the site's connection timeouts included, is
on the harness clock, and L{ApiHarness.stop} stops everything and checks that no call is left.
"""

from __future__ import annotations

import inspect
import io
import json
import os
import time
from typing import Any, Callable, Iterable, Mapping, Sequence

import attrs
from treq.testing import StubTreq
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from fireworq.access import AccessCheck
from fireworq.api.app import FireworqAPI
from fireworq.api.site import FireworqSite
from fireworq.cluster.memory import MemoryLocks
from fireworq.cluster.ownership import QueueOwnership
from fireworq.config import Config, load_config, settings
from fireworq.errors import StoreUnavailable
from fireworq.logs import AccessLog, LineWriter, QueueLog
from fireworq.model import Job, WorkerResult
from fireworq.queues import QueueDefaults, QueueManager
from fireworq.storage.memory import MemoryStore

#: 2024-11-28T10:40:00.25Z: exact in binary, so store times are exact ms.
START = 1732790400.25
START_MS = 1732790400250

SUCCESS = WorkerResult("success", 200, "sent")
FAILURE = WorkerResult("failure", 500, "boom")
PERMANENT = WorkerResult("permanent-failure", 400, "bad address")


def run_turns(clock: Clock) -> None:
    """Run every call due now, including those the calls schedule for now."""
    while any(call.getTime() <= clock.seconds() for call in clock.getDelayedCalls()):
        clock.advance(0)


def advance(clock: Clock, seconds: float) -> None:
    """Move the clock by C{seconds}, stopping at every delayed call on the way."""
    end = clock.seconds() + seconds
    while True:
        run_turns(clock)
        upcoming = [c.getTime() for c in clock.getDelayedCalls() if c.getTime() <= end]
        target = min(upcoming, default=end)
        if target > clock.seconds():
            clock.advance(target - clock.seconds())
        if target >= end:
            run_turns(clock)
            return


class FakeDeliverer:
    """A deliverer whose attempts wait until the test ends them, unless C{script} answers.

    Jobs of different queues may share ids, so pending attempts are kept in arrival order
    and found by job id and category.
    """

    def __init__(self) -> None:
        self.script: Callable[[Job], WorkerResult] | None = None
        self.pending: list[tuple[Job, Deferred[WorkerResult]]] = []
        self.delivered: list[Job] = []

    async def deliver(self, job: Job, queue: object = None) -> WorkerResult:
        self.delivered.append(job)
        if self.script is not None:
            return self.script(job)
        waiting: Deferred[WorkerResult] = Deferred()
        entry = (job, waiting)
        self.pending.append(entry)
        try:
            return await waiting
        finally:
            if entry in self.pending:
                self.pending.remove(entry)

    def finish(self, job_id: int, result: WorkerResult, category: str | None = None) -> None:
        for job, waiting in list(self.pending):
            if job.id == job_id and (category is None or job.category == category):
                self.pending.remove((job, waiting))
                waiting.callback(result)
                return
        raise AssertionError("no pending delivery of job %d" % job_id)

    def finish_all(self, result: WorkerResult) -> None:
        while self.pending:
            _, waiting = self.pending.pop(0)
            waiting.callback(result)


class SwitchableStore:
    """A L{MemoryStore} that can be made unavailable.

    While C{down}, every store call raises L{StoreUnavailable}; calls named in C{hang} never
    answer until L{release} (their Deferreds are cancellable, as a real driver's are); calls
    named in C{failing} raise L{StoreUnavailable} that many more times.
    """

    def __init__(self, clock: Clock) -> None:
        self.memory = MemoryStore(clock)
        self.down = False
        self.hang: set[str] = set()
        #: Calls named here raise an unexpected error (a bug, not an outage).
        self.broken: set[str] = set()
        self.failing: dict[str, int] = {}
        self.held: list[Deferred[Any]] = []
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.memory, name)
        if not inspect.iscoroutinefunction(method):
            return method

        async def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            if name in self.hang:
                held: Deferred[Any] = Deferred()
                self.held.append(held)
                await held
            if name in self.broken:
                raise RuntimeError("disk on fire")
            if self.failing.get(name):
                self.failing[name] -= 1
                raise StoreUnavailable("%s: lock wait timeout" % name)
            if self.down:
                raise StoreUnavailable("connection refused")
            return await method(*args, **kwargs)

        return call

    def release(self) -> None:
        """Held calls fail as if the store had gone away."""
        held, self.held = self.held, []
        for d in held:
            if not d.called:
                d.errback(StoreUnavailable("released"))

    def resume(self) -> None:
        """Held calls go on and reach the store."""
        held, self.held = self.held, []
        for d in held:
            if not d.called:
                d.callback(None)


@attrs.frozen
class RawResponse:
    """One HTTP response as the site wrote it."""

    version: bytes
    status: int
    reason: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    #: Whether the server closed (or was closing) the connection after it.
    closed: bool
    #: Everything the site wrote on the connection.
    raw: bytes

    def header_values(self, name: bytes) -> list[bytes]:
        return [value for key, value in self.headers if key.lower() == name.lower()]

    def header(self, name: bytes) -> bytes | None:
        values = self.header_values(name)
        assert len(values) <= 1, "header %r repeated: %r" % (name, values)
        return values[0] if values else None

    def json(self) -> Any:
        return json.loads(self.body)


class Incomplete(Exception):
    """The site wrote no complete response (yet)."""


def parse_response(data: bytes, head: bool = False) -> tuple[RawResponse, bytes]:
    """The first final response in C{data} (interim 1xx ones skipped), and what follows."""
    while data.startswith(b"HTTP/1.1 1"):
        end = data.find(b"\r\n\r\n")
        if end == -1:
            raise Incomplete(data)
        data = data[end + 4:]
    end = data.find(b"\r\n\r\n")
    if end == -1:
        raise Incomplete(data)
    lines = data[:end].split(b"\r\n")
    version, status, reason = (lines[0].split(b" ", 2) + [b""])[:3]
    headers = []
    for line in lines[1:]:
        key, colon, value = line.partition(b":")
        assert colon, "malformed header line %r" % (line,)
        headers.append((key, value.strip()))
    rest = data[end + 4:]
    lengths = [v for k, v in headers if k.lower() == b"content-length"]
    chunked = any(k.lower() == b"transfer-encoding" for k, v in headers)
    if head or status in (b"204", b"304"):
        body = b""
    elif lengths:
        length = int(lengths[0])
        if len(rest) < length:
            raise Incomplete(data)
        body, rest = rest[:length], rest[length:]
    elif chunked:
        body, rest = _dechunk(data, rest)
    else:
        body, rest = rest, b""
    response = RawResponse(version, int(status), reason, tuple(headers), body, False, data)
    return response, rest


def _dechunk(data: bytes, rest: bytes) -> tuple[bytes, bytes]:
    body = b""
    while True:
        line_end = rest.find(b"\r\n")
        if line_end == -1:
            raise Incomplete(data)
        size = int(rest[:line_end].split(b";")[0], 16)
        chunk_end = line_end + 2 + size
        if len(rest) < chunk_end + 2:
            raise Incomplete(data)
        body += rest[line_end + 2:chunk_end]
        rest = rest[chunk_end + 2:]
        if size == 0:
            return body, rest


def build_request(
    method: bytes | str,
    target: bytes | str,
    body: bytes | None = None,
    headers: Iterable[tuple[bytes | str, bytes | str]] = (),
    *,
    chunked: bool = False,
    chunk_size: int = 7,
    version: bytes = b"HTTP/1.1",
    content_length: bool = True,
    host: bytes | None = b"fireworq.test",
) -> bytes:
    """Raw request bytes; a body goes with C{Content-Length} or, C{chunked}, in chunks."""
    def raw(value: bytes | str) -> bytes:
        return value.encode("utf-8") if isinstance(value, str) else value

    lines = [raw(method) + b" " + raw(target) + b" " + version]
    if host is not None:
        lines.append(b"Host: " + host)
    lines += [raw(name) + b": " + raw(value) for name, value in headers]
    payload = b""
    if body is not None:
        if chunked:
            lines.append(b"Transfer-Encoding: chunked")
            for start in range(0, len(body), chunk_size):
                part = body[start:start + chunk_size]
                payload += b"%x\r\n%s\r\n" % (len(part), part)
            payload += b"0\r\n\r\n"
        else:
            if content_length:
                lines.append(b"Content-Length: %d" % len(body))
            payload = body
    return b"\r\n".join(lines) + b"\r\n\r\n" + payload


class RawConnection:
    """One client connection to the site over a L{StringTransport}."""

    def __init__(self, harness: ApiHarness, port: int) -> None:
        self._harness = harness
        self.transport = StringTransport(
            peerAddress=IPv4Address("TCP", "127.0.0.1", port),
            hostAddress=IPv4Address("TCP", "127.0.0.1", 8080),
        )
        self.protocol = harness.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", port))
        assert self.protocol is not None
        self.protocol.makeConnection(self.transport)
        self._read = 0
        self.lost = False

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def response(self, head: bool = False, max_wait: float = 10.0) -> RawResponse:
        """The next response, running the clock until it is complete."""
        clock = self._harness.clock
        deadline = clock.seconds() + max_wait
        while True:
            run_turns(clock)
            try:
                response, rest = parse_response(self.transport.value()[self._read:], head)
            except Incomplete:
                pending = [c.getTime() for c in clock.getDelayedCalls()]
                if self.transport.disconnecting or not pending or clock.seconds() >= deadline:
                    raise
                clock.advance(max(0.0, min(min(pending), deadline) - clock.seconds()))
                continue
            consumed = len(self.transport.value()) - self._read - len(rest)
            self._read += consumed
            return attrs.evolve(response, closed=bool(self.transport.disconnecting))

    def close(self) -> None:
        if not self.lost:
            self.lost = True
            self.protocol.connectionLost(Failure(ConnectionDone()))
            run_turns(self._harness.clock)


def utc() -> Callable[[], None]:
    """Render times in UTC; the returned callable restores the zone."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()

    def restore() -> None:
        if old is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old
        time.tzset()

    return restore


class ApiHarness:
    """The API of one in-memory node, started, on a clock at L{START}."""

    def __init__(self, overrides: Mapping[str, str] | None = None) -> None:
        options: dict[str, str | None] = {"driver": "in-memory"}
        options.update(overrides or {})
        self.config: Config = load_config(options, {})
        self.clock = Clock()
        self.clock.advance(START)
        self.store = SwitchableStore(self.clock)
        self.locks = MemoryLocks(self.store)  # type: ignore[arg-type]
        self.ownership = QueueOwnership(self.locks, self.clock)
        self.deliverer = FakeDeliverer()
        self.queue_stream = io.BytesIO()
        self.access_stream = io.BytesIO()
        self.queue_writer = LineWriter(self.clock, "", self.queue_stream)
        self.access_writer = LineWriter(self.clock, "", self.access_stream)
        config = self.config
        self.manager = QueueManager(
            clock=self.clock, store=self.store, ownership=self.ownership,  # type: ignore[arg-type]
            deliverer=self.deliverer,
            queue_log=QueueLog(self.queue_writer, self.clock, config.queue_log_tag,
                               config.queue_log_level),
            defaults=QueueDefaults(
                polling_interval=config.queue_default_polling_interval,
                max_workers=config.queue_default_max_workers,
                default_queue=config.queue_default,
            ),
            refresh_interval=config.config_refresh_interval / 1000.0,
            max_pending_pushes=config.max_pending_pushes,
        )
        self.api = FireworqAPI(
            clock=self.clock, store=self.store, manager=self.manager,  # type: ignore[arg-type]
            ownership=self.ownership, settings=settings(config),
            started_at=self.clock.seconds(),
            access=AccessCheck(config.all_api_tokens, metrics_public=config.metrics_public),
            destinations=config.destinations,
        )
        self.site = FireworqSite(
            self.api.resource(), clock=self.clock,
            access_log=AccessLog(self.access_writer, config.access_log_tag),
            max_request_body=config.max_request_body, keep_alive=config.keep_alive,
        )
        from twisted.internet import reactor

        # Only to check that nothing was scheduled on it: everything here runs on the clock.
        self._reactor: Any = reactor
        self._reactor_calls = set(self._reactor.getDelayedCalls())
        self._connections: list[RawConnection] = []
        self._next_port = 40000
        outcome: list[Any] = []
        Deferred.fromCoroutine(self.manager.start()).addBoth(outcome.append)
        run_turns(self.clock)
        assert outcome, "the queue manager did not start"
        if isinstance(outcome[0], Failure):
            outcome[0].raiseException()
        self._stub: StubTreq | None = None
        #: Sent as ``Authorization: Bearer`` by L{request} (and so by the set-up helpers)
        #: unless a request names its own ``token`` (None: no header).
        self.token: str | None = None

    # Raw HTTP

    def connect(self) -> RawConnection:
        self._next_port += 1
        connection = RawConnection(self, self._next_port)
        self._connections.append(connection)
        return connection

    def send(self, data: bytes, head: bool = False) -> RawResponse:
        """Send raw request bytes on a new connection; the response, then close it."""
        connection = self.connect()
        try:
            connection.send(data)
            return connection.response(head=head)
        finally:
            connection.close()

    def request(
        self,
        method: bytes | str,
        target: bytes | str,
        body: bytes | str | Any = None,
        headers: Sequence[tuple[bytes | str, bytes | str]] = (),
        **kwargs: Any,
    ) -> RawResponse:
        """One request on a new connection. A C{str} body is UTF-8; a non-bytes, non-str body
        is sent as compact JSON. C{token=...} overrides L{token} for this request."""
        token = kwargs.pop("token", self.token)
        if token is not None:
            headers = [*headers, (b"Authorization", b"Bearer " + token.encode("ascii"))]
        if body is not None and not isinstance(body, bytes):
            if isinstance(body, str):
                body = body.encode("utf-8")
            else:
                body = json.dumps(body, separators=(",", ":")).encode("utf-8")
        method_bytes = method.encode("ascii") if isinstance(method, str) else method
        return self.send(
            build_request(method_bytes, target, body, headers, **kwargs),
            head=method_bytes == b"HEAD",
        )

    def get(self, target: str, **kwargs: Any) -> RawResponse:
        return self.request("GET", target, **kwargs)

    def put(self, target: str, body: Any = None, **kwargs: Any) -> RawResponse:
        return self.request("PUT", target, body, **kwargs)

    def post(self, target: str, body: Any = None, **kwargs: Any) -> RawResponse:
        return self.request("POST", target, body, **kwargs)

    def delete(self, target: str, **kwargs: Any) -> RawResponse:
        return self.request("DELETE", target, **kwargs)

    # StubTreq

    @property
    def treq(self) -> StubTreq:
        if self._stub is None:
            self._stub = StubTreq(self.api.resource())
        return self._stub

    # Set-up helpers (through the API itself)

    def define_queue(self, name: str, **members: Any) -> Any:
        response = self.put("/queue/" + name, members)
        assert response.status == 200, response.body
        return response.json()

    def define_routing(self, category: str, queue_name: str) -> Any:
        response = self.put("/routing/" + category, {"queue_name": queue_name})
        assert response.status == 200, response.body
        return response.json()

    def push(self, category: str, **members: Any) -> Any:
        members.setdefault("url", "http://worker.internal:8000/send")
        response = self.post("/job/" + category, members)
        assert response.status == 200, response.body
        return response.json()

    def advance(self, seconds: float) -> None:
        advance(self.clock, seconds)

    def access_lines(self) -> list[dict[str, Any]]:
        self.access_writer.flush()
        return [json.loads(line) for line in self.access_stream.getvalue().splitlines()]

    # Lifetime

    def stop(self) -> None:
        """Stop everything started; fails if a call is left on the clock."""
        for connection in self._connections:
            connection.close()
        if self._stub is not None:
            self._stub.flush()
        self.store.hang.clear()
        self.store.broken.clear()
        self.store.failing.clear()
        self.store.release()
        self.store.down = False
        stopped = Deferred.fromCoroutine(self.manager.stop_dispatching(0))
        run_turns(self.clock)
        assert stopped.called, "deliveries did not stop"
        self.ownership.stop()
        self.manager.close()
        self.queue_writer.close()
        self.access_writer.close()
        run_turns(self.clock)
        left = self.clock.getDelayedCalls()
        assert not left, "calls left on the clock: %r" % (left,)
        leaked = set(self._reactor.getDelayedCalls()) - self._reactor_calls
        assert not leaked, "calls left on the global reactor: %r" % (leaked,)
