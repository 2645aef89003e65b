"""Where deliveries may go (docs/configuration.md, Delivery to workers; docs/operations.md,
Where deliveries may go): the rule, pushes naming denied destinations, deliveries whose host
resolves to a denied address, redirects; and a real daemon with API tokens, driven by the
client library (fireworq/client), on every driver."""

from __future__ import annotations

import ipaddress
import os
import tempfile
from typing import TYPE_CHECKING, Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IHostnameResolver, IResolutionReceiver
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Request
from zope.interface import implementer

import mysqltools
from apptools import ApiHarness, utc
from e2e import Daemon, eventually
from fireworq.client import APIError
from fireworq.client.twisted import TwistedClient
from fireworq.config import load_config
from fireworq.delivery import Deliverer, make_http_client
from fireworq.destinations import (
    DestinationDenied,
    DestinationPolicy,
    parse_destinations,
)
from fireworq.errors import ConfigError
from test_delivery import (
    Worker,
    WorkerTestCase,
    _Quiet,
    make_job,
    make_settings,
    reactor,
    respond,
    self_signed_tls,
)

DENIED_LOCAL = "127.0.0.0/8,::1/128"


def policy(deny: str = "", allow: str = "") -> DestinationPolicy:
    return DestinationPolicy(parse_destinations(deny), parse_destinations(allow))


class RuleTests(SynchronousTestCase):
    """The rule of docs/configuration.md, Delivery to workers."""

    def test_parse(self) -> None:
        parsed = parse_destinations(" 10.0.0.0/8, ::1 ,Metadata.Google.Internal., *.corp,,")
        self.assertEqual(parsed.networks, (ipaddress.ip_network("10.0.0.0/8"),
                                           ipaddress.ip_network("::1/128")))
        self.assertEqual(parsed.names, frozenset({"metadata.google.internal"}))
        self.assertEqual(parsed.suffixes, (".corp",))
        self.assertFalse(parse_destinations(""))

    def test_parseErrors(self) -> None:
        for text in ("10.0.0.0/33", "bad_name", "300.1.1.1", "a..b", "*.", "http://x"):
            with self.assertRaises(ValueError, msg=text):
                parse_destinations(text)

    def test_configErrors(self) -> None:
        """An invalid list stops the start, naming the key and the entry."""
        for text, problem in [
            ("10.0.0.0/8,10.0.0.0/33", "has an invalid CIDR: '10.0.0.0/33'"),
            ("300.1.1.1", "has an invalid CIDR: '300.1.1.1'"),
            ("ok.test,bad_name", "has an entry that is neither a CIDR nor a host name: 'bad_name'"),
        ]:
            with self.assertRaises(ConfigError) as caught:
                load_config({}, {"FIREWORQ_DISPATCH_DENY": text})
            self.assertEqual(str(caught.exception),
                             f'invalid dispatch_deny (FIREWORQ_DISPATCH_DENY): "{text}" {problem}')

    def test_nothingDeniedByDefault(self) -> None:
        """With DENY empty nothing is checked, whatever ALLOW says."""
        self.assertFalse(policy().active)
        self.assertFalse(policy(allow="10.0.0.1").active)
        policy().check_literal("127.0.0.1")

    def test_addresses(self) -> None:
        rule = policy(deny="10.0.0.0/8,fd00::/8", allow="10.1.0.0/16")
        self.assertEqual(rule.check_resolved("w.test", ["10.1.2.3", "192.0.2.1"]),
                         ["10.1.2.3", "192.0.2.1"])
        for addresses, denied in [(["10.2.0.1"], "10.2.0.1"),
                                  (["192.0.2.1", "10.2.0.1"], "10.2.0.1"),
                                  (["fd00:ec2::254"], "fd00:ec2::254"),
                                  (["::ffff:10.2.0.1"], "10.2.0.1")]:
            with self.assertRaises(DestinationDenied) as caught:
                rule.check_resolved("w.test", addresses)
            self.assertEqual(str(caught.exception), f"Destination denied: {denied}")

    def test_names(self) -> None:
        """A name in ALLOW is allowed whatever it resolves to; a name in DENY is denied; ALLOW
        wins; a wildcard covers names below it, not the name itself."""
        rule = policy(deny="10.0.0.0/8,evil.test,*.corp.test", allow="ok.corp.test,w.test")
        self.assertEqual(rule.check_resolved("W.test", ["10.0.0.1"]), ["10.0.0.1"])
        self.assertEqual(rule.check_resolved("ok.corp.test", ["10.0.0.1"]), ["10.0.0.1"])
        self.assertEqual(rule.check_resolved("corp.test", ["192.0.2.1"]), ["192.0.2.1"])
        for host in ("evil.test", "evil.test.", "a.corp.test", "a.b.corp.test"):
            with self.assertRaises(DestinationDenied) as caught:
                rule.check_resolved(host, ["192.0.2.1"])
            self.assertEqual(caught.exception.destination, host.lower().rstrip("."))

    def test_literal(self) -> None:
        """What a push checks: literal addresses and names, nothing resolved."""
        rule = policy(deny="127.0.0.0/8,::1,169.254.169.254,metadata.test", allow="127.0.0.5")
        for host in ("127.0.0.1", "::1", "[::1]", "::ffff:127.0.0.1", "169.254.169.254",
                     "METADATA.test"):
            with self.assertRaises(DestinationDenied, msg=host):
                rule.check_literal(host)
        for host in ("127.0.0.5", "localhost", "192.0.2.1", "fe80::1"):
            rule.check_literal(host)


