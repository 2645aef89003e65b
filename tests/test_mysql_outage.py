"""The database goes away under load and comes back (docs/operations.md, Health and readiness
checks).

The daemon reaches MariaDB through a TCP proxy run by the test (L{Proxy}), which can:

* ``refuse``: close its listening socket (new connections are refused) and reset every
  connection in progress, as when the server or its host restarts;
* ``hang``: keep every connection open but stop forwarding in both directions (new
  connections are accepted and held), as when the server or the network stalls. Nothing
  answers; only timeouts end the daemon's waits.

Under a push load (a few clients pushing continuously) and a dispatch load (worker up), the
proxy is cut for about 5 s, then restored. Then:

* nothing acknowledged is lost: every job answered 200 is delivered at least once, and the
  daemon's queue log completes that very id with that payload (so no 200 was given for a job
  that was not stored);
* pushes that cannot be stored are answered 503 with ``Retry-After: 1`` and the JSON error
  body whose message starts with ``Store unavailable: ``; nothing else but 200 and 503;
* ``/readyz`` answers 503 during the outage;
* service is back within 5 s of the restore: the first push answered 200, the first
  ``/readyz`` 200 and the first delivery, each counted from requests made after the restore.

The hang test gives the daemon short MySQL timeouts in its DSN
(``?timeout=2s&readTimeout=3s&writeTimeout=3s``), so that its waits on the silent proxy end in
3 s instead of the daemon's defaults (10 s on the pools, 5 s on the grab/lock connection) and
the test stays short. The refuse test keeps the defaults: refused and reset connections fail
at once.

Each test prints an ``OUTAGE refuse: ...`` / ``OUTAGE hang: ...`` line with the figures.
"""

from __future__ import annotations

import itertools
import json
import socket
import struct
from collections import Counter
from typing import Any, Callable

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ClientFactory, Factory, Protocol
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

import mysqltools
from e2e import (
    Daemon,
    Reply,
    Worker,
    always,
    asyncCleanup,
    eventually,
    gather,
    now,
    reactor,
    sleep,
    slow,
)

QUEUE = "outage"
CATEGORY = "outage_cat"
OUTAGE = 5.0  # seconds the proxy stays cut
RECOVERY_LIMIT = 5.0  # service back within this after the restore
PUSH_CLIENTS = 4
PUSH_PAUSE = 0.02  # between two pushes of one client
PROBE_PAUSE = 0.1  # between two /readyz probes
CLIENT_TIMEOUT = 20.0
HANG_DSN_PARAMS = "?timeout=2s&readTimeout=3s&writeTimeout=3s"


# --- the proxy -------------------------------------------------------------------------------


class _Upstream(Protocol):
    """The proxy's connection to MariaDB, for one daemon connection."""

    transport: Any

    def __init__(self, downstream: _Downstream) -> None:
        self.downstream = downstream

    def connectionMade(self) -> None:
        down = self.downstream
        if down.closed:
            self.transport.loseConnection()
            return
        down.upstream = self
        self.transport.write(b"".join(down.buffer))
        down.buffer = []
        if down.proxy.mode == "hang":
            self.transport.pauseProducing()

    def dataReceived(self, data: bytes) -> None:
        self.downstream.transport.write(data)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.downstream.proxy.upstreams.discard(self)
        self.downstream.transport.loseConnection()


class _UpstreamFactory(ClientFactory):
    def __init__(self, downstream: _Downstream) -> None:
        self.downstream = downstream
        self.noisy = False

    def buildProtocol(self, addr: Any) -> _Upstream:
        protocol = _Upstream(self.downstream)
        self.downstream.proxy.upstreams.add(protocol)
        return protocol

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        self.downstream.transport.loseConnection()


class _Downstream(Protocol):
    """A connection from the daemon to the proxy."""

    transport: Any

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.upstream: _Upstream | None = None
        self.buffer: list[bytes] = []
        self.closed = False
        self.held = False

    def connectionMade(self) -> None:
        self.proxy.downstreams.add(self)
        if self.proxy.mode == "hang":
            # Accepted, then silence: connected upstream only when the proxy is restored.
            self.held = True
            self.transport.pauseProducing()
        else:
            self.connect_upstream()

    def connect_upstream(self) -> None:
        self.held = False
        self.proxy.connect(_UpstreamFactory(self))

    def dataReceived(self, data: bytes) -> None:
        if self.upstream is None:
            self.buffer.append(data)
        else:
            self.upstream.transport.write(data)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.closed = True
        self.proxy.downstreams.discard(self)
        if self.upstream is not None:
            self.upstream.transport.loseConnection()


