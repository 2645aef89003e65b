"""What API tokens cost per request and destination checks per delivery (docs/api.md,
Authentication; docs/configuration.md, Where deliveries may go), each against its baseline
measured in the same run.

1. Tokens: CPU microseconds per request through the daemon's own site (FireworqSite, the real
   request parsing, the API and the access log, on an in-memory store, over an in-process
   transport), for a push (``POST /job/bench``) and a read (``GET /queues/stats``), with no
   tokens set and with three tokens set (the request carries its token); a push with no
   tokens set but the header sent tells the parsing of the header from its check. Also
   ``AccessCheck.check`` alone with 3 and 100 tokens.
2. Destinations: CPU microseconds per delivery (the daemon's Deliverer on the real reactor, a
   new connection per delivery as by default, to an in-process worker on 127.0.0.1), for an
   IP-literal URL and for ``localhost``, with nothing denied and with
   ``DISPATCH_DENY=10.0.0.0/8,169.254.0.0/16,fd00::/8`` (which lets 127.0.0.1 through); plus
   the check of resolved addresses alone. The cases take turns in small chunks, so that whatever
   else the machine does falls on all of them alike.

Usage: python bench/access_cost.py [--requests 40000] [--chunk 200] [--deliveries 4000]
       [--delivery-chunk 50]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from fireworq.access import AccessCheck, parse_tokens
from fireworq.api.app import FireworqAPI
from fireworq.api.site import FireworqSite
from fireworq.cluster.memory import MemoryLocks
from fireworq.cluster.ownership import QueueOwnership
from fireworq.delivery import Deliverer, DeliverySettings, make_http_client
from fireworq.destinations import DestinationPolicy, parse_destinations
from fireworq.lifecycle import tune_garbage_collector
from fireworq.logs import AccessLog, LineWriter, QueueLog
from fireworq.model import Job, JobStatus, WorkerResult
from fireworq.queues import QueueDefaults, QueueManager
from fireworq.storage.memory import MemoryStore

reactor: Any = _reactor
TOKENS = "r3ad-4vX0c3Q9kYf1yq8C2Jt7:read,pu5h-Hc2s9Kq1Vn7Rb4Tx8Wz0:push,adm1n-Zp8Qm2Wc7Xv4:admin"
PUSH = (b'POST /job/bench HTTP/1.1\r\nHost: x\r\nUser-Agent: bench\r\n%sContent-Length: %d\r\n'
        b'\r\n%s')
PUSH_BODY = b'{"url":"http://127.0.0.1:9/work","payload":{"user":42},"run_after":3600}'
READ = b"GET /queues/stats HTTP/1.1\r\nHost: x\r\nUser-Agent: bench\r\n%s\r\n"
DENY = "10.0.0.0/8,169.254.0.0/16,fd00::/8"
ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 20\r\n"
          b"Connection: close\r\n\r\n{\"status\":\"success\"}")


class _NoDeliveries:
    async def deliver(self, job: Job) -> WorkerResult:
        raise AssertionError("nothing is due")


def make_site(tokens: str) -> tuple[FireworqSite, Clock, QueueManager]:
    clock = Clock()
    clock.advance(1_732_790_400)
    store = MemoryStore(clock)
    ownership = QueueOwnership(MemoryLocks(store), clock)
    writer = LineWriter(clock, "/dev/null", open("/dev/null", "wb"))
    manager = QueueManager(
        clock=clock, store=store, ownership=ownership, deliverer=_NoDeliveries(),
        queue_log=QueueLog(writer, clock, "fireworq.queue", "info"),
        defaults=QueueDefaults(polling_interval=3_600_000, max_workers=1,
                               default_queue="default"),
        refresh_interval=3600.0,
    )
    Deferred.fromCoroutine(manager.start())
    clock.advance(0)
    api = FireworqAPI(clock=clock, store=store, manager=manager, ownership=ownership,
                      settings={}, started_at=clock.seconds(),
                      access=AccessCheck(parse_tokens(tokens)))
    site = FireworqSite(api.resource(), clock=clock, access_log=AccessLog(writer, "a"),
                        max_request_body=1_048_576, keep_alive=False)
    return site, clock, manager


class _Node:
    """One in-memory node and the raw request sent to it."""

    def __init__(self, tokens: str, raw: bytes) -> None:
        self.site, self.clock, self.manager = make_site(tokens)
        self.raw = raw
        self.address = IPv4Address("TCP", "127.0.0.1", 40000)
        self.cpu = 0.0
        self.requests = 0

    def run(self, count: int) -> None:
        site, clock, raw, address = self.site, self.clock, self.raw, self.address
        started = time.process_time()
        for _ in range(count):
            transport = StringTransport(peerAddress=address, hostAddress=address)
            protocol = site.buildProtocol(address)
            assert protocol is not None
            protocol.makeConnection(transport)
            protocol.dataReceived(raw)
            clock.advance(0)
            clock.advance(0)
            assert transport.value().startswith(b"HTTP/1.1 200"), transport.value()[:300]
            # As when the client's side closes: the connection's timeout goes off the clock
            # (left there, ever more pending calls would slow every later request).
            protocol.connectionLost(Failure(ConnectionDone()))
        assert len(clock.getDelayedCalls()) < 10, len(clock.getDelayedCalls())
        self.cpu += time.process_time() - started
        self.requests += count

    @property
    def us(self) -> float:
        return self.cpu / self.requests * 1e6


def tokens_figures(requests: int, chunk: int) -> dict[str, float]:
    """CPU µs per request of each case; the cases take turns every ``chunk`` requests, so that
    whatever else the machine does falls on all of them alike."""
    push_token = b"Authorization: Bearer pu5h-Hc2s9Kq1Vn7Rb4Tx8Wz0\r\n"
    read_token = b"Authorization: Bearer r3ad-4vX0c3Q9kYf1yq8C2Jt7\r\n"
    nodes = {
        "push_open": _Node("", PUSH % (b"", len(PUSH_BODY), PUSH_BODY)),
        "push_open_header": _Node("", PUSH % (push_token, len(PUSH_BODY), PUSH_BODY)),
        "push_tokens": _Node(TOKENS, PUSH % (push_token, len(PUSH_BODY), PUSH_BODY)),
        "read_open": _Node("", READ % b""),
        "read_tokens": _Node(TOKENS, READ % read_token),
    }
    for node in nodes.values():  # warm-up
        node.run(chunk)
        node.cpu, node.requests = 0.0, 0
    order = list(nodes.values())
    for turn in range(max(1, requests // chunk)):
        for node in order[turn % len(order):] + order[:turn % len(order)]:
            node.run(chunk)
    figures = {name: node.us for name, node in nodes.items()}
    for node in nodes.values():
        node.manager.close()
    for tokens in (3, 100):
        check = AccessCheck(parse_tokens(",".join(f"t0ken{n}:push" for n in range(tokens))))
        header = b"Bearer t0ken1"
        started = time.process_time()
        for _ in range(100_000):
            check.check(b"POST", "/job/bench", header)
        figures[f"check_only_{tokens}_tokens"] = (time.process_time() - started) / 100_000 * 1e6
    return figures


class _Answer(Protocol):
    def dataReceived(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(ANSWER)
            self.transport.loseConnection()


def job(url: str) -> Job:
    return Job(id=1, category="c", url=url, payload=b"{}", status=JobStatus.GRABBED,
               created_at=0, next_try=0, retry_count=0, retry_delay=0, fail_count=0,
               timeout=10)


class _Deliveries:
    """One Deliverer (its own client and pool) and the URL it delivers to."""

    def __init__(self, url: str, destinations: DestinationPolicy) -> None:
        settings = DeliverySettings(user_agent="bench", keep_alive=False, max_conns_per_host=10,
                                    idle_conn_timeout=0, max_response_body=1_048_576)
        http, self.pool = make_http_client(reactor, settings, destinations=destinations)
        self.deliverer = Deliverer(http, reactor, settings)
        self.url = url
        self.cpu = 0.0
        self.deliveries = 0

    async def run(self, count: int) -> None:
        started = time.process_time()
        for _ in range(count):
            result = await self.deliverer.deliver(job(self.url))
            assert result.status == "success", result
        self.cpu += time.process_time() - started
        self.deliveries += count

    @property
    def us(self) -> float:
        return self.cpu / self.deliveries * 1e6


async def destination_figures(deliveries: int, chunk: int) -> dict[str, float]:
    """CPU µs per delivery of each case, the cases taking turns every ``chunk`` deliveries."""
    factory = Factory.forProtocol(_Answer)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    number = port.getHost().port
    deny = DestinationPolicy(parse_destinations(DENY), parse_destinations(""))
    cases = {
        "literal_open": _Deliveries(f"http://127.0.0.1:{number}/w", DestinationPolicy()),
        "literal_checked": _Deliveries(f"http://127.0.0.1:{number}/w", deny),
        "name_open": _Deliveries(f"http://localhost:{number}/w", DestinationPolicy()),
        "name_checked": _Deliveries(f"http://localhost:{number}/w", deny),
    }
    order = list(cases.values())
    try:
        for case in order:  # warm-up
            await case.run(chunk)
            case.cpu, case.deliveries = 0.0, 0
        for turn in range(max(1, deliveries // chunk)):
            for case in order[turn % len(order):] + order[:turn % len(order)]:
                await case.run(chunk)
    finally:
        for case in order:
            await case.pool.closeCachedConnections()
        await port.stopListening()
    figures = {name: case.us for name, case in cases.items()}
    started = time.process_time()
    for _ in range(100_000):
        deny.check_resolved("worker.internal", ["192.0.2.10"])
    figures["check_resolved_only"] = (time.process_time() - started) / 100_000 * 1e6
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=40000)
    parser.add_argument("--chunk", type=int, default=200)
    parser.add_argument("--deliveries", type=int, default=4000)
    parser.add_argument("--delivery-chunk", type=int, default=50)
    arguments = parser.parse_args()
    tune_garbage_collector()  # as the daemon does
    tokens = tokens_figures(arguments.requests, arguments.chunk)
    print("API tokens, CPU µs per request (%d requests each, taking turns every %d):"
          % (arguments.requests, arguments.chunk))
    for kind in ("push", "read"):
        open_us, token_us = tokens[f"{kind}_open"], tokens[f"{kind}_tokens"]
        print("  %-5s no tokens %6.1f  with tokens %6.1f  cost %+5.1f" % (
            kind, open_us, token_us, token_us - open_us))
    print("  push  no tokens, but an Authorization header sent: %.1f (the header's parsing)"
          % tokens["push_open_header"])
    print("  AccessCheck.check alone: %.2f µs (3 tokens), %.2f µs (100 tokens)" % (
        tokens["check_only_3_tokens"], tokens["check_only_100_tokens"]))

    outcome: list[Any] = []
    done = Deferred.fromCoroutine(
        destination_figures(arguments.deliveries, arguments.delivery_chunk))
    done.addBoth(outcome.append).addBoth(lambda _: reactor.stop())
    reactor.run()
    if not isinstance(outcome[0], dict):
        outcome[0].raiseException()
    destinations: dict[str, float] = outcome[0]
    print("Destination checks, CPU µs per delivery (new connection each; %d deliveries each,"
          " taking turns every %d):" % (arguments.deliveries, arguments.delivery_chunk))
    for kind in ("literal", "name"):
        open_us, checked_us = destinations[f"{kind}_open"], destinations[f"{kind}_checked"]
        print("  %-7s nothing denied %6.1f  DISPATCH_DENY set %6.1f  cost %+5.1f" % (
            kind, open_us, checked_us, checked_us - open_us))
    print("  check of resolved addresses alone: %.2f µs" % destinations["check_resolved_only"])
    print(json.dumps({"tokens": {k: round(v, 2) for k, v in tokens.items()},
                      "destinations": {k: round(v, 2) for k, v in destinations.items()}}))


if __name__ == "__main__":
    main()