class PushTests(SynchronousTestCase):
    """docs/api.md, POST /job: a URL naming a denied destination is refused with 400."""

    def setUp(self) -> None:
        self.addCleanup(utc())
        self.node = ApiHarness({"dispatch_deny": "127.0.0.0/8,::1,169.254.169.254,fd00:ec2::254,"
                                                 "metadata.test",
                                "dispatch_allow": "127.0.0.5"})
        self.addCleanup(self.node.stop)
        self.node.define_queue("q")
        self.node.define_routing("cat", "q")

    def test_deniedLiterals(self) -> None:
        for url, denied in [
            ("http://127.0.0.1:8000/x", "127.0.0.1"),
            ("http://[::1]/x", "::1"),
            ("http://[::ffff:127.0.0.1]/x", "127.0.0.1"),
            ("https://169.254.169.254/latest/meta-data", "169.254.169.254"),
            ("http://[fd00:ec2::254]/", "fd00:ec2::254"),
            ("http://user:pw@metadata.test:80/", "metadata.test"),
        ]:
            response = self.node.post("/job/cat", {"url": url})
            self.assertEqual(response.status, 400, url)
            self.assertEqual(response.json()["message"], f"Destination denied: {denied}", url)
        self.assertEqual(self.node.get("/queue/q/waiting").json()["jobs"], [])

    def test_batch(self) -> None:
        """docs/api.md, POST /jobs: a job naming a denied destination refuses the batch."""
        response = self.node.post("/jobs/cat", {"jobs": [{"url": "http://192.0.2.1/"},
                                                         {"url": "http://127.0.0.1/x"}]})
        self.assertEqual(response.status, 400)
        self.assertEqual(response.json()["message"], "Job 1: Destination denied: 127.0.0.1")
        self.assertEqual(self.node.get("/queue/q/waiting").json()["jobs"], [])
        response = self.node.post("/jobs/cat", {"jobs": [{"url": "http://127.0.0.5/"}]})
        self.assertEqual(response.status, 200)

    def test_allowedAndNames(self) -> None:
        """An allowed literal and a host name (checked when delivering) are accepted."""
        for url in ("http://127.0.0.5/x", "http://localhost:8000/x", "http://192.0.2.1/"):
            self.assertEqual(self.node.post("/job/cat", {"url": url}).status, 200, url)