def _reset(transport: Any) -> None:
    """Close with a TCP RST (SO_LINGER 0), not a FIN."""
    try:
        transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                         struct.pack("ii", 1, 0))
    except OSError:
        pass
    transport.abortConnection()


class Proxy:
    """A TCP proxy on 127.0.0.1 to the test's MariaDB; ``mode`` is pass, refuse or hang."""

    def __init__(self) -> None:
        dsn = mysqltools.require_mysql()
        if dsn.network == "unix":
            path = dsn.socket_path
            self.connect: Callable[[ClientFactory], Any] = (
                lambda factory: reactor.connectUNIX(path, factory))
        else:
            host, port = dsn.host, dsn.port
            self.connect = lambda factory: reactor.connectTCP(host, port, factory)
        self.mode = "pass"
        self.port = 0
        self.downstreams: set[_Downstream] = set()
        self.upstreams: set[_Upstream] = set()
        self._listening: Any = None
        self._factory = Factory.forProtocol(lambda: _Downstream(self))
        self._factory.noisy = False

    @classmethod
    def start(cls, case: TestCase) -> Proxy:
        proxy = cls()
        proxy._listen()
        asyncCleanup(case, proxy.close)
        return proxy

    def _listen(self) -> None:
        self._listening = reactor.listenTCP(self.port, self._factory, interface="127.0.0.1")
        self.port = self._listening.getHost().port

    def dsn(self, database: str, params: str = "") -> str:
        """A DSN for ``database`` through the proxy."""
        dsn = mysqltools.server_dsn()
        user = dsn.user or ""
        credentials = f"{user}:{dsn.password}@" if dsn.password else f"{user}@"
        return f"{credentials}tcp(127.0.0.1:{self.port})/{database}{params}"

    async def refuse(self) -> None:
        self.mode = "refuse"
        listening, self._listening = self._listening, None
        await listening.stopListening()
        for down in list(self.downstreams):
            _reset(down.transport)
        for up in list(self.upstreams):
            _reset(up.transport)

    def hang(self) -> None:
        self.mode = "hang"
        for down in self.downstreams:
            down.transport.pauseProducing()
        for up in self.upstreams:
            up.transport.pauseProducing()

    def restore(self) -> None:
        if self.mode == "refuse":
            self._listen()
        elif self.mode == "hang":
            for up in self.upstreams:
                up.transport.resumeProducing()
            for down in list(self.downstreams):
                down.transport.resumeProducing()
                if down.held:
                    down.connect_upstream()
        self.mode = "pass"

    async def close(self) -> None:
        if self._listening is not None:
            listening, self._listening = self._listening, None
            await listening.stopListening()
        for protocol in [*self.downstreams, *self.upstreams]:
            protocol.transport.abortConnection()  # type: ignore[union-attr]

        async def closed() -> bool:
            return not self.downstreams and not self.upstreams
        await eventually(closed, timeout=5, step=0.01, what="proxy connections to close")


# --- the load --------------------------------------------------------------------------------


@attrs.frozen
class Outcome:
    """One request of the load: sent at ``sent``; ``reply`` None when it got no answer."""

    n: int
    sent: float
    reply: Reply | None
    error: str | None = None

    @property
    def code(self) -> int | None:
        return None if self.reply is None else self.reply.code


