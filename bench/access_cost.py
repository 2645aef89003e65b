"""What API tokens cost per request and destination checks per delivery (docs/api.md,
Authentication; docs/configuration.md, Where deliveries may go), each against its baseline
measured in the same run, in alternating blocks so that machine noise hits both alike.

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
   the check of resolved addresses alone.

Usage: python bench/access_cost.py [--requests 4000] [--deliveries 600] [--blocks 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any, Callable

from twisted.internet import reactor as _reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from fireworq.access import AccessCheck, parse_tokens
from fireworq.api.app import FireworqAPI
from fireworq.api.site import FireworqSite
from fireworq.cluster.memory import MemoryLocks
from fireworq.cluster.ownership import QueueOwnership
from fireworq.delivery import Deliverer, DeliverySettings, make_http_client
from fireworq.destinations import DestinationPolicy, parse_destinations
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


def request_cpu_us(tokens: str, raw: bytes, count: int) -> float:
    """CPU microseconds per request of ``raw`` through a fresh node."""
    site, clock, manager = make_site(tokens)
    address = IPv4Address("TCP", "127.0.0.1", 40000)
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
    used = time.process_time() - started
    manager.close()
    return used / count * 1e6


def tokens_figures(requests: int, blocks: int) -> dict[str, float]:
    push_token = b"Authorization: Bearer pu5h-Hc2s9Kq1Vn7Rb4Tx8Wz0\r\n"
    read_token = b"Authorization: Bearer r3ad-4vX0c3Q9kYf1yq8C2Jt7\r\n"
    cases: dict[str, Callable[[], float]] = {
        "push_open": lambda: request_cpu_us("", PUSH % (b"", len(PUSH_BODY), PUSH_BODY),
                                            requests),
        "push_open_header": lambda: request_cpu_us(
            "", PUSH % (push_token, len(PUSH_BODY), PUSH_BODY), requests),
        "push_tokens": lambda: request_cpu_us(
            TOKENS, PUSH % (push_token, len(PUSH_BODY), PUSH_BODY), requests),
        "read_open": lambda: request_cpu_us("", READ % b"", requests),
        "read_tokens": lambda: request_cpu_us(TOKENS, READ % read_token, requests),
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(blocks):
        for name, run in cases.items():
            samples[name].append(run())
    figures = {name: statistics.median(values) for name, values in samples.items()}
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


async def delivery_cpu_us(url: str, destinations: DestinationPolicy, count: int) -> float:
    settings = DeliverySettings(user_agent="bench", keep_alive=False, max_conns_per_host=10,
                                idle_conn_timeout=0, max_response_body=1_048_576)
    http, pool = make_http_client(reactor, settings, destinations=destinations)
    deliverer = Deliverer(http, reactor, settings)
    started = time.process_time()
    for _ in range(count):
        result = await deliverer.deliver(job(url))
        assert result.status == "success", result
    used = time.process_time() - started
    await pool.closeCachedConnections()
    return used / count * 1e6


async def destination_figures(deliveries: int, blocks: int) -> dict[str, float]:
    factory = Factory.forProtocol(_Answer)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    number = port.getHost().port
    deny = DestinationPolicy(parse_destinations(DENY), parse_destinations(""))
    cases = {
        "literal_open": (f"http://127.0.0.1:{number}/w", DestinationPolicy()),
        "literal_checked": (f"http://127.0.0.1:{number}/w", deny),
        "name_open": (f"http://localhost:{number}/w", DestinationPolicy()),
        "name_checked": (f"http://localhost:{number}/w", deny),
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    try:
        for url, rule in cases.values():  # warm-up
            await delivery_cpu_us(url, rule, 50)
        for _ in range(blocks):
            for name, (url, rule) in cases.items():
                samples[name].append(await delivery_cpu_us(url, rule, deliveries))
    finally:
        await port.stopListening()
    figures = {name: statistics.median(values) for name, values in samples.items()}
    started = time.process_time()
    for _ in range(100_000):
        deny.check_resolved("worker.internal", ["192.0.2.10"])
    figures["check_resolved_only"] = (time.process_time() - started) / 100_000 * 1e6
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--deliveries", type=int, default=600)
    parser.add_argument("--blocks", type=int, default=5)
    arguments = parser.parse_args()
    tokens = tokens_figures(arguments.requests, arguments.blocks)
    print("API tokens, CPU µs per request (median of %d blocks of %d):"
          % (arguments.blocks, arguments.requests))
    for kind in ("push", "read"):
        open_us, token_us = tokens[f"{kind}_open"], tokens[f"{kind}_tokens"]
        print("  %-5s no tokens %6.1f  with tokens %6.1f  cost %+5.1f" % (
            kind, open_us, token_us, token_us - open_us))
    print("  push  no tokens, but an Authorization header sent: %.1f (the header's parsing)"
          % tokens["push_open_header"])
    print("  AccessCheck.check alone: %.2f µs (3 tokens), %.2f µs (100 tokens)" % (
        tokens["check_only_3_tokens"], tokens["check_only_100_tokens"]))

    outcome: list[Any] = []
    done = Deferred.fromCoroutine(destination_figures(arguments.deliveries, arguments.blocks))
    done.addBoth(outcome.append).addBoth(lambda _: reactor.stop())
    reactor.run()
    if not isinstance(outcome[0], dict):
        outcome[0].raiseException()
    destinations: dict[str, float] = outcome[0]
    print("Destination checks, CPU µs per delivery (new connection each; median of %d blocks"
          " of %d):" % (arguments.blocks, arguments.deliveries))
    for kind in ("literal", "name"):
        open_us, checked_us = destinations[f"{kind}_open"], destinations[f"{kind}_checked"]
        print("  %-7s nothing denied %6.1f  DISPATCH_DENY set %6.1f  cost %+5.1f" % (
            kind, open_us, checked_us, checked_us - open_us))
    print("  check of resolved addresses alone: %.2f µs" % destinations["check_resolved_only"])
    print(json.dumps({"tokens": {k: round(v, 2) for k, v in tokens.items()},
                      "destinations": {k: round(v, 2) for k, v in destinations.items()}}))


if __name__ == "__main__":
    main()