@implementer(IHostnameResolver)
class FakeResolver:
    """Names to addresses, as a DNS that the test controls would answer."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def resolveHostName(self, resolutionReceiver: IResolutionReceiver, hostName: str,
                        portNumber: int = 0, addressTypes: Any = None,
                        transportSemantics: str = "TCP") -> Any:
        self.asked.append(hostName)
        resolutionReceiver.resolutionBegan(None)
        for address in self.answers.get(hostName, []):
            kind = IPv6Address if ":" in address else IPv4Address
            resolutionReceiver.addressResolved(kind("TCP", address, portNumber))
        resolutionReceiver.resolutionComplete()
        return None


class DeliveryTests(WorkerTestCase):
    """Deliveries against real workers on 127.0.0.x, names resolved by a FakeResolver."""

    def deliverer(self, deny: str, allow: str = "", answers: dict[str, list[str]] | None = None,
                  handshake_clock: Any = None) -> tuple[Deliverer, FakeResolver]:
        resolver = FakeResolver(answers or {})
        settings = make_settings()
        http, pool = make_http_client(reactor, settings, destinations=policy(deny, allow),
                                      resolver=resolver, handshake_clock=handshake_clock)
        self._pools.append(pool)
        return Deliverer(http, reactor, settings), resolver

    def port_of(self, base: str) -> int:
        return int(base.rpartition(":")[2])

    async def test_resolvedToDeniedAddress(self) -> None:
        """A name that resolves to a denied address: a permanent failure, nothing sent."""
        base, worker, connections = self.start_worker(respond())
        deliverer, resolver = self.deliverer(DENIED_LOCAL,
                                             answers={"worker.test": ["127.0.0.1"]})
        result = await deliverer.deliver(make_job(f"http://worker.test:{self.port_of(base)}/"))
        self.assertEqual((result.status, result.code, result.message),
                         ("permanent-failure", 0, "Destination denied: 127.0.0.1"))
        self.assertEqual((worker.seen, connections.opened, resolver.asked),
                         ([], 0, ["worker.test"]))

    async def test_oneDeniedAddressDenies(self) -> None:
        base, worker, _ = self.start_worker(respond())
        deliverer, _ = self.deliverer(
            "10.0.0.0/8", answers={"worker.test": ["127.0.0.1", "10.9.9.9"]})
        result = await deliverer.deliver(make_job(f"http://worker.test:{self.port_of(base)}/"))
        self.assertEqual(result.message, "Destination denied: 10.9.9.9")
        self.assertEqual(worker.seen, [])

    async def test_mappedAddressDenied(self) -> None:
        base, _, _ = self.start_worker(respond())
        deliverer, _ = self.deliverer(DENIED_LOCAL, answers={"w.test": ["::ffff:127.0.0.1"]})
        result = await deliverer.deliver(make_job(f"http://w.test:{self.port_of(base)}/"))
        self.assertEqual(result.message, "Destination denied: 127.0.0.1")

    async def test_connectsToTheCheckedAddress(self) -> None:
        """An allowed name is reached at the address that was checked, resolved once per
        connection (the system resolver does not know worker.test: only the checked address
        can have been used)."""
        base, worker, _ = self.start_worker(respond())
        deliverer, resolver = self.deliverer(DENIED_LOCAL, allow="127.0.0.1",
                                             answers={"worker.test": ["127.0.0.1"]})
        url = f"http://worker.test:{self.port_of(base)}/x"
        result = await deliverer.deliver(make_job(url))
        self.assertEqual(result.status, "success")
        self.assertEqual(worker.seen[0].header(b"host"),
                         [f"worker.test:{self.port_of(base)}".encode()])
        await deliverer.deliver(make_job(url))
        self.assertEqual(resolver.asked, ["worker.test", "worker.test"])  # no keep-alive here

    async def test_allowedByName(self) -> None:
        base, worker, _ = self.start_worker(respond())
        deliverer, _ = self.deliverer(DENIED_LOCAL, allow="worker.test",
                                      answers={"worker.test": ["127.0.0.1"]})
        result = await deliverer.deliver(make_job(f"http://worker.test:{self.port_of(base)}/"))
        self.assertEqual(result.status, "success")
        self.assertEqual(len(worker.seen), 1)

    async def test_deniedByNameUnresolved(self) -> None:
        deliverer, resolver = self.deliverer("worker.test",
                                             answers={"worker.test": ["192.0.2.1"]})
        result = await deliverer.deliver(make_job("http://worker.test:1/"))
        self.assertEqual(result.message, "Destination denied: worker.test")
        self.assertEqual(resolver.asked, [])

    async def test_literalDenied(self) -> None:
        base, worker, connections = self.start_worker(respond())
        deliverer, resolver = self.deliverer(DENIED_LOCAL)
        result = await deliverer.deliver(make_job(base))
        self.assertEqual(result.message, "Destination denied: 127.0.0.1")
        self.assertEqual((worker.seen, connections.opened, resolver.asked), ([], 0, []))

    async def test_unresolvedIsRetried(self) -> None:
        """A name without addresses is an ordinary failed request (retried), not a denial."""
        deliverer, _ = self.deliverer(DENIED_LOCAL)
        result = await deliverer.deliver(make_job("http://nowhere.test:1/"))
        self.assertEqual(result.status, "internal-failure")
        self.assertIn("no address for nowhere.test", result.message)

    async def test_redirectToDeniedName(self) -> None:
        """A redirect is checked like the first request: to a name that resolves to a denied
        address, the attempt fails permanently and the target is never reached."""
        target, hidden, hidden_connections = self.start_worker(respond(), "127.0.0.2")
        first, worker, _ = self.start_worker(respond(code=302, headers={
            b"location": f"http://internal.test:{self.port_of(target)}/admin".encode()}))
        deliverer, resolver = self.deliverer(
            DENIED_LOCAL, allow="127.0.0.1", answers={"internal.test": ["127.0.0.2"]})
        result = await deliverer.deliver(make_job(first + "/start"))
        self.assertEqual((result.status, result.message),
                         ("permanent-failure", "Destination denied: 127.0.0.2"))
        self.assertEqual(len(worker.seen), 1)
        self.assertEqual((hidden.seen, hidden_connections.opened), ([], 0))
        self.assertEqual(resolver.asked, ["internal.test"])

    async def test_redirectToDeniedLiteral(self) -> None:
        target, hidden, _ = self.start_worker(respond(), "127.0.0.2")
        first, _, _ = self.start_worker(respond(code=307, headers={b"location": target.encode()}))
        deliverer, _ = self.deliverer(DENIED_LOCAL, allow="127.0.0.1")
        result = await deliverer.deliver(make_job(first))
        self.assertEqual(result.message, "Destination denied: 127.0.0.2")
        self.assertEqual(hidden.seen, [])

    async def test_httpsOverTheCheckedAddress(self) -> None:
        """https to a checked name: TLS runs on the connection to the checked address, and the
        certificate is verified against the URL's host name, not the address."""
        worker = Worker(respond())
        port, _ = self.listen(_Quiet(worker, timeout=None), tls=self_signed_tls())
        deliverer, resolver = self.deliverer(DENIED_LOCAL, allow="127.0.0.1",
                                             answers={"worker.test": ["127.0.0.1"]},
                                             handshake_clock=Clock())
        result = await deliverer.deliver(make_job(f"https://worker.test:{port}/"))
        self.assertEqual((result.status, result.message),
                         ("internal-failure",
                          "Request failed: TLS certificate does not match the host name"))
        self.assertEqual(resolver.asked, ["worker.test"])

    async def test_noPolicyNoResolution(self) -> None:
        """Nothing denied (the default): no resolver is consulted, deliveries as before."""
        base, worker, _ = self.start_worker(respond())
        deliverer, resolver = self.deliverer("", allow="10.0.0.0/8")
        result = await deliverer.deliver(make_job(base))
        self.assertEqual(result.status, "success")
        self.assertEqual(resolver.asked, [])