class OutageTests(TestCase):
    def setUp(self) -> Deferred[None]:  # type: ignore[override]
        return Deferred.fromCoroutine(self._setUp())

    async def _setUp(self) -> None:
        self.database = mysqltools.create_database("fwoutage")
        self.addCleanup(mysqltools.drop_database, self.database)
        self.proxy = Proxy.start(self)
        self.worker = await Worker.start(self, always(slow(0.005)))

    async def run_outage(self, label: str, dsn_params: str = "") -> None:
        daemon = await Daemon.start(self, "mysql", [
            f"--mysql-dsn={self.proxy.dsn(self.database, dsn_params)}",
        ])
        await daemon.api.put_queue(QUEUE, max_workers=10, polling_interval=100)
        await daemon.api.put_routing(CATEGORY, QUEUE)
        api = daemon.api

        pushes: list[Outcome] = []
        probes: list[Outcome] = []
        running = [True]
        numbers = itertools.count()

        async def pusher() -> None:
            while running[0]:
                n = next(numbers)
                sent = now()
                try:
                    reply = await api.request(
                        "POST", f"/job/{CATEGORY}",
                        json.dumps({"url": self.worker.url(f"/o/{n}"), "payload": {"n": n}}),
                        timeout=CLIENT_TIMEOUT)
                    pushes.append(Outcome(n, sent, reply))
                except Exception as e:
                    pushes.append(Outcome(n, sent, None, repr(e)))
                await sleep(PUSH_PAUSE)

        async def prober() -> None:
            while running[0]:
                sent = now()
                try:
                    probes.append(Outcome(-1, sent, await api.request(
                        "GET", "/readyz", timeout=CLIENT_TIMEOUT)))
                except Exception as e:
                    probes.append(Outcome(-1, sent, None, repr(e)))
                await sleep(PROBE_PAUSE)

        load = Deferred.fromCoroutine(gather([pusher() for _ in range(PUSH_CLIENTS)]
                                             + [prober()]))
        try:
            # Healthy first: pushes answered and jobs delivered.
            await self.worker.wait_for(50, timeout=20)

            cut = now()
            if label == "refuse":
                await self.proxy.refuse()
            else:
                self.proxy.hang()

            async def readyz_down() -> bool:
                return any(p.sent >= cut and p.code == 503 for p in probes)
            await eventually(readyz_down, timeout=OUTAGE + 2, what="/readyz 503 in the outage")
            await self.check_endpoints_in_outage(daemon, label)
            await sleep(max(0.0, cut + OUTAGE - now()))
            restored = now()
            self.proxy.restore()

            def first(outcomes: list[Outcome], code: int) -> Outcome | None:
                after = [o for o in outcomes if o.sent >= restored and o.code == code]
                return min(after, key=lambda o: o.reply.time) if after else None  # type: ignore[union-attr]

            async def back() -> bool:
                delivered = any(r.time >= restored for r in self.worker.received)
                return bool(first(pushes, 200) and first(probes, 200) and delivered)
            await eventually(back, timeout=RECOVERY_LIMIT + 10, what="service after the restore")

            # A little more load after the recovery, then stop it.
            async def pushes_again() -> bool:
                return sum(1 for p in pushes if p.sent >= restored and p.code == 200) >= 40
            await eventually(pushes_again, timeout=10, what="40 pushes after the restore")
        finally:
            running[0] = False
            await load

        # -- everything acknowledged is delivered, as the very job that was acknowledged
        acknowledged = {p.n: p.reply.json["id"] for p in pushes if p.code == 200}  # type: ignore[union-attr]

        async def all_delivered() -> bool:
            return acknowledged.keys() <= {r.json["n"] for r in self.worker.received}
        try:
            await eventually(all_delivered, timeout=30, step=0.1, what="every acknowledged job")
        except AssertionError:
            pass  # reported by the lost assertion below
        counts = Counter(r.json["n"] for r in self.worker.received)
        lost = sorted(acknowledged.keys() - counts.keys())

        async def completes_logged() -> bool:
            ids = {line["id"] for line in daemon.queue_log(action="complete")}
            return set(acknowledged.values()) <= ids
        await eventually(completes_logged, timeout=10, what="complete lines of every job")
        completed: dict[int, set[int]] = {}
        for line in daemon.queue_log(action="complete"):
            completed.setdefault(line["id"], set()).add(json.loads(line["payload"])["n"])
        mismatched = {n: job_id for n, job_id in acknowledged.items()
                      if completed.get(job_id) != {n}}

        # -- what the failed pushes were answered
        unavailable = [p for p in pushes if p.code == 503]
        for p in unavailable:
            assert p.reply is not None
            self.assertEqual(p.reply.headers.get("retry-after"), ["1"], p)
            body = p.reply.json
            self.assertEqual((body["code"], body["error"]), (503, "Service Unavailable"), body)
            self.assertTrue(body["message"].startswith("Store unavailable: "), body)
        others = Counter(p.code for p in pushes if p.code not in (200, 503))
        unanswered = [p for p in pushes if p.reply is None]

        # -- readiness
        down_probes = [p for p in probes if cut <= p.sent and p.reply is not None
                       and p.reply.time < restored]
        for p in down_probes:
            self.assertEqual(p.code, 503, p)
            assert p.reply is not None
            self.assertEqual(p.reply.headers.get("retry-after"), ["1"])
            self.assertTrue(p.reply.json["message"].startswith("Store unavailable: "), p.reply)

        push_back = first(pushes, 200)
        ready_back = first(probes, 200)
        assert push_back is not None and push_back.reply is not None
        assert ready_back is not None and ready_back.reply is not None
        delivery_back = min(r.time for r in self.worker.received if r.time >= restored)
        push_recovery = push_back.reply.time - restored
        ready_recovery = ready_back.reply.time - restored
        delivery_recovery = delivery_back - restored
        during = [p for p in pushes if cut <= p.sent < restored]
        print(f"\nOUTAGE {label}: cut={restored - cut:.1f}s pushes={len(pushes)}"
              f" ok={len(acknowledged)} 503={len(unavailable)}"
              f" 503_sent_during_outage={sum(1 for p in during if p.code == 503)}"
              f" 200_sent_during_outage={sum(1 for p in during if p.code == 200)}"
              f" other={dict(others)} unanswered={len(unanswered)}"
              f" readyz_503={sum(1 for p in probes if p.code == 503)}"
              f" push_back={push_recovery:.2f}s readyz_back={ready_recovery:.2f}s"
              f" delivery_back={delivery_recovery:.2f}s lost={len(lost)}"
              f" duplicates={sum(c - 1 for c in counts.values())}"
              f" delivered_unacknowledged={len(counts.keys() - acknowledged.keys())}"
              f" slowest_push={max(p.reply.time - p.sent for p in pushes if p.reply):.2f}s"
              f" dsn_params={dsn_params or '(defaults)'}")
        self.assertEqual(lost, [])
        self.assertEqual(mismatched, {})
        self.assertEqual(others, Counter(), "answers other than 200 and 503")
        self.assertEqual(unanswered, [], "pushes without an answer")
        self.assertTrue(unavailable, "no push was refused during the outage")
        self.assertTrue(down_probes, "no /readyz answer during the outage")
        self.assertLessEqual(push_recovery, RECOVERY_LIMIT)
        self.assertLessEqual(ready_recovery, RECOVERY_LIMIT)
        self.assertLessEqual(delivery_recovery, RECOVERY_LIMIT)
        await eventually(lambda: self.queue_empty(daemon), timeout=15,
                         what="the queue to empty")
        self.assertEqual(await api.failed(QUEUE), [])

    async def check_endpoints_in_outage(self, daemon: Daemon, label: str) -> None:
        """docs/operations.md, Health and readiness checks: what needs no store keeps
        answering; with connections refused, every endpoint that needs the store answers 503 at
        once (with a silent store they answer only when their waits time out, so they are not
        checked then)."""
        api = daemon.api
        for path in ("/healthz", "/queues/stats", f"/queue/{QUEUE}/stats"):
            reply = await api.request("GET", path, timeout=2)
            self.assertEqual(reply.code, 200, (path, reply))
        if label != "refuse":
            return
        for method, path, body in [
            ("GET", "/queues", None), ("GET", f"/queue/{QUEUE}", None),
            ("DELETE", "/queue/no_such_queue", None), ("GET", "/routings", None),
            ("PUT", "/routing/other_cat", json.dumps({"queue_name": QUEUE})),
            ("GET", f"/queue/{QUEUE}/node", None), ("GET", f"/queue/{QUEUE}/waiting", None),
            ("GET", f"/queue/{QUEUE}/failed", None), ("GET", f"/queue/{QUEUE}/job/1", None),
        ]:
            reply = await api.request(method, path, body, timeout=5)
            self.assertEqual(reply.code, 503, (method, path, reply))
            self.assertEqual(reply.headers.get("retry-after"), ["1"], (method, path))
            self.assertTrue(reply.json["message"].startswith("Store unavailable: "), reply)

    async def queue_empty(self, daemon: Daemon) -> bool:
        for state in ("grabbed", "waiting", "deferred"):
            if (await daemon.api.ok("GET", f"/queue/{QUEUE}/{state}"))["jobs"]:
                return False
        return True

    async def test_refuse(self) -> None:
        """Connections refused and reset for 5 s (default timeouts)."""
        await self.run_outage("refuse")

    async def test_hang(self) -> None:
        """Connections silent for 5 s (short DSN timeouts, see the module docstring)."""
        await self.run_outage("hang", HANG_DSN_PARAMS)