def redirect_to(url: str) -> Any:
    def handler(request: Request) -> bytes:
        request.setResponseCode(302)
        request.setHeader(b"location", url.encode())
        return b""
    return handler


if TYPE_CHECKING:
    _Base = WorkerTestCase
else:
    _Base = object


class DaemonMixin(_Base):
    """A real daemon with API tokens (an option and a file) and DISPATCH_DENY/ALLOW, driven by
    the client library; workers on 127.0.0.3 (allowed) and 127.0.0.1 (denied, reached through
    the name localhost)."""

    driver = ""
    driver_options: tuple[str, ...] = ()

    async def start_daemon(self) -> Daemon:
        fd, path = tempfile.mkstemp(prefix="fireworq-tokens-")
        with os.fdopen(fd, "w") as f:
            f.write("# ops\nr3ad-t0ken read\n")
        self.addCleanup(os.unlink, path)
        return await Daemon.start(self, self.driver, (
            *self.driver_options,
            "--api-tokens=adm1n-t0ken:admin,pu5h-t0ken:push",
            f"--dispatch-deny={DENIED_LOCAL}", "--dispatch-allow=127.0.0.3",
        ), env={"FIREWORQ_API_TOKENS_FILE": path})

    def client(self, daemon: Daemon, token: str | None) -> TwistedClient:
        client = TwistedClient(daemon.base_url, token=token, reactor=reactor)
        self.addCleanup(client.close)
        return client

    async def test_tokensAndDestinations(self) -> None:
        daemon = await self.start_daemon()
        admin = self.client(daemon, "adm1n-t0ken")
        pusher = self.client(daemon, "pu5h-t0ken")
        reader = self.client(daemon, "r3ad-t0ken")
        anonymous = self.client(daemon, None)

        # Tokens: the client sends them; each scope gets what it may.
        self.assertTrue(await anonymous.healthy())
        with self.assertRaises(APIError) as caught:
            await anonymous.queues()
        self.assertEqual(caught.exception.code, 401)
        await admin.put_queue("q", polling_interval=50)
        await admin.put_routing("cat", "q")
        with self.assertRaises(APIError) as caught:
            await reader.push("cat", "http://127.0.0.3:1/")
        self.assertEqual(caught.exception.code, 403)
        with self.assertRaises(APIError) as caught:
            await pusher.put_queue("q2")
        self.assertEqual(caught.exception.code, 403)
        self.assertEqual((await admin.settings())["api_tokens"], "2")

        # Destinations: allowed worker, a literal refused at push, a name resolved to a denied
        # address, and a redirect to it.
        good, good_worker, _ = self.start_worker(respond(), "127.0.0.3")
        hidden, hidden_worker, _ = self.start_worker(respond())
        hidden_port = int(hidden.rpartition(":")[2])
        redirecting, _, _ = self.start_worker(
            redirect_to(f"http://localhost:{hidden_port}/admin"), "127.0.0.3")
        await pusher.push("cat", good + "/ok")
        with self.assertRaises(APIError) as caught:
            await pusher.push("cat", hidden + "/x")
        self.assertEqual((caught.exception.code, caught.exception.message),
                         (400, "Destination denied: 127.0.0.1"))
        resolved = await pusher.push("cat", f"http://localhost:{hidden_port}/x", max_retries=3)
        redirected = await pusher.push("cat", redirecting + "/start", max_retries=3)

        async def failed() -> Any:
            entries = (await reader.failed_page("q")).items
            return entries if len(entries) == 2 else None
        entries = await eventually(failed, 20, what="two failure-log entries")
        messages = {entry.job_id: entry.result.message for entry in entries}
        for job in (resolved, redirected):
            self.assertIn(messages[job.id], ("Destination denied: 127.0.0.1",
                                             "Destination denied: ::1"))
        self.assertEqual([entry.fail_count for entry in entries], [1, 1])  # not retried
        self.assertEqual(len(good_worker.seen), 1)
        self.assertEqual(hidden_worker.seen, [])


class SqliteDaemonTests(DaemonMixin, WorkerTestCase):
    driver = "sqlite"


class InMemoryDaemonTests(DaemonMixin, WorkerTestCase):
    driver = "in-memory"


class MySQLDaemonTests(DaemonMixin, WorkerTestCase):
    driver = "mysql"

    def setUp(self) -> None:
        super().setUp()
        _, self.driver_options = mysqltools.daemon_database(self, "fwaccess")
